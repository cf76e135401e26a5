"""The shared scoring machinery: the model comes back untouched even on errors, fp16 overflow is caught."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from esa.errors import EsaError
from esa.metrics import ScoringContext, get_metric
from esa.models.tiny import VOCAB, build_tiny_model
from esa.models.types import ParamInfo


def test_state_restored_when_scoring_raises(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    ctx = make_ctx(model)
    first = next(iter(ctx.batches()))

    def failing_batches():
        yield first
        raise RuntimeError("disk went away")

    ctx.batches = failing_batches
    model.get_parameter("lm_head.weight").requires_grad_(False)
    for name in ("grad_x_weight", "act_mag", "hutchinson_diag"):
        with pytest.raises(RuntimeError, match="disk went away"):
            get_metric(name)(ctx)
        assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["lm_head.weight"]
        assert all(p.grad is None and not p._post_accumulate_grad_hooks for p in model.parameters())
        assert not any(m._forward_pre_hooks for m in model.modules())


def test_existing_grads_neither_leak_in_nor_get_lost(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    clean = get_metric("grad_x_weight")(make_ctx(model))
    old = {n: torch.full_like(p, 7.0) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = old[n]
    dirty = get_metric("grad_x_weight")(make_ctx(model))
    for n, p in model.named_parameters():
        assert p.grad is old[n]
        assert torch.equal(clean.scores[n], dirty.scores[n])


def test_tied_weight_listed_under_both_names(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    model.lm_head.weight = model.model.embed_tokens.weight
    once = get_metric("grad_x_weight")(make_ctx(model, ["model.embed_tokens.weight"]))
    ctx = make_ctx(model, ["model.embed_tokens.weight"])
    ctx.params["lm_head.weight"] = ctx.params["model.embed_tokens.weight"]
    twice = get_metric("grad_x_weight")(ctx)
    assert list(twice.scores) == ["model.embed_tokens.weight", "lm_head.weight"]
    for score in twice.scores.values():
        assert torch.equal(score, once.scores["model.embed_tokens.weight"])


def test_non_finite_loss_is_a_user_error(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    with torch.no_grad():
        model.model.norm.weight[0] = float("inf")
    with pytest.raises(EsaError, match="non-finite calibration loss .*--dtype bf16 or fp32"):
        get_metric("grad_x_weight")(make_ctx(model))


class SqrtAtZero(nn.Module):
    """Finite loss, infinite gradient: d sqrt(p)/dp at p = 0, like an fp16 gradient that overflowed."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 4)
        self.p = nn.Parameter(torch.zeros(4))
        self.out = nn.Linear(4, VOCAB)

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False) -> SimpleNamespace:
        return SimpleNamespace(logits=self.out(self.embed(input_ids) + self.p.sqrt()))


@pytest.mark.parametrize("metric", ["grad_x_weight", "grad_squared"])
def test_non_finite_gradient_names_the_parameter(metric: str) -> None:
    model = SqrtAtZero()
    ids = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    ctx = ScoringContext(
        model=model,
        params={n: ParamInfo(n, tuple(p.shape), None, "other") for n, p in model.named_parameters()},
        batches=lambda: iter([ids]),
        n_windows=2,
        n_tokens=14,
    )
    with pytest.raises(EsaError, match=r"non-finite gradients in p \(fp16 overflow\?\); use --dtype bf16 or fp32"):
        get_metric(metric)(ctx)


def test_bad_context_is_caught(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    with pytest.raises(EsaError, match="accumulate_on"):
        get_metric("magnitude")(make_ctx(model, accumulate_on="disk"))
    ctx = make_ctx(model)
    ctx.params["model.nope.weight"] = ctx.params["lm_head.weight"]
    with pytest.raises(EsaError, match="model.nope.weight"):
        get_metric("magnitude")(ctx)
    ctx = make_ctx(model)
    ctx.n_windows += 1
    with pytest.raises(ValueError, match="batches"):
        get_metric("grad_x_weight")(ctx)


def test_bf16_model_accumulates_in_float32(make_ctx) -> None:
    model = build_tiny_model("tiny-llama", dtype=torch.bfloat16)
    result = get_metric("grad_squared")(make_ctx(model, accumulate_on="cpu"))
    assert all(s.dtype == torch.float32 for s in result.scores.values())
    assert all(p.dtype == torch.bfloat16 and p.grad is None for p in model.parameters())
