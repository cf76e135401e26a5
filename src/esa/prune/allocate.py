"""Per-tensor sparsity from sensitivity mass: prune more where the loss cares less.

Within each output row the weights still go in the order of a ranking score (Wanda's |W|·‖X‖ for
ESA's `esa` score); what this module chooses is how many go in each tensor. Pruning the first k
weights of every row of tensor t costs, to second order with a diagonal Hessian (Optimal Brain
Damage), ΔL_t(k) ≈ ½ Σ_rows Σ_{j<k} F_ij·W_ij², with F the empirical Fisher diagonal (grad_squared)
summed over the calibration windows. Summed over a whole tensor the Fisher's per-weight noise averages
out, which per-weight rankings by the Fisher cannot count on.

The allocation minimises Σ_t ΔL_t(k_t) subject to Σ_t rows_t·k_t = floor(s·N) (the same number of
weights as uniform pruning) and s - spread <= k_t / in_t <= s + spread (a bounded deviation, as OWL
bounds its layer-wise sparsities, since the diagonal model ignores how errors compound across
layers). It is solved greedily in steps of `step`·in_t weights per row, always taking the step with
the smallest cost per pruned weight; ΔL_t(k) is convex in k when the ranking score orders weights by
their saliency, so the greedy is then optimal on the step grid. The last step is cut to hit the
budget to within one row.
Cost: one stable sort of each tensor's rows (as Wanda) and one cumulative sum; memory: one float64
vector of length in_t per tensor.
"""

from __future__ import annotations

import heapq

import torch

from esa.errors import EsaError

DEFAULT_SPREAD = 0.2  # chosen for the esa score on held-out calibration windows (BENCHMARKS.md)
DEFAULT_STEP = 0.01


def allocate_sparsity(
    order: dict[str, torch.Tensor], saliency: dict[str, torch.Tensor], sparsity: float,
    spread: float = DEFAULT_SPREAD, step: float = DEFAULT_STEP,
) -> dict[str, float]:
    """name -> fraction of each row of that [out, in] matrix to prune (k_t / in_t), see the module docstring.

    `order` ranks the weights inside a row (low = pruned first), `saliency` is each weight's loss
    proxy (e.g. F·W²); both are [out, in] matrices under the same names."""
    if not 0 <= spread < 1 or not 0 < step <= 1:
        raise EsaError(f"sparsity spread must be in [0, 1) and step in (0, 1], got {spread} and {step}")
    cost, rows, width, lo, hi, inc = {}, {}, {}, {}, {}, {}
    for name, score in order.items():
        ranked = torch.sort(score.float(), dim=-1, stable=True).indices
        per_k = saliency[name].double().gather(1, ranked).cumsum(1).sum(0)
        cost[name] = torch.cat([per_k.new_zeros(1), per_k]).tolist()
        rows[name], width[name] = score.shape
        lo[name] = int(width[name] * max(0.0, sparsity - spread))
        hi[name] = min(width[name], int(width[name] * min(1.0, sparsity + spread)))
        inc[name] = max(1, int(width[name] * step))
    k = dict(lo)
    budget = int(sparsity * sum(rows[n] * width[n] for n in order)) - sum(rows[n] * k[n] for n in order)
    heap: list[tuple[float, str, int]] = []

    def offer(name: str) -> None:
        nxt = min(hi[name], k[name] + inc[name])
        if nxt > k[name]:
            per_weight = (cost[name][nxt] - cost[name][k[name]]) / (rows[name] * (nxt - k[name]))
            heapq.heappush(heap, (per_weight, name, nxt))

    for name in order:
        offer(name)
    while budget > 0 and heap:
        _, name, nxt = heapq.heappop(heap)
        nxt = min(nxt, k[name] + -(-budget // rows[name]))
        budget -= rows[name] * (nxt - k[name])
        k[name] = nxt
        offer(name)
    return {name: k[name] / width[name] for name in order}
