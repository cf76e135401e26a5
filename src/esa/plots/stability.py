"""Do seeds (or runs) select the same weights? Jaccard and Spearman matrices, one cell per pair.

Accepts both shapes ESA saves: a pair list ({"runs": [...], "pairs": [{"a", "b", "jaccard",
"spearman"}]}, from esa.statistics.stability_report: sensitivity_stats.json "stability" and
`esa compare --out`) and square matrices ({"runs": [...], "jaccard": [[...]], "spearman": [[...]]}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from esa.plots.style import SEQUENTIAL, new_figure, save_figure, styled
from esa.plots.values import num

MEASURES = {"jaccard": "Jaccard overlap of the top-k sets", "spearman": "Spearman rank correlation on their union"}


def similarity_matrices(report: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Run labels and one symmetric matrix per measure present (diagonal 1, NaN where not computed)."""
    labels = [str(r) for r in report.get("runs", [])]
    n = len(labels)
    out: dict[str, np.ndarray] = {}
    for measure in MEASURES:
        if isinstance(report.get(measure), list):
            m = np.array([[np.nan if num(v) is None else num(v) for v in row] for row in report[measure]], float)
        elif report.get("pairs"):
            m = np.full((n, n), np.nan)
            np.fill_diagonal(m, 1.0)
            where = {label: i for i, label in enumerate(labels)}
            for pair in report["pairs"]:
                v = num(pair.get(measure))
                i, j = where.get(str(pair.get("a"))), where.get(str(pair.get("b")))
                if v is not None and i is not None and j is not None:
                    m[i, j] = m[j, i] = v
        else:
            continue
        if m.shape == (n, n) and np.isfinite(m[~np.eye(n, dtype=bool)]).any():
            out[measure] = m
    return labels, out


@styled
def plot_similarity(report: dict[str, Any] | None, context: str = "", title: str = "Top-k stability across seeds",
                    label_prefix: str = "") -> Figure | None:
    """Annotated heatmaps of pairwise Jaccard (and Spearman where saved); None for fewer than two runs."""
    if not report:
        return None
    labels, matrices = similarity_matrices(report)
    if len(labels) < 2 or not matrices:
        return None
    n = len(labels)
    side = float(np.clip(1.2 + 0.55 * n, 3.2, 9.0))
    fig = new_figure(side * len(matrices) + 0.8, side, title, context)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    ticks = [f"{label_prefix}{label}" for label in labels]
    cmap = matplotlib.colormaps[SEQUENTIAL].with_extremes(bad="#E6E6E6")
    for ax, (measure, m) in zip(axes, matrices.items()):
        lo = min(0.0, float(np.nanmin(m)))
        image = ax.imshow(np.ma.masked_invalid(m), norm=Normalize(lo, 1.0), cmap=cmap, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.85, label=measure.capitalize())
        ax.set_xticks(range(n), ticks, rotation=30 if max(map(len, ticks)) > 6 else 0, ha="right")
        ax.set_yticks(range(n), ticks)
        ax.set_title(MEASURES[measure])
        ax.grid(False)
        if n <= 20:
            rgba = image.to_rgba(np.ma.masked_invalid(m))
            dark = rgba[..., :3] @ np.array([0.299, 0.587, 0.114]) < 0.5
            for (i, j), v in np.ndenumerate(m):
                ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dark[i, j] and not np.isnan(v) else "black")
    return fig


def plot_compare(compare: dict[str, Any] | None, out_dir: Path | str, context: str = "") -> list[Path]:
    """Overlap of the top-k between runs (`esa compare`), saved as compare_overlap.{png,pdf} in `out_dir`."""
    fig = plot_similarity(compare, context=context, title="Top-k overlap across runs")
    return [] if fig is None else save_figure(fig, Path(out_dir), "compare_overlap")
