"""Figures of the cross-run studies, drawn from scaling.json and families.json only.

`plot_scaling`: per quantity, the runs on log-log axes with the fitted law y = c N^alpha and its 95%
confidence band (saved in the fit), and below it the residuals ln(y / fit). `plot_depth_profiles`:
each group's mean depth profile of sensitivity mass with its min-max range over runs.
`plot_family_ratios`: per quantity, one bar per group (mean over runs) with the min-max range and the
number of runs written on it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from esa.plots.style import LINE_STYLES, MARKERS, OKABE_ITO, figure_legend, log_axis, new_figure, styled
from esa.plots.values import fmt, num

DEFAULT_SCALING = ("max_over_median", "gini", "top_share_0.1%", "frac_above_threshold")
DEFAULT_RATIOS = ("attention_vs_mlp", "early_concentration", "embed_head_share")
MAX_PANELS = 8


@styled
def plot_scaling(scaling: dict[str, Any] | None, quantities: tuple[str, ...] | None = None,
                 context: str = "") -> Figure | None:
    """Scatter + law + band (top) and residuals (bottom) for each fitted quantity; None when nothing was fitted."""
    fits = [f for f in (scaling or {}).get("fits", []) if f.get("alpha") is not None]
    wanted = quantities or DEFAULT_SCALING
    chosen = [f for f in fits if f["quantity"] in wanted] or fits
    chosen = chosen[:MAX_PANELS]
    if not chosen:
        return None
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    size = (scaling or {}).get("size", "params")
    fig = new_figure(3.0 * cols + 1.0, 4.2 * rows, f"Scaling of sensitivity with model size ({size})", context)
    axes = fig.subplots(2 * rows, cols, squeeze=False, gridspec_kw={"height_ratios": [3, 1] * rows})
    for i, fit in enumerate(chosen):
        top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        _scaling_panel(top, bottom, fit, OKABE_ITO[i % len(OKABE_ITO)])
    for j in range(len(chosen), rows * cols):
        axes[2 * (j // cols), j % cols].set_visible(False)
        axes[2 * (j // cols) + 1, j % cols].set_visible(False)
    return fig


def _scaling_panel(top: Any, bottom: Any, fit: dict[str, Any], color: str) -> None:
    x = np.array([p["size"] for p in fit["points"]], float)
    y = np.array([p["value"] for p in fit["points"]], float)
    band = fit.get("band") or {}
    if band and all(num(v) is not None for v in band["lower"] + band["upper"]):
        top.fill_between(band["size"], band["lower"], band["upper"], color=color, alpha=0.2, linewidth=0,
                         label="95% band of the fit")
    grid = np.geomspace(x.min(), x.max(), 50)
    top.plot(grid, fit["c"] * grid ** fit["alpha"], color=color, linestyle="-", label="fit")
    top.plot(x, y, linestyle="none", marker="o", color="#000000", markersize=4, label="runs")
    lo, hi = fit["alpha_ci95"]
    top.set_title(f"{fit['quantity']} ({fit['metric']})\nα = {fmt(fit['alpha'], 3)} [{fmt(lo, 3)}, {fmt(hi, 3)}], "
                  f"R² = {fmt(fit['r2'], 3)}", fontsize=8)
    bp = fit.get("breakpoint") or {}
    if bp.get("preferred"):
        top.axvline(bp["size"], color="#333333", linestyle=":", label="breakpoint (preferred)")
    log_axis(top, "x")
    if y.max() > 10 * y.min():  # under a decade the log axis would carry no labelled tick
        log_axis(top, "y")
    bottom.axhline(0.0, color="#333333", linewidth=0.8)
    bottom.plot(x, np.log(y / (fit["c"] * x ** fit["alpha"])), linestyle="none", marker="s", color=color, markersize=3)
    bottom.set_ylabel("ln(y / fit)")
    bottom.set_xlabel(f"N ({fit['size']})")
    log_axis(bottom, "x")


@styled
def plot_depth_profiles(families: dict[str, Any] | None, context: str = "") -> Figure | None:
    """Mean depth profile per group (line style and marker differ per group) with its min-max range."""
    groups = [g for g in (families or {}).get("groups", []) if g.get("profile")]
    if not groups:
        return None
    grid = np.array(families["grid"], float)  # type: ignore[index]
    fig = new_figure(7.5, 4.0, "Sensitivity mass by relative depth, per group (1 = flat)", context)
    ax = fig.subplots()
    for i, g in enumerate(groups):
        color, style, marker = OKABE_ITO[i % len(OKABE_ITO)], LINE_STYLES[i % len(LINE_STYLES)], MARKERS[i % len(MARKERS)]
        prof = g["profile"]
        n = sum(1 for p in g["per_run_profiles"] if not all(v != v for v in p))
        ax.plot(grid, prof["mean"], color=color, linestyle=style, marker=marker, markersize=3, markevery=4,
                label=f"{g['name']} ({n} run{'s' if n != 1 else ''})")
        if n > 1:
            ax.fill_between(grid, prof["min"], prof["max"], color=color, alpha=0.15, linewidth=0)
    ax.axhline(1.0, color="#333333", linewidth=0.7, linestyle=":")
    ax.set_xlabel("relative depth (layer / (n_layers - 1))")
    ax.set_ylabel("block mass share x n_layers")
    figure_legend(fig, [ax])
    return fig


@styled
def plot_family_ratios(families: dict[str, Any] | None, quantities: tuple[str, ...] = DEFAULT_RATIOS,
                       context: str = "") -> Figure | None:
    """Bars of group means with min-max whiskers over runs, runs per group written above each bar."""
    groups = (families or {}).get("groups", [])
    present = [q for q in quantities if any(q in g.get("quantities", {}) for g in groups)]
    if not groups or not present:
        return None
    fig = new_figure(3.2 * len(present) + 1.5, 3.8, "Family comparison (bars: mean over runs; whiskers: min-max)",
                     context)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    hatches = ("", "//", "\\\\", "..", "xx", "--", "++", "oo")
    for ax, q in zip(axes, present):
        for i, g in enumerate(groups):
            stats = g.get("quantities", {}).get(q)
            if not stats:
                continue
            mean = stats["mean"]
            err = [[max(0.0, mean - stats["min"])], [max(0.0, stats["max"] - mean)]]  # rounding: mean of equal values
            ax.bar(i, mean, color=OKABE_ITO[i % len(OKABE_ITO)], hatch=hatches[i % len(hatches)], edgecolor="#333333",
                   yerr=err, capsize=3, label=g["name"])
            ax.annotate(f"n={stats['n']}", (i, stats["max"]), textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=7)
        ax.set_title(q, fontsize=9)
        ax.set_xticks([])
    figure_legend(fig, list(axes))
    return fig
