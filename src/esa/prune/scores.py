"""Per-weight pruning scores (low = prune first): any registered metric, or ESA's combined score.

A registered metric (`magnitude`, `act_mag` = Wanda's |W_ij|·‖X_j‖, `grad_x_weight`, `grad_squared`,
`hutchinson_diag`, or a user metric) is used as it scores. `esa` is ours:

    esa_ij = (|W_ij|·‖X_j‖)^(1-β) · (|W_ij|·sqrt(F_ij))^β  =  |W_ij| · ‖X_j‖^(1-β) · F_ij^(β/2)

with F the empirical Fisher diagonal (`grad_squared`). Both factors are square roots of an Optimal
Brain Damage saliency w²·h: Wanda's h = ‖X_j‖² is the diagonal of the layer's own reconstruction
Hessian XᵀX (local, blind to what the rest of the network does with the layer's output), the Fisher's
h = F_ij approximates the diagonal of the loss Hessian (global, but noisy from 32 windows). The
geometric blend keeps Wanda's per-row ordering where the loss is indifferent and moves weights the
loss depends on up the ranking. β = ESA_BETA = 0.5 (the two saliencies weighted equally) is a prior, not
a tuned value: benchmarks/bench_prune.py compares β = 0.25 / 0.5 / 0.75 with Wanda, and its table (in
BENCHMARKS.md, "esa prune") is what should choose it.
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
ESA_BETA = 0.5
ESA_PARTS = ("act_mag", "grad_squared")


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
        parts = [weight_scores(lm, windows, part, names, seed=seed, batch_size=batch_size) for part in ESA_PARTS]
        (act, notes), (fisher, _) = parts
        named = dict(lm.model.named_parameters(remove_duplicate=False))
        return {n: esa_blend(act[n], named[n], fisher[n], ESA_BETA) for n in act if n in fisher}, notes
    result = score_model(lm, score, windows, list(names), seed=seed, batch_size=batch_size)
    return result.scores, list(result.notes)


def esa_blend(act_mag: torch.Tensor, weight: torch.Tensor, fisher: torch.Tensor, beta: float) -> torch.Tensor:
    """(|W|·‖X‖)^(1-β) · (|W|·sqrt(F))^β, computed in float32 (see the module docstring)."""
    w = weight.detach().to(act_mag.device, torch.float32).abs()
    return act_mag.pow(1.0 - beta) * (w * fisher.to(act_mag.device).sqrt()).pow(beta)
