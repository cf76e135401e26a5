"""top_k against a brute-force concatenate-and-stable-sort reference."""

from __future__ import annotations

from typing import Iterator, Mapping

import pytest
import torch

from esa.errors import EsaError
from esa.ranking import top_k
from esa.ranking.select import Order, kth_best


def reference(scores: dict[str, torch.Tensor], k: int, mode: str, largest: bool):
    """The definition: stable sort by score (descending for largest), ties by model order then index."""
    def ordered(values, pids, flats, keep):
        perm = torch.sort(values, descending=largest, stable=True).indices[:keep]
        return values[perm], pids[perm], flats[perm]

    names = list(scores)
    flat = [scores[n].reshape(-1) for n in names]
    pids = [torch.full((f.numel(),), i) for i, f in enumerate(flat)]
    idx = [torch.arange(f.numel()) for f in flat]
    if mode == "global":
        return ordered(torch.cat(flat), torch.cat(pids), torch.cat(idx), k)
    parts = [ordered(f, p, i, k) for f, p, i in zip(flat, pids, idx)]
    return ordered(*(torch.cat(c) for c in zip(*parts)), None)


def assert_matches(scores, k, mode, largest):
    ws = top_k(scores, k, mode, largest)
    score, pid, flat = reference(scores, k, mode, largest)
    assert ws.param_names == tuple(scores)
    assert torch.equal(ws.score, score)
    assert torch.equal(ws.param_ids, pid)
    assert torch.equal(ws.flat_index, flat)
    assert ws.largest is largest


def random_scores(seed: int, kind: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(64, 48), (300,), (1, 7), (20_000, 12), (5, 5, 9)]
    out = {}
    for i, shape in enumerate(shapes):
        if kind == "floats":
            x = torch.rand(shape, generator=g)
        elif kind == "ties":  # few distinct values: ties everywhere, also across tensors
            x = torch.randint(0, 4, shape, generator=g).float()
        else:  # heavy tail with most scores exactly zero
            x = torch.empty(shape).exponential_(generator=g) ** 3
            x[torch.rand(shape, generator=g) < 0.8] = 0.0
        out[f"model.layers.{i}.w"] = x
    return out


@pytest.mark.parametrize("kind", ["floats", "ties", "zeros"])
@pytest.mark.parametrize("mode", ["global", "per_layer"])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("k", [1, 10, 700, 5000])
def test_matches_brute_force(kind, mode, largest, k):
    assert_matches(random_scores(k, kind), k, mode, largest)


def test_huge_tie_at_the_boundary_takes_lowest_indices():
    """The k-th value is shared by far more elements than the candidate cap: the tie path."""
    x = torch.ones(40_000)
    x[torch.arange(0, 40_000, 97)] = 2.0
    scores = {"a": x, "b": torch.ones(10_000)}
    for mode in ("global", "per_layer"):
        for largest in (True, False):
            assert_matches(scores, 1_000, mode, largest)


def test_sample_blind_to_the_top_falls_back_to_radix_select():
    """The strided sample (every 64th element here) sees only zeros; the answer must not depend on it."""
    x = torch.zeros(1 << 16)
    planted = torch.arange(1, 1 << 16, 64)
    x[planted] = torch.linspace(1.0, 2.0, planted.numel())
    for k in (50, 300, 2_000):
        assert_matches({"a": x}, k, "global", True)


def test_per_layer_small_tensor_contributes_everything():
    ws = top_k({"a": torch.rand(3), "b": torch.rand(100)}, 10, "per_layer")
    assert ws.counts() == {"a": 3, "b": 10}


def test_prefix_is_the_smaller_selection():
    scores = random_scores(3, "ties")
    big = top_k(scores, 500, "global")
    small = top_k(scores, 50, "global")
    assert big.head(50).keys() == small.keys()
    assert torch.equal(big.head(50).score, small.score)


def test_negative_zero_counts_as_zero():
    x = torch.tensor([0.0, -0.0, 1.0, 0.0])
    ws = top_k({"a": x}, 3, "global", largest=False)
    assert ws.flat_index.tolist() == [0, 1, 3]


class Lazy(Mapping[str, torch.Tensor]):
    """Builds each tensor on access and counts accesses: top_k must read each tensor once."""

    def __init__(self, scores: dict[str, torch.Tensor]) -> None:
        self.scores, self.reads = scores, {n: 0 for n in scores}

    def __getitem__(self, name: str) -> torch.Tensor:
        self.reads[name] += 1
        return self.scores[name].clone()

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)


def test_streams_each_tensor_once():
    scores = random_scores(5, "floats")
    lazy = Lazy(scores)
    ws = top_k(lazy, 100, "global")
    assert set(lazy.reads.values()) == {1}
    assert ws.keys() == top_k(scores, 100, "global").keys()


def test_deterministic():
    scores = random_scores(9, "ties")
    a, b = top_k(scores, 300, "global"), top_k(scores, 300, "global")
    assert torch.equal(a.flat_index, b.flat_index) and torch.equal(a.param_ids, b.param_ids)


@pytest.mark.parametrize("bad, message", [
    (float("nan"), "NaN or inf"),
    (float("inf"), "NaN or inf"),
    (-1.0, ">= 0"),
])
def test_invalid_scores_name_the_parameter(bad, message):
    x = torch.rand(10)
    x[4] = bad
    with pytest.raises(EsaError, match=rf"'model.layers.1.mlp.up_proj.weight'.*{message}"):
        top_k({"a": torch.rand(5), "model.layers.1.mlp.up_proj.weight": x}, 2, "global")


@pytest.mark.parametrize("k, mode, message", [
    (0, "global", "k >= 1"),
    (-3, "per_layer", "k >= 1"),
    (16, "global", "exceeds the 15 scored weights"),
    (5, "sideways", "unknown ranking mode"),
])
def test_bad_requests(k, mode, message):
    with pytest.raises(EsaError, match=message):
        top_k({"a": torch.rand(10), "b": torch.rand(5)}, k, mode)


@pytest.mark.parametrize("largest", [True, False])
def test_kth_best_is_the_sorted_value(largest):
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.rand(5000, generator=g) * 1e-39, torch.randint(0, 9, (5000,), generator=g).float(),
                   torch.tensor([-0.0, 3.4e38])])
    ordered = torch.sort(x, descending=largest).values
    for k in (1, 2, 17, 4999, 5000, 5001, 10_001, 10_002):
        assert kth_best(x, k, Order(largest)) == ordered[k - 1].item()
