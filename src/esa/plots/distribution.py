"""How scores are spread over all weights: a log-binned histogram and the rank-vs-score (Zipf) curve.

Both come from the display bins of sensitivity_stats.json ("histogram": lower/upper edges, count and
sum of each non-empty bin), never from the score tensors. Zero scores cannot sit on a log axis; the
figures say how many there are instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from esa.plots.style import LINE_STYLES, MARKERS, OKABE_ITO, figure_legend, log_axis, new_figure, styled
from esa.plots.values import fmt, pct

MARKED_PERCENTILES = ("50", "90", "99", "99.9", "99.99")
BINS_PER_DECADE = 8


def _positive_bins(stats: dict[str, Any]) -> tuple[np.ndarray, ...] | None:
    """(lower, upper, count, sum) of the bins above zero, ascending; None when there are none."""
    hist = stats.get("histogram")
    if not hist or not hist.get("count"):
        return None
    lower, upper = np.asarray(hist["lower"], float), np.asarray(hist["upper"], float)
    count, total = np.asarray(hist["count"], float), np.asarray(hist["sum"], float)
    keep = (lower > 0) & (count > 0)
    if not keep.any():
        return None
    return lower[keep], upper[keep], count[keep], total[keep]


def _zeros_note(stats: dict[str, Any]) -> str:
    g = stats.get("global", {})
    n_zero, count = g.get("n_zero", 0), g.get("count", 0)
    if not n_zero or not count:
        return ""
    return f"{n_zero:,} weights ({100 * n_zero / count:.3g}%) score exactly 0 and are not shown"


def _score_label(stats: dict[str, Any]) -> str:
    return f"score ({stats.get('metric', 'metric')} units)"


def per_decade(lower: np.ndarray, upper: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regroup the saved bins into BINS_PER_DECADE equal log bins: (edges, weights per decade of score).

    The saved bins define a cumulative count at each of their edges; read between edges as uniform in
    log(score), it gives the count below any coarse edge. Coarse bins average out the sampling noise of
    the thin saved bins and have equal widths, so heights compare fairly."""
    log_lo, log_hi = np.log10(lower), np.log10(upper)
    n = int(np.clip(np.ceil((log_hi[-1] - log_lo[0]) * BINS_PER_DECADE), 1, 400))
    edges = np.linspace(log_lo[0], log_hi[-1], n + 1)
    cum = np.cumsum(count)
    below = np.interp(edges, np.column_stack([log_lo, log_hi]).ravel(), np.column_stack([cum - count, cum]).ravel())
    return 10.0**edges, np.diff(below) / np.diff(edges)


@styled
def plot_score_histogram(stats: dict[str, Any] | None, context: str = "") -> Figure | None:
    """Weights per decade of score (log-log), with the saved percentiles and the maximum marked."""
    bins = _positive_bins(stats or {})
    if bins is None:
        return None
    assert stats is not None
    edges, density = per_decade(*bins[:3])
    fig = new_figure(7.5, 4.2, "Distribution of sensitivity scores over all scored weights", context)
    ax = fig.add_subplot()
    log_axis(ax, "x")
    log_axis(ax, "y")
    floor = float(density[density > 0].min()) / 3
    top = float(density.max()) * 3
    ax.stairs(np.maximum(density, floor), edges, baseline=floor, fill=True, color=OKABE_ITO[4], alpha=0.3)
    ax.stairs(np.maximum(density, floor), edges, baseline=floor, color=OKABE_ITO[4], linewidth=1.0,
              label=f"all weights ({BINS_PER_DECADE} bins per decade)")
    ax.set_ylim(floor, top)
    note = _zeros_note(stats)
    ax.set_xlabel(_score_label(stats) + (f"\n{note}" if note else ""))
    ax.set_ylabel("weights per decade of score")

    g = stats.get("global", {})
    marks = [(f"p{q}", g.get("percentiles", {}).get(q)) for q in MARKED_PERCENTILES] + [("max", g.get("max"))]
    for i, (label, x) in enumerate((lab, v) for lab, v in marks if isinstance(v, (int, float)) and v > 0):
        ax.plot([x, x], [floor, top], color=OKABE_ITO[(i + 5) % len(OKABE_ITO)], linestyle=LINE_STYLES[i % len(LINE_STYLES)],
                marker=MARKERS[i % len(MARKERS)], markevery=[1], clip_on=False, linewidth=1.1, label=f"{label} = {x:.3g}")
    lines = [f"{fmt(g.get('count'))} weights", f"Gini {fmt(g.get('gini'), 3)}",
             f"max/median {fmt(g.get('max_over_median'), 3)}", f"top 0.1% hold {pct(g.get('top_share', {}).get('0.1%'))} of the total"]
    ax.text(0.01, 0.98, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#BBBBBB"})
    figure_legend(fig, [ax], title="percentiles of all scores")
    return fig


@styled
def plot_rank_score(stats: dict[str, Any] | None, top: pd.DataFrame | None = None, context: str = "") -> Figure | None:
    """Score against rank on log-log axes (a straight line is a power law). With a global top-k,
    the exact selected scores from top_weights.csv are overlaid on the binned curve."""
    bins = _positive_bins(stats or {})
    if bins is None:
        return None
    assert stats is not None
    _, _, count, total = (a[::-1] for a in bins)  # descending: rank 1 is the largest score
    last_rank = np.cumsum(count)
    first_rank = last_rank - count + 1
    x = np.column_stack([first_rank, last_rank]).ravel()
    y = np.repeat(total / count, 2)  # each bin drawn at its mean score over its rank range

    fig = new_figure(7.0, 4.0, "Rank vs score (Zipf plot) of all scored weights", context)
    ax = fig.add_subplot()
    log_axis(ax, "x")
    log_axis(ax, "y")
    ax.plot(x, y, color=OKABE_ITO[4], linewidth=1.4, label="all weights (binned: bin mean per rank range)")
    mode, k = stats.get("mode"), stats.get("k")
    if mode == "global" and top is not None and not top.empty:
        ax.plot(top["rank"].to_numpy(), top["score"].to_numpy(), linestyle="none", marker="o", markersize=3.5,
                markerfacecolor="none", color=OKABE_ITO[5], label=f"selected top-{len(top)} (exact scores)")
    if mode == "global" and isinstance(k, int) and k > 0:
        ax.axvline(k, color="#333333", linestyle="--", linewidth=1, label=f"k = {k}")
    ax.set_xlabel("rank (1 = highest score)")
    ax.set_ylabel(_score_label(stats))
    ax.legend(loc="lower left", title=_zeros_note(stats) or None, title_fontsize=7.5)
    return fig
