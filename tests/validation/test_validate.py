"""esa.validate as a library call: no files, typed criteria, user perturbations, borrowed controls."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import esa
from esa.perturb import PERTURBATIONS, Perturbation, PerturbParam, random_matched_nearest, register_perturbation, tensor_checksum


@pytest.fixture(scope="module")
def setup():
    lm = esa.load_model("tiny-llama", device="cpu")
    corpus = esa.load_corpus("builtin", lm.tokenizer, max_chars=20000)
    windows = esa.make_windows(corpus, 32, 2, 2, 1)
    scores = esa.score_model(lm, esa.get_metric("magnitude"), windows, list(lm.params), seed=1, batch_size=2)
    return lm, windows, scores


class Jitter(Perturbation):
    """A user-defined random perturbation: w -> w + N(0, sigma)."""

    name = "test_jitter"
    params = {"sigma": PerturbParam(0.1, "--perturb-scale", "noise std")}

    def stochastic(self, opts: dict[str, Any]) -> bool:
        return True

    def definition(self, opts: dict[str, Any]) -> str:
        return f"w -> w + N(0, {opts['sigma']})"

    def compute(self, values, generator, tensor, opts):
        noise = torch.randn(values.shape, generator=generator, dtype=torch.float32)
        return (values.float() + opts["sigma"] * noise).to(values.dtype), {}


def test_user_random_perturbation_gets_one_target_trial_per_trial(setup):
    lm, windows, scores = setup
    register_perturbation(Jitter(), replace=True)
    try:
        before = {n: tensor_checksum(p) for n, p in lm.model.named_parameters()}
        top = esa.top_k(scores.scores, 5, "global")
        result = esa.validate(lm, top, "test_jitter", eval_windows=windows, controls=["random_k"], trials=3, seed=1,
                              batch_size=2)
        assert (result.table["set"] == "target").sum() == 3
        assert (result.table["set"] == "random_k").sum() == 3
        assert result.protocol["target_trials"] == 3
        targets = result.table[result.table["set"] == "target"]["ppl"].tolist()
        assert len(set(targets)) == 3  # each trial re-draws the noise
        assert before == {n: tensor_checksum(p) for n, p in lm.model.named_parameters()}
    finally:
        PERTURBATIONS.pop("test_jitter", None)


def test_deterministic_perturbation_one_target_and_typed_criteria(setup):
    lm, windows, scores = setup
    top = esa.top_k(scores.scores, 5, "global")
    bottom = esa.top_k(scores.scores, 5, "global", largest=False)
    result = esa.validate(lm, top, "zero", eval_windows=windows, bottom=bottom, trials=4, seed=1, batch_size=2)
    assert (result.table["set"] == "target").sum() == 1
    crit = result.criteria[(1.0, 5)]
    assert all(isinstance(c, esa.Criterion) and c.label in ("PASS", "FAIL", "N/A") for c in crit)
    again = esa.validate(lm, top, "zero", eval_windows=windows, bottom=bottom, trials=4, seed=1, batch_size=2)
    assert result.table.equals(again.table)


def test_borrowed_control_when_a_tensor_is_fully_selected(setup):
    lm, _, _ = setup
    norm = "model.layers.0.input_layernorm.weight"
    target = {norm: torch.arange(lm.params[norm].numel), "model.layers.0.self_attn.q_proj.weight": torch.tensor([0, 5])}
    drawn = random_matched_nearest(target, lm.params, torch.Generator().manual_seed(0))
    assert sum(v.numel() for v in drawn.indices.values()) == sum(v.numel() for v in target.values())
    record = drawn.borrowed[0]
    assert record["param"] == norm and record["own"] == 0
    first = record["from"][0]
    assert first["param"] == "model.layers.1.input_layernorm.weight" and first["level"] == "role"
    for name, idx in drawn.indices.items():  # disjoint from the target, no duplicates
        assert idx.unique().numel() == idx.numel()
        if name in target:
            assert not bool(torch.isin(idx, target[name]).any())


def test_borrowed_control_equals_plain_draw_without_shortage(setup):
    lm, _, _ = setup
    target = {"model.layers.0.self_attn.q_proj.weight": torch.tensor([0, 5, 9])}
    a = random_matched_nearest(target, lm.params, torch.Generator().manual_seed(3))
    b = esa.random_matched(target, lm.params, torch.Generator().manual_seed(3))
    assert not a.borrowed and torch.equal(a.indices[next(iter(target))], b[next(iter(target))])
