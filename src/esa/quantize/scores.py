"""Sensitivity scores and super weights of the unmodified model, computed once per (model, windows).

Protection and allocation both need them; `ScoreCache` lets several configurations (a grid of bits,
methods, budgets) share one scoring pass. Memory: one float32 tensor per target per metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from esa.analysis import detect_superweights
from esa.data import WindowSet
from esa.metrics import ScoringContext, get_metric
from esa.models import LoadedModel, input_device


@dataclass
class ScoreCache:
    """Metric scores (name -> param -> tensor) and detected super weights [(param, flat)], by need."""

    scores: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    superweights: list[tuple[str, int]] | None = None


def metric_scores(
    lm: LoadedModel, windows: WindowSet, metric: str, names: list[str], cache: ScoreCache, *, seed: int,
    batch_size: int, progress: bool,
) -> dict[str, torch.Tensor]:
    """`metric`'s scores of the parameters `names` over the calibration windows."""
    if metric not in cache.scores:
        ctx = ScoringContext(
            model=lm.model, params={n: lm.params[n] for n in names},
            batches=lambda: windows.batches("calib", batch_size, input_device(lm.model)),
            n_windows=len(windows.calib_offsets), n_tokens=windows.n_predicted_tokens("calib"),
            seed=seed, progress=progress,
        )
        cache.scores[metric] = get_metric(metric)(ctx).scores
    return cache.scores[metric]


def superweights(
    lm: LoadedModel, windows: WindowSet, cache: ScoreCache, *, seed: int, batch_size: int, progress: bool
) -> list[tuple[str, int]]:
    """(param, flat index) of every validated super weight (esa.analysis.detect_superweights)."""
    if cache.superweights is None:
        found = detect_superweights(lm, windows, seed=seed, batch_size=batch_size, progress=progress)
        cache.superweights = [(row["param"], int(row["flat_index"])) for row in found.super_weights()]
    return cache.superweights
