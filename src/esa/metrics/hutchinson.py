"""hutchinson_diag: Hutchinson's estimate of the Hessian diagonal of the mean calibration loss.

diag(H) = E_z[z ⊙ Hz] for Rademacher z (Bekas et al. 2007). Each probe fixes one z over the whole
calibration set and sums Hz over batches (H of the mean loss is the sum of each batch's share), with
Hz = ∂(g·z)/∂w by double backward: g comes from `autograd.grad(create_graph=True)`, then
`backward(g, z)` sends Hz through the same folding hooks as the first-order metrics, so the Hz part of
each parameter is folded into a float32 accumulator as soon as it exists. Probes are averaged with
Welford's update: extras "signed" is the mean estimate, "stderr" its standard error over probes
(std / sqrt(probes)), and the score is |mean|.

Cost per probe, over every calibration window: a forward, a backward that records its own graph and a
double backward (about two backwards), so roughly three plain gradients, plus a few passes over the
parameters (probe draw, Welford update). Memory: the first-order gradients with their graph (several times
a plain backward's activations) plus four parameter-sized buffers (z in the model dtype, reused across
probes; Hz, mean and M2 in float32).
Fused attention kernels (flash, memory-efficient, CPU flash) have no double backward, so attention runs
on PyTorch's math kernel here.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from esa.errors import EsaError
from esa.metrics._accumulate import (
    add, calibration, check_finite, folded_gradients, loss_share, progress, scoring_session, with_aliases,
    zeros_like_float,
)
from esa.metrics.base import MetricCost, MetricResult, ScoringContext

_NO_DOUBLE_BACKWARD = ("flash_attention_2", "flash_attention_3", "flex_attention")


class HutchinsonDiag:
    name = "hutchinson_diag"
    needs_backward = True
    cost = MetricCost(
        data=True, backward=True, accumulators=3, results=4, passes=7, gradient_copies=2,
        activation_factor=3.0, math_attention=True, per_probe=True,
    )
    options = {"probes": "Rademacher probes z; the estimate E[z * Hz] averages over them (--probes)"}

    def __call__(self, ctx: ScoringContext) -> MetricResult:
        if ctx.probes < 1:
            raise EsaError(f"hutchinson_diag needs --probes >= 1, got {ctx.probes}")
        _check_attention(ctx.model)
        probe_seeds = torch.randint(2**62, (ctx.probes,), generator=torch.Generator().manual_seed(ctx.seed)).tolist()
        with (
            scoring_session(ctx, grad=True) as params,
            folded_gradients(params, add, ctx.accumulate_on) as hz,
            sdpa_kernel([SDPBackend.MATH]),
            progress(ctx, self.name, passes=ctx.probes) as bar,
        ):
            mean, m2 = zeros_like_float(params, ctx.accumulate_on), zeros_like_float(params, ctx.accumulate_on)
            z = {n: torch.empty_like(p, memory_format=torch.contiguous_format) for n, p in params.items()}
            for k, seed in enumerate(probe_seeds, start=1):
                _draw_rademacher(z, seed)
                for ids in calibration(ctx, bar):
                    _hvp(ctx.model, ids, ctx.n_tokens, params, z)
                for name in params:  # estimate = z ⊙ Hz (zero where backward never reached), then Welford's update
                    estimate = hz.pop(name, None)
                    if estimate is None:
                        estimate = torch.zeros_like(mean[name])
                    estimate.mul_(z[name].to(estimate.device))
                    delta = estimate - mean[name]
                    mean[name].add_(delta, alpha=1.0 / k)
                    m2[name].addcmul_(delta, estimate.sub_(mean[name]))
        check_finite(mean, "Hessian estimates")
        notes = []
        if ctx.probes == 1:
            notes.append("hutchinson_diag with 1 probe has no standard error (stderr is NaN); use --probes >= 2")
        scale = 1.0 / math.sqrt((ctx.probes - 1) * ctx.probes) if ctx.probes > 1 else math.nan
        stderr = {n: m.sqrt_().mul_(scale) for n, m in m2.items()}
        return MetricResult(
            scores=with_aliases(ctx, {n: m.abs() for n, m in mean.items()}),
            extras={"signed": with_aliases(ctx, mean), "stderr": with_aliases(ctx, stderr)},
            notes=notes,
        )


def _hvp(model: nn.Module, ids: torch.Tensor, n_tokens: int, params: dict[str, nn.Parameter], z: dict) -> None:
    """Backpropagate this batch's share of Hz into the folding hooks (no return: the hooks accumulate it)."""
    loss = loss_share(model, ids, n_tokens)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
    # a gradient that is None or constant has no Hessian row here: it adds nothing to Hz
    live = [(g, z[n], p) for (n, p), g in zip(params.items(), grads) if g is not None and g.requires_grad]
    if live:
        gs, zs, ps = zip(*live)
        torch.autograd.backward(gs, grad_tensors=zs, inputs=ps)


def _draw_rademacher(z: dict[str, torch.Tensor], seed: int) -> None:
    """Refill each probe tensor with ±1 from `seed` (one generator per device, parameters in a fixed order).

    Signs come from random bytes, eight per draw: CPU generators are serial, and one draw per sign
    would cost as much as several passes over the model.
    """
    generators: dict[torch.device, torch.Generator] = {}
    for t in z.values():
        gen = generators.get(t.device)
        if gen is None:
            gen = generators[t.device] = torch.Generator(t.device).manual_seed(seed)
        random_bytes = torch.empty((t.numel() + 7) // 8, dtype=torch.uint8, device=t.device).random_(generator=gen)
        bits = (random_bytes.unsqueeze(-1) >> torch.arange(8, dtype=torch.uint8, device=t.device)).bitwise_and_(1)
        t.copy_(bits.reshape(-1)[: t.numel()].view(t.shape)).mul_(2).sub_(1)


def _check_attention(model: nn.Module) -> None:
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if impl in _NO_DOUBLE_BACKWARD:
        raise EsaError(
            f"hutchinson_diag needs double backward, which {impl} attention lacks; load the model with "
            "attn_implementation='sdpa' or 'eager'"
        )
