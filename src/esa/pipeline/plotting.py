"""`esa plot` (and `esa run --save-plots`): draw a run directory's figures into run_dir/plots/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esa.reports.figures import draw_run_figures
from esa.reports.rundata import load_run


def plot_run_dir(run_dir: Path, lm_summary: dict[str, Any] | None = None) -> list[Path]:
    """Draw every figure that applies (PNG + PDF) from the run's saved files; returns the paths written.

    `lm_summary` (LoadedModel.summary()) stands in for experiment_manifest.json, which `esa run`
    writes only after its figures.
    """
    run = load_run(Path(run_dir), lm_summary)
    return [path for figure in draw_run_figures(run) for path in figure.files]
