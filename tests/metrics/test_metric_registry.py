"""The registry: built-ins by name, user metrics as objects or plain functions, bad results caught."""

from __future__ import annotations

import pytest
import torch

from esa.errors import EsaError
from esa.metrics import METRICS, Metric, MetricResult, ScoringContext, as_metric, get_metric, register_metric
from esa.models.tiny import build_tiny_model

BUILT_INS = ["magnitude", "grad_x_weight", "grad_squared", "act_mag", "hutchinson_diag"]


def test_built_ins_are_registered() -> None:
    assert list(METRICS)[:5] == BUILT_INS
    for name in BUILT_INS:
        metric = get_metric(name)
        assert isinstance(metric, Metric) and metric.name == name
    assert [get_metric(n).needs_backward for n in BUILT_INS] == [False, True, True, False, True]


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(EsaError, match="unknown metric 'fisher'; choose one of: magnitude, grad_x_weight"):
        get_metric("fisher")


def squared_weight(ctx: ScoringContext) -> MetricResult:
    """A user metric: w², computed with autograd on (the session says so)."""
    named = dict(ctx.model.named_parameters())
    assert torch.is_grad_enabled() and not ctx.model.training
    return MetricResult(scores={n: named[n].detach().float() ** 2 for n in ctx.params})


def test_user_function_through_the_registry(make_ctx, monkeypatch) -> None:
    monkeypatch.setattr("esa.metrics.registry.METRICS", dict(METRICS))
    from esa.metrics import registry

    register_metric(as_metric(squared_weight, "w2"))
    with pytest.raises(EsaError, match="already registered"):
        register_metric(as_metric(squared_weight, "w2"))
    model = build_tiny_model("tiny-phi3")
    model.train()
    names = ["model.layers.0.mlp.down_proj.weight"]
    for metric in (registry.get_metric("w2"), get_metric(squared_weight)):
        result = metric(make_ctx(model, names))
        assert torch.equal(result.scores[names[0]], model.get_parameter(names[0]).detach() ** 2)
        assert model.training and all(p.requires_grad for p in model.parameters())
    assert get_metric(squared_weight).name == "squared_weight"


def test_broken_user_results_are_user_errors(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    ctx = make_ctx(model, ["lm_head.weight"])

    def bad(scores):
        return as_metric(lambda ctx: MetricResult(scores=scores), "bad", needs_backward=False)

    cases = {
        "not a parameter being scored": {"model.norm.weight": torch.ones(32)},
        "has shape": {"lm_head.weight": torch.ones(3)},
        "not torch.float32": {"lm_head.weight": torch.ones(259, 32, dtype=torch.float64)},
        "not finite": {"lm_head.weight": torch.full((259, 32), float("nan"))},
        "negative": {"lm_head.weight": -torch.ones(259, 32)},
    }
    for problem, scores in cases.items():
        with pytest.raises(EsaError, match=problem):
            bad(scores)(ctx)
    with pytest.raises(EsaError, match="not a MetricResult"):
        as_metric(lambda ctx: {}, "dict")(ctx)
