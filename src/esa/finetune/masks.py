"""Which weights a fine-tuning run trains or freezes: the top-k under a registered metric, or a random control.

A mask maps parameter names to sorted flat (row-major) indices. The metric mask scores every weight with
`esa.metrics` on the given windows' calibration split and keeps the global top k (`esa.ranking.top_k`);
scoring holds one float32 score tensor per parameter (one model-sized buffer) until the ranking is done.
The random mask draws k distinct weights uniformly over the same parameters with its own seeded
generator: the same-size control that says whether the metric's choice matters.
"""

from __future__ import annotations

import torch
from torch import nn

from esa.data.windows import WindowSet
from esa.errors import EsaError
from esa.metrics import score_model
from esa.models import LoadedModel
from esa.ranking import top_k

RANDOM = "random"
Mask = dict[str, torch.Tensor]


def weight_params(lm: LoadedModel) -> dict[str, nn.Parameter]:
    """The distinct floating-point parameters ESA describes (a tied tensor once, under its first name)."""
    return {
        name: p for name, p in lm.model.named_parameters()
        if name in lm.params and p.is_floating_point()
    }


def resolve_budget(n_weights: int, budget: float | None, budget_k: int | None, default: float | int) -> int:
    """The number of weights a budget means: a fraction of `n_weights`, an exact count, or `default` (either)."""
    if budget is not None and budget_k is not None:
        raise EsaError("give either --budget (a fraction) or --budget-k (a count), not both")
    if budget is not None:
        if not 0 < budget <= 1:
            raise EsaError(f"--budget must be above 0 and at most 100% of the weights, got {budget:.6g}")
        return max(1, round(budget * n_weights))
    if budget_k is None:
        return default if isinstance(default, int) else max(1, round(default * n_weights))
    if not 1 <= budget_k <= n_weights:
        raise EsaError(f"--budget-k must be between 1 and the model's {n_weights:,} weights, got {budget_k}")
    return budget_k


def score(
    lm: LoadedModel, params: dict[str, nn.Parameter], metric: str, windows: WindowSet, *, seed: int,
    batch_size: int, progress: bool,
) -> dict[str, torch.Tensor]:
    """Scores of `metric` (a registered name) for `params` on the calibration windows of `windows`."""
    return score_model(lm, metric, windows, list(params), seed=seed, batch_size=batch_size, progress=progress).scores


def metric_mask(
    lm: LoadedModel, params: dict[str, nn.Parameter], metric: str, windows: WindowSet, k: int, *, seed: int,
    batch_size: int, progress: bool,
) -> Mask:
    """The global top k of `metric` (or k random weights for metric "random")."""
    if metric == RANDOM:
        return random_mask(params, k, seed)
    scores = score(lm, params, metric, windows, seed=seed, batch_size=batch_size, progress=progress)
    return top_k(scores, k, "global").by_param()


def random_mask(params: dict[str, nn.Parameter], k: int, seed: int) -> Mask:
    """k distinct weights drawn uniformly over all of `params` (torch.Generator().manual_seed(seed)).

    Draws with replacement and tops up the shortfall until k distinct positions are held, so memory stays
    O(k) even for a large model; a dense permutation is used when k is a large share of the weights.
    """
    sizes = torch.tensor([p.numel() for p in params.values()], dtype=torch.long)
    total = int(sizes.sum())
    generator = torch.Generator().manual_seed(seed)
    if 4 * k >= total:
        chosen = torch.randperm(total, generator=generator)[:k].sort().values
    else:
        chosen = torch.empty(0, dtype=torch.long)
        while chosen.numel() < k:
            draw = torch.randint(total, (k - chosen.numel(),), generator=generator)
            chosen = torch.unique(torch.cat([chosen, draw]))
    ends = sizes.cumsum(0)
    pid = torch.searchsorted(ends, chosen, right=True)
    flat = chosen - (ends - sizes)[pid]
    counts = torch.bincount(pid, minlength=len(sizes)).tolist()
    return {name: idx for name, idx, c in zip(params, flat.split(counts), counts) if c}


def mask_size(mask: Mask) -> int:
    return sum(idx.numel() for idx in mask.values())
