"""The contract every registered metric keeps on every tiny family (table-driven: a new metric is tested for free)."""

from __future__ import annotations

import pytest
import torch

from esa.metrics import METRICS, MetricResult
from esa.models.tiny import TINY_CONFIGS, build_tiny_model

CASES = [(metric, family) for metric in METRICS for family in TINY_CONFIGS]


def model_state(model: torch.nn.Module) -> dict:
    """Everything a metric must leave untouched: values, flags, grads, modes and hooks."""
    return {
        "values": {n: t.detach().clone() for n, t in model.state_dict(keep_vars=True).items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
        "training": {n: m.training for n, m in model.named_modules()},
        "attributes": {n: _attributes(m) for n, m in model.named_modules()},
        "hooks": sum(
            len(getattr(m, attr))
            for m in model.modules()
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
        )
        + sum(len(p._post_accumulate_grad_hooks or {}) + len(p._backward_hooks or {}) for p in model.parameters()),
    }


def _attributes(module: torch.nn.Module) -> dict:
    """A module's own attributes (names, and values where they are plain), so an added or changed flag
    (`_gradient_checkpointing_func`, `gradient_checkpointing`) shows."""
    plain = (bool, int, float, str, type(None))
    return {k: (v if isinstance(v, plain) else (type(v).__name__, id(v))) for k, v in vars(module).items()
            if k not in ("_parameters", "_buffers", "_modules") and not k.endswith("hooks")
            and not k.startswith("_forward") and not k.startswith("_backward")}


def assert_same_state(before: dict, after: dict) -> None:
    assert before["values"].keys() == after["values"].keys()
    for name, value in before["values"].items():
        assert torch.equal(value, after["values"][name]), name
    for key in ("requires_grad", "grads", "training", "attributes", "hooks"):
        assert before[key] == after[key], key


def assert_results_equal(a: MetricResult, b: MetricResult) -> None:
    assert a.scores.keys() == b.scores.keys() and a.extras.keys() == b.extras.keys() and a.notes == b.notes
    for name in a.scores:
        assert torch.equal(a.scores[name], b.scores[name]), name
    for extra, tensors in a.extras.items():
        for name, t in tensors.items():
            torch.testing.assert_close(t, b.extras[extra][name], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("metric_name,family", CASES)
def test_metric_contract(metric_name: str, family: str, checkpointing: bool, make_ctx) -> None:
    model = build_tiny_model(family)
    model.train()
    model.get_submodule(next(n for n, _ in model.named_children())).eval()  # mixed modes must come back as they were
    frozen = next(iter(model.parameters()))
    frozen.requires_grad_(False)  # a frozen parameter is still scored, and still frozen afterwards
    ctx = make_ctx(model, probes=3, checkpointing=checkpointing)
    before = model_state(model)
    metric = METRICS[metric_name]

    first = metric(ctx)
    assert_same_state(before, model_state(model))
    second = metric(ctx)
    assert_same_state(before, model_state(model))
    assert_results_equal(first, second)

    names = list(ctx.params)
    assert list(first.scores) == [n for n in names if n in first.scores], "scores follow ctx.params order"
    for name, score in first.scores.items():
        assert score.shape == ctx.params[name].shape and score.dtype == torch.float32, name
        assert bool(torch.isfinite(score).all()) and bool((score >= 0).all()), name
    for extra, tensors in first.extras.items():
        assert tensors.keys() == first.scores.keys(), extra
        assert all(t.shape == first.scores[n].shape and t.dtype == torch.float32 for n, t in tensors.items())
    unscored = len(names) - len(first.scores)
    if unscored:
        assert any(f"{unscored} of {len(names)} tensors were not scored" in note for note in first.notes)
    assert first.scores, "every metric scores something on every family"
    assert any(bool(s.any()) for s in first.scores.values()), "scores are not all zero"


@pytest.mark.parametrize("metric_name", list(METRICS))
def test_subset_scores_only_ctx_params(metric_name: str, make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    names = ["model.layers.1.self_attn.v_proj.weight", "model.layers.0.mlp.down_proj.weight"]
    result = METRICS[metric_name](make_ctx(model, names, probes=2))
    assert list(result.scores) == names
    assert all(p.requires_grad for p in model.parameters())
