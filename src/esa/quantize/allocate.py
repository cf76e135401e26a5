"""Mixed precision: a bit width per tensor that minimises sensitivity-weighted error under a bit budget.

Objective (stated, and what is minimised): with s_i a sensitivity score of weight i (grad_squared, the
empirical Fisher diagonal, makes s_i d_i^2 the second-order estimate of the loss increase of moving w_i
by d_i; any registered metric can stand in),

    minimise  sum_t E_t(b_t),   E_t(b) = sum_{i in t} s_i (w_i - RTN_b(w_i))^2
    subject to  sum_t cost_t(b_t) + kept bits <= budget * N,

cost_t from esa.quantize.cost (codes + scales + zero points), N the number of target weights, b_t from
the candidate widths. E_t(b) is measured by RTN with the same group size and protection (for GPTQ too:
a proxy, since GPTQ's error depends on the order layers are quantized in). Solver: greedy marginal
analysis. Start every tensor at the narrowest width, then repeatedly take the upgrade (any tensor, to
any wider width) with the largest error decrease per added bit that still fits the budget, until none
fits. Memory: one float32 copy of a tensor at a time; time: |candidates| RTN passes over the targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from esa.quantize.cost import tensor_bits
from esa.quantize.rtn import rtn
from esa.quantize.targets import Target

OBJECTIVE = (
    "minimise sum over tensors of sum_i s_i (w_i - RTN_b(w_i))^2 (s = the allocation metric's score) subject to "
    "codes + scales + zero points + kept weights <= budget x weights; greedy: best error decrease per added bit"
)


@dataclass(frozen=True)
class Allocation:
    """Bits per tensor, and the objective before/after, for the record."""

    bits: dict[str, int]
    error: dict[str, dict[int, float]]  # tensor -> width -> E_t(width)
    total_error: float
    used_bits: int
    budget_bits: int


def storage(target: Target, bits: int, group_size: int, symmetric: bool) -> int:
    """Bits of one target at `bits` (codes, scales, zero points)."""
    rows = target.numel // target.in_features
    return tensor_bits(rows, target.in_features, bits, group_size, symmetric)


def allocate(
    targets: list[Target], scores: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], *, budget: int,
    widths: tuple[int, ...], group_size: int, symmetric: bool,
) -> Allocation:
    """Bits per target minimising the weighted RTN error with at most `budget` bits for the codes and
    their scales (kept weights already deducted by the caller)."""
    widths = tuple(sorted(widths))
    error: dict[str, dict[int, float]] = {}
    for t in targets:
        w, s = t.matrix(), t.to_matrix(scores[t.name]).float()
        keep = t.to_matrix(masks[t.name]) if t.name in masks else None
        error[t.name] = {b: float((s * (rtn(w, b, group_size, symmetric, keep).dequantized.float() - w.float()) ** 2).sum())
                         for b in widths}
    cost = {t.name: {b: storage(t, b, group_size, symmetric) for b in widths} for t in targets}
    chosen = {t.name: widths[0] for t in targets}
    used = sum(cost[n][widths[0]] for n in chosen)
    while True:
        best: tuple[float, str, int] | None = None
        for name, b in chosen.items():
            for wider in (x for x in widths if x > b):
                extra = cost[name][wider] - cost[name][b]
                gain = error[name][b] - error[name][wider]
                if gain > 0 and used + extra <= budget and (best is None or gain / extra > best[0]):
                    best = (gain / extra, name, wider)
        if best is None:
            break
        _, name, wider = best
        used += cost[name][wider] - cost[name][chosen[name]]
        chosen[name] = wider
    total = sum(error[n][b] for n, b in chosen.items())
    return Allocation(chosen, error, total, used, budget)
