"""Pruning figures, drawn from prune_results.json only (esa prune).

`plot_prune_ppl`: perplexity against sparsity per score (log y), unstructured as lines, N:M patterns as
open markers at their sparsity N/M, the dense model as a dashed line. `plot_prune_layers`: achieved
sparsity per decoder block for the conditions whose blocks differ (group "global", or protection),
drawn only when some condition's allocation is non-uniform.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from esa.plots.style import GREY, LINE_STYLES, MARKERS, OKABE_ITO, figure_legend, log_axis, new_figure, styled

UNIFORM_TOLERANCE = 0.01  # blocks within 1 percentage point of each other count as uniform


def _look(i: int) -> dict[str, Any]:
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINE_STYLES[i % len(LINE_STYLES)]}


@styled
def plot_prune_ppl(results: dict[str, Any] | None, context: str = "") -> Figure | None:
    rows = [r for r in (results or {}).get("rows", []) if r.get("ppl") is not None]
    if not rows:
        return None
    fig = new_figure(6.0, 3.6, "Perplexity after pruning (evaluation windows)", context)
    ax = fig.add_subplot()
    scores = list(dict.fromkeys(r["score"] for r in rows))
    for i, score in enumerate(scores):
        look = _look(i)
        mine = [r for r in rows if r["score"] == score]
        line = sorted((r["sparsity"], r["ppl"]) for r in mine if r["pattern"] == "unstructured")
        if line:
            ax.plot(*zip(*line), label=score, **look)
        for r in (r for r in mine if r["pattern"] != "unstructured"):
            ax.plot([r["sparsity"]], [r["ppl"]], marker=look["marker"], color=look["color"], markerfacecolor="none",
                    markersize=8, linestyle="none", label=f"{score} ({r['pattern']})")
    dense = (results.get("dense") or {}).get("ppl")
    if dense is not None:
        ax.axhline(dense, color=GREY, linestyle="--", linewidth=1, label="dense")
    finite = [r["ppl"] for r in rows if np.isfinite(r["ppl"]) and r["ppl"] > 0]
    if finite:
        log_axis(ax, "y")
    ax.set_xlabel("sparsity of the pruned tensors")
    ax.set_ylabel("perplexity (log)")
    figure_legend(fig, [ax])
    return fig


def _non_uniform(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in conditions:
        values = list((c.get("per_layer") or {}).values())
        if values and max(values) - min(values) > UNIFORM_TOLERANCE:
            out.append(c)
    return out


@styled
def plot_prune_layers(results: dict[str, Any] | None, context: str = "") -> Figure | None:
    conditions = _non_uniform((results or {}).get("conditions", []))
    if not conditions:
        return None
    fig = new_figure(6.0, 3.4, "Achieved sparsity per decoder block (non-uniform allocations)", context)
    ax = fig.add_subplot()
    for i, c in enumerate(conditions):
        layers = sorted(c["per_layer"], key=int)
        ax.plot([int(x) for x in layers], [c["per_layer"][x] for x in layers], **_look(i),
                label=f"{c['score']} {c['pattern']} {c['sparsity']:g} ({c['group']})")
    ax.set_xlabel("decoder block")
    ax.set_ylabel("sparsity")
    figure_legend(fig, [ax])
    return fig
