"""`esa plot` (and `esa run --save-plots`): draw a run directory's figures into run_dir/plots/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esa.reports.figures import PLOTS_DIR, draw_run_figures
from esa.reports.rundata import load_run


def plot_run_dir(run_dir: Path, lm_summary: dict[str, Any] | None = None) -> list[Path]:
    """Draw every figure that applies (PNG + PDF) from the run's saved files; returns the paths written.

    `lm_summary` (LoadedModel.summary()) stands in for experiment_manifest.json, which `esa run`
    writes only after its figures.
    """
    run = load_run(Path(run_dir), lm_summary)
    return [path for figure in draw_run_figures(run) for path in figure.files]


def plot_command(run_dir: Path | str) -> str:
    """`esa plot RUN_DIR`: draw the figures and say which were drawn, and where."""
    paths = plot_run_dir(Path(run_dir))
    names = sorted({p.stem for p in paths})
    where = (Path(run_dir) / PLOTS_DIR).resolve()
    if not names:
        return f"plots     none apply: {Path(run_dir)} holds no statistics, perturbation or super-weight results"
    return f"plots     {len(names)} figures (PNG + PDF) in {where}: {', '.join(names)}"
