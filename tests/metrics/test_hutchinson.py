"""hutchinson_diag converges to the exact Hessian diagonal, on every attention implementation."""

from __future__ import annotations

import pytest
import torch

from esa.errors import EsaError
from esa.evaluation.nll import next_token_nll
from esa.metrics import get_metric
from esa.models.tiny import TINY_CONFIGS, build_tiny_model

PARAM = "model.layers.1.input_layernorm.weight"  # 32 entries: an exact diagonal is 32 HVPs


def exact_hessian_diagonal(model: torch.nn.Module, ids: torch.Tensor, name: str) -> torch.Tensor:
    """diag(H) of the mean loss over all of `ids`, one coordinate at a time (e_i-HVPs)."""
    param = model.get_parameter(name)
    nll, _ = next_token_nll(model, ids)
    (grad,) = torch.autograd.grad(nll.mean(), param, create_graph=True)
    flat = grad.reshape(-1)
    rows = [torch.autograd.grad(flat[i], param, retain_graph=True)[0].reshape(-1)[i] for i in range(flat.numel())]
    return torch.stack(rows).reshape(param.shape).float()


def test_converges_to_exact_diagonal(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    model.set_attn_implementation("eager")
    ctx = make_ctx(model, [PARAM], n_windows=2, batch_size=2)
    exact = exact_hessian_diagonal(model, torch.cat(list(ctx.batches())), PARAM)
    metric = get_metric("hutchinson_diag")
    errors, stderrs = [], []
    for probes in (4, 16, 128):
        ctx.probes = probes
        result = metric(ctx)
        errors.append((result.extras["signed"][PARAM] - exact).norm() / exact.norm())
        stderrs.append(result.extras["stderr"][PARAM])
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.15
    assert bool(((result.extras["signed"][PARAM] - exact).abs() <= 4 * stderrs[2] + 1e-7).all())
    assert stderrs[2].mean() < stderrs[0].mean() / 3  # ~ 1/sqrt(probes)


def test_probe_is_fixed_across_batches(make_ctx) -> None:
    """One z per probe over all batches: batch size changes rounding only, not the estimate."""
    model = build_tiny_model("tiny-llama")
    one = get_metric("hutchinson_diag")(make_ctx(model, batch_size=1, probes=3))
    four = get_metric("hutchinson_diag")(make_ctx(model, batch_size=4, probes=3, accumulate_on="cpu"))
    for name, signed in one.extras["signed"].items():
        scale = signed.abs().max().item()
        torch.testing.assert_close(signed, four.extras["signed"][name], rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("family", list(TINY_CONFIGS))
def test_eager_and_sdpa_attention_agree(family: str, make_ctx) -> None:
    results = []
    for implementation in ("eager", "sdpa"):
        model = build_tiny_model(family)
        model.set_attn_implementation(implementation)
        results.append(get_metric("hutchinson_diag")(make_ctx(model, n_windows=2, probes=2)))
    for name, signed in results[0].extras["signed"].items():
        scale = signed.abs().max().item()
        torch.testing.assert_close(signed, results[1].extras["signed"][name], rtol=1e-3, atol=1e-4 * scale)


def test_seed_changes_probes_and_one_probe_has_no_stderr(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    a = get_metric("hutchinson_diag")(make_ctx(model, [PARAM], probes=1, seed=0))
    b = get_metric("hutchinson_diag")(make_ctx(model, [PARAM], probes=1, seed=1))
    assert not torch.equal(a.scores[PARAM], b.scores[PARAM])
    assert bool(a.extras["stderr"][PARAM].isnan().all()) and "no standard error" in a.notes[0]


def test_refuses_attention_without_double_backward(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(EsaError, match="double backward"):
        get_metric("hutchinson_diag")(make_ctx(model))
    with pytest.raises(EsaError, match="probes"):
        get_metric("hutchinson_diag")(make_ctx(build_tiny_model("tiny-llama"), probes=0))
