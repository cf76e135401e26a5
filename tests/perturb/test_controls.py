"""Control samplers: per-tensor counts, disjoint from the target, uniform, magnitude bins respected."""

from __future__ import annotations

import logging

import pytest
import torch
from scipy.stats import chisquare

import esa.perturb.controls as controls_module
from esa.errors import EsaError
from esa.models.layout import describe_parameters
from esa.models.tiny import build_tiny_model
from esa.perturb import magnitude_bins, magnitude_edges, random_matched, random_matched_magnitude
from esa.ranking import top_k


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_target(model: torch.nn.Module, k: int = 5) -> dict[str, torch.Tensor]:
    return top_k({n: p.detach().abs() for n, p in model.named_parameters()}, k, "per_layer").by_param()


def test_random_matched_counts_range_and_disjointness():
    model = build_tiny_model("tiny-mixtral")
    target = tiny_target(model)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    controls = random_matched(target, shapes, gen())
    assert list(controls) == list(target)
    for name, idx in controls.items():
        assert idx.dtype == torch.long and idx.device.type == "cpu"
        assert idx.numel() == target[name].numel()
        assert torch.equal(idx, idx.unique())  # sorted, distinct
        assert 0 <= int(idx.min()) and int(idx.max()) < shapes[name].numel()
        assert not set(idx.tolist()) & set(target[name].tolist())


def test_random_matched_is_reproducible():
    shapes = {"a": (50, 40), "b": (8,)}
    target = {"a": torch.tensor([1, 2, 3]), "b": torch.tensor([0, 7])}
    first = random_matched(target, shapes, gen(1))
    assert all(torch.equal(first[n], random_matched(target, shapes, gen(1))[n]) for n in target)
    assert not torch.equal(first["a"], random_matched(target, shapes, gen(2))["a"])


def test_duplicates_in_the_target_count_once():
    controls = random_matched({"a": torch.tensor([4, 4, 9])}, {"a": (100,)}, gen())
    assert controls["a"].numel() == 2


@pytest.mark.parametrize(("n", "target"), [(20, 5), (1000, 10)], ids=["dense", "sparse"])
def test_random_matched_is_uniform_over_the_non_target_weights(n, target):
    """Every non-target index is equally likely (chi-square), the target never drawn."""
    targets = torch.arange(target) * 3
    counts = torch.zeros(n)
    draws = 3000
    g = gen(3)
    for _ in range(draws):
        counts[random_matched({"w": targets}, {"w": (n,)}, g)["w"]] += 1
    assert counts[targets].sum() == 0
    others = counts[torch.isin(torch.arange(n), targets, invert=True)]
    assert chisquare(others.numpy()).pvalue > 1e-4


def test_without_exclusion_the_whole_tensor_is_eligible():
    target = {"w": torch.arange(10)}
    controls = random_matched(target, {"w": (10,)}, gen(), exclude_target=False)
    assert torch.equal(controls["w"], torch.arange(10))


def test_too_few_other_weights_is_a_clear_error():
    model = build_tiny_model("tiny-llama")
    infos = describe_parameters(model)  # ParamInfo has .shape
    with pytest.raises(EsaError, match=r"target has 20 weights in model.norm.weight.*only 12 other weights.*--topk"):
        random_matched({"model.norm.weight": torch.arange(20)}, infos, gen())


def test_missing_shape_is_an_error():
    with pytest.raises(EsaError, match="no shape given for b"):
        random_matched({"b": torch.tensor([0])}, {"a": (3,)}, gen())


def test_magnitude_matched_draws_from_the_targets_bins():
    w = torch.randn(40, 50, generator=gen(0))
    target = {"w": torch.randperm(w.numel(), generator=gen(1))[:60]}
    controls = random_matched_magnitude(target, {"w": w}, gen(2), bins=10)
    edges = magnitude_edges(w, 10)
    target_bins = magnitude_bins(w.reshape(-1)[target["w"]], edges)
    control_bins = magnitude_bins(w.reshape(-1)[controls["w"]], edges)
    assert torch.equal(torch.bincount(control_bins, minlength=10), torch.bincount(target_bins, minlength=10))
    assert not set(controls["w"].tolist()) & set(target["w"].tolist())
    assert torch.equal(controls["w"], controls["w"].unique())
    again = random_matched_magnitude(target, {"w": w}, gen(2), bins=10)
    assert torch.equal(controls["w"], again["w"])


def test_bins_are_quantile_bins():
    w = torch.randn(10_000, generator=gen(0))
    edges = magnitude_edges(w, 4)
    assert torch.allclose(edges, torch.quantile(w.abs(), torch.tensor([0.25, 0.5, 0.75])))
    assert torch.bincount(magnitude_bins(w, edges)).tolist() == [2500] * 4
    assert magnitude_bins(edges, edges).tolist() == [1, 2, 3]  # an edge opens the bin above it


def test_edges_of_huge_tensors_come_from_a_sample(monkeypatch):
    monkeypatch.setattr(controls_module, "QUANTILE_SAMPLE", 4000)
    w = torch.randn(50_000, generator=gen(0))
    exact = torch.quantile(w.abs(), torch.arange(1, 10) / 10)
    assert torch.allclose(magnitude_edges(w, 10), exact, atol=0.05)


def test_shortage_takes_the_nearest_bins_with_room_and_says_so(caplog):
    w = torch.randn(200, generator=gen(0))
    target = {"w": w.abs().topk(50).indices}  # fills bins 9 and 8 and half of bin 7
    with caplog.at_level(logging.WARNING, logger="esa"):
        controls = random_matched_magnitude(target, {"w": w}, gen(1), bins=10)
    assert "40 of 50 weights come from a neighbouring magnitude bin" in caplog.text
    bins = torch.bincount(magnitude_bins(w[controls["w"]], magnitude_edges(w, 10)), minlength=10)
    # bin 7 has room for its own 10; bin 8's 20 go two bins down (7 is full, 9 has none), bin 9's to bin 5
    assert bins.tolist() == [0, 0, 0, 0, 0, 20, 20, 10, 0, 0]
    assert not set(controls["w"].tolist()) & set(target["w"].tolist())


def test_shortage_can_be_an_error():
    w = torch.randn(200, generator=gen(0))
    with pytest.raises(EsaError, match="magnitude bin 8 of w holds 20 target weights but only 0 others"):
        random_matched_magnitude({"w": w.abs().topk(50).indices}, {"w": w}, gen(), on_shortage="error")


def test_magnitude_matched_on_a_tiny_model_and_bf16():
    model = build_tiny_model("tiny-llama", dtype=torch.bfloat16)
    weights = {n: p for n, p in model.named_parameters() if p.ndim == 2}
    target = tiny_target(model, k=8)
    target = {n: idx for n, idx in target.items() if n in weights}
    controls = random_matched_magnitude(target, weights, gen(), bins=5)
    assert {n: c.numel() for n, c in controls.items()} == {n: t.numel() for n, t in target.items()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"bins": 0}, "whole number of bins >= 1"), ({"bins": 2.5}, "whole number of bins"),
     ({"on_shortage": "skip"}, "on_shortage must be one of nearest, error")],
)
def test_magnitude_options_are_checked(kwargs, message):
    with pytest.raises(EsaError, match=message):
        random_matched_magnitude({"w": torch.tensor([0])}, {"w": torch.randn(10)}, gen(), **kwargs)
