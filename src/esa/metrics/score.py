"""Scoring a loaded model on a window set: the one place that builds a ScoringContext from them.

Every capability that needs scores (profiling, pruning, fine-tuning masks, ...) calls `score_model`, so a
metric sees the same calibration batches, token count and options wherever it runs.
"""

from __future__ import annotations

from typing import Any

from esa.data import WindowSet
from esa.metrics.base import Metric, MetricResult, ScoringContext
from esa.metrics.registry import get_metric
from esa.models import LoadedModel, input_device


def score_model(
    lm: LoadedModel, metric: Metric | str | Any, windows: WindowSet, param_names: list[str], *, seed: int,
    batch_size: int, probes: int = 8, accumulate_on: str = "param", progress: bool = False,
    checkpointing: bool = False,
) -> MetricResult:
    """Run `metric` (a Metric, a registered name or a plain function) over the calibration windows."""
    device = input_device(lm.model)
    ctx = ScoringContext(
        model=lm.model,
        params={n: lm.params[n] for n in param_names},
        batches=lambda: windows.batches("calib", batch_size, device),
        n_windows=len(windows.calib_offsets),
        n_tokens=windows.n_predicted_tokens("calib"),
        seed=seed,
        probes=probes,
        accumulate_on=accumulate_on,
        progress=progress,
        checkpointing=checkpointing,
    )
    return get_metric(metric)(ctx)
