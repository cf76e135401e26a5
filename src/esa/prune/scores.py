"""Per-weight pruning scores (low = prune first): any registered metric, or ESA's own score.

A registered metric (`magnitude`, `act_mag` = Wanda's |W_ij|·‖X_j‖, `grad_x_weight`, `grad_squared`,
`hutchinson_diag`, or a user metric) is used as it scores. `esa` is ours: Wanda's order inside each
output row, and how many weights each tensor loses chosen from the loss's curvature (esa.prune.allocate):
each tensor's sparsity lies in s ± spread (DEFAULT_SPREAD) and minimises the summed Optimal Brain Damage cost
½·Σ F_ij·W_ij² of what is pruned, F the empirical Fisher diagonal (`grad_squared`), under the same
total number of pruned weights as uniform pruning. Wanda's |W|·‖X‖ is the diagonal of the layer's own
reconstruction Hessian: good at ranking weights inside one row, blind to how much the loss depends on
the layer as a whole; the Fisher knows that, but per weight it is too noisy to rank 100 M weights from a
few windows (grad_squared alone prunes worse than magnitude on SmolLM2), and summed over a tensor the
noise averages out. So ESA uses each for what it measures well. The spread 0.2 (DEFAULT_SPREAD) was chosen on held-out
calibration windows, never the evaluation windows (BENCHMARKS.md, "Pruning"). N:M patterns fix every
tensor's sparsity, and groups other than "row" compare across rows: there `esa` is Wanda's score.
Cost: one forward pass (act_mag) plus one forward+backward per calibration window (grad_squared).
"""

from __future__ import annotations

import torch

from esa.data import WindowSet
from esa.errors import EsaError
from esa.metrics import METRICS, score_model
from esa.models.types import LoadedModel

SPARSEGPT = "sparsegpt"
ESA = "esa"
ESA_RANK = "act_mag"  # the order inside each row
ESA_ALLOCATE_BY = "grad_squared"  # the per-tensor sparsity
CURVATURE = ("grad_squared", "hutchinson_diag")  # metrics estimating the loss Hessian's diagonal: saliency h·w²


def score_names() -> list[str]:
    """Every score `prune` accepts by name."""
    return [*METRICS, SPARSEGPT, ESA]


def check_score(score: object) -> None:
    if isinstance(score, str) and score not in score_names():
        raise EsaError(f"unknown score {score!r}; choose one of: {', '.join(score_names())}")


def weight_scores(
    lm: LoadedModel, windows: WindowSet, score: str | object, names: list[str], *, seed: int, batch_size: int,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Scores shaped like each named parameter, and the metric's notes (tensors it cannot score are absent)."""
    if score == ESA:
        score = ESA_RANK  # its allocation is prune's business (esa.prune.allocate)
    result = score_model(lm, score, windows, list(names), seed=seed, batch_size=batch_size)
    return result.scores, list(result.notes)
