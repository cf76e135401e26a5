"""Where sensitivity sits in depth and by component: layer x component heatmaps and stacked layer bars.

Score mass per (layer, component) cell comes from sensitivity_stats.json "by_layer_component"
(keys "<layer>/<component>", "none" outside the decoder blocks) when the run saved it; otherwise
only its per-layer total is known and the figures say so. Top-k counts per cell come from the same
grouping of "topk", or else from the first seed's rows of top_weights.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from esa.plots.style import SEQUENTIAL, component_look, figure_legend, new_figure, styled

OUTSIDE = "none"  # the layer key of parameters outside the decoder blocks
MAX_ANNOTATED_CELLS = 400


@dataclass
class LayerTable:
    """values[i, j] for layer rows[i] and component cols[j]; NaN where no such parameters exist."""

    rows: list[str]
    cols: list[str]
    values: np.ndarray

    def row_labels(self) -> list[str]:
        return ["outside blocks" if r == OUTSIDE else r for r in self.rows]


def _layer_order(keys: list[str]) -> list[str]:
    return sorted(set(keys), key=lambda k: (k == OUTSIDE, int(k) if k.lstrip("-").isdigit() else 0, k))


def _components(stats: dict[str, Any], extra: list[str]) -> list[str]:
    """Components in the order the statistics list them (esa's COMPONENTS order), then any others."""
    known = list(stats.get("by_component", {}))
    return known + [c for c in dict.fromkeys(extra) if c not in known]


def _from_grouping(group: dict[str, Any], field: str, stats: dict[str, Any]) -> LayerTable | None:
    """A table from a "<layer>/<component>" grouping; None when the grouping was not saved."""
    if not group:
        return None
    cells = {tuple(key.split("/", 1)): entry.get(field) for key, entry in group.items() if "/" in key}
    if not cells:
        return None
    rows = _layer_order([layer for layer, _ in cells])
    cols = _components(stats, [comp for _, comp in cells])
    values = np.full((len(rows), len(cols)), np.nan)
    for (layer, comp), v in cells.items():
        values[rows.index(layer), cols.index(comp)] = float(v or 0.0)
    return LayerTable(rows, cols, values)


def score_mass(stats: dict[str, Any]) -> LayerTable | None:
    """Each cell's share of the total score, or None when the run did not save by_layer_component."""
    table = _from_grouping(stats.get("by_layer_component", {}), "sum", stats)
    total = stats.get("global", {}).get("sum")
    if table is None or not total:
        return None
    table.values = table.values / float(total)
    return table


def topk_counts(stats: dict[str, Any], top: pd.DataFrame | None) -> LayerTable | None:
    """Selected weights per cell (first seed): from the statistics, else counted from top_weights.csv."""
    table = _from_grouping(stats.get("topk", {}).get("by_layer_component", {}), "count", stats)
    if table is not None or top is None or top.empty:
        return table
    layers = top["layer"].astype(int).map(lambda x: OUTSIDE if x < 0 else str(x))
    counts = pd.crosstab(layers, top["component"].astype(str))
    rows = _layer_order(list(counts.index) + list(stats.get("by_layer", {})))  # layers with no selection too
    cols = _components(stats, list(counts.columns))
    counts = counts.reindex(index=rows, columns=cols, fill_value=0)
    return LayerTable(rows, cols, counts.to_numpy(float))


def _layer_share(stats: dict[str, Any]) -> LayerTable | None:
    """Per-layer share of the total score with components merged (when cells were not saved)."""
    by_layer, total = stats.get("by_layer", {}), stats.get("global", {}).get("sum")
    if not by_layer or not total:
        return None
    rows = _layer_order(list(by_layer))
    values = np.array([[by_layer[r]["sum"] / total] for r in rows])
    return LayerTable(rows, ["all components"], values)


def _heatmap(ax: Any, table: LayerTable, title: str, cbar_label: str, log: bool, percent: bool) -> None:
    data = np.ma.masked_where(~(table.values > 0), table.values)  # zero and absent cells: light grey, not darkest
    lo, hi = (float(data.min()), float(data.max())) if data.count() else (0.0, 1.0)
    norm = LogNorm(lo, max(hi, lo * 1.01)) if log and lo > 0 else Normalize(0.0, max(hi, 1e-12))
    cmap = matplotlib.colormaps[SEQUENTIAL].with_extremes(bad="#E6E6E6")  # a copy: the registry stays untouched
    image = ax.imshow(data, aspect="auto", norm=norm, cmap=cmap, interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label=cbar_label, shrink=0.9)
    ax.set_xticks(range(len(table.cols)), table.cols, rotation=30, ha="right")
    ax.set_yticks(range(len(table.rows)), table.row_labels())
    ax.set_xlabel("component")
    ax.set_ylabel("layer (decoder block)")
    ax.set_title(title)
    ax.grid(False)
    if table.values.size <= MAX_ANNOTATED_CELLS:
        _annotate(ax, table.values, image, percent)


def _annotate(ax: Any, values: np.ndarray, image: Any, percent: bool) -> None:
    """Print each cell's value (nothing where no such parameters exist), dark on light cells, light on dark."""
    luminance = image.to_rgba(image.get_array())[..., :3] @ np.array([0.299, 0.587, 0.114])
    for (i, j), v in np.ndenumerate(values):
        if np.isnan(v):
            continue
        text = f"{100 * v:.2g}%" if percent else f"{v:.0f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=6.5,
                color="#555555" if v <= 0 else "black" if luminance[i, j] > 0.5 else "white")


def _height(n_rows: int) -> float:
    return float(np.clip(1.6 + 0.22 * n_rows, 3.2, 16.0))


@styled
def plot_layer_heatmap(stats: dict[str, Any] | None, top: pd.DataFrame | None = None, context: str = "") -> Figure | None:
    """Heatmaps over layer x component: share of the total score (log colour) and top-k counts."""
    stats = stats or {}
    mass, counts = score_mass(stats), topk_counts(stats, top)
    panels = [p for p in (mass, counts) if p is not None]
    if not panels:
        return None
    n_rows = max(len(p.rows) for p in panels)
    fig = new_figure(4.2 * len(panels) + 1.0, _height(n_rows), "Sensitivity by layer and component", context)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    if mass is not None:
        _heatmap(axes[0], mass, "share of the total score (log colour)", "share of total score", log=True, percent=True)
    if counts is not None:
        k = int(np.nansum(counts.values))
        _heatmap(axes[-1], counts, f"selected weights (top-k, {k} in all)", "weights selected", log=False, percent=False)
    if mass is None:
        fig.supxlabel("score mass per layer x component needs 'by_layer_component' in sensitivity_stats.json",
                      fontsize=7.5, color="#333333")
    return fig


def _stacked_bars(ax: Any, table: LayerTable, ylabel: str) -> None:
    x = np.arange(len(table.rows))
    bottom = np.zeros(len(table.rows))
    look = component_look(table.cols)
    for j, comp in enumerate(table.cols):
        height = np.nan_to_num(table.values[:, j]) * 100
        if not height.any():
            continue
        color, hatch = look.get(comp, ("#999999", ""))
        ax.bar(x, height, bottom=bottom, color=color, hatch=hatch, edgecolor="#333333", linewidth=0.4,
               label=comp, width=0.8)
        bottom += height
    ax.set_xticks(x, table.row_labels(), rotation=90 if len(x) > 16 else 0)
    ax.set_xlim(-0.6, len(x) - 0.4)
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)


@styled
def plot_layer_shares(stats: dict[str, Any] | None, top: pd.DataFrame | None = None, context: str = "") -> Figure | None:
    """Per layer: its share of the total score and of the top-k, stacked by component."""
    stats = stats or {}
    mass = score_mass(stats) or _layer_share(stats)
    counts = topk_counts(stats, top)
    if mass is None and counts is None:
        return None
    n_layers = max(len(t.rows) for t in (mass, counts) if t is not None)
    fig = new_figure(float(np.clip(3.0 + 0.28 * n_layers, 6.5, 16.0)), 5.6, "Per-layer shares by component", context)
    axes = fig.subplots(2, 1, sharex=False)
    if mass is not None:
        _stacked_bars(axes[0], mass, "share of total score (%)")
        merged = mass.cols == ["all components"]
        axes[0].set_title("share of the total score" + (" (per-component split not saved in this run)" if merged else ""))
    if counts is not None:
        shares = LayerTable(counts.rows, counts.cols, counts.values / max(np.nansum(counts.values), 1.0))
        _stacked_bars(axes[1], shares, "share of top-k (%)")
        per_tensor = stats.get("mode") == "per_layer"
        axes[1].set_title("share of the selected top-k" + (" (per_layer mode: k from every tensor)" if per_tensor else ""))
    axes[1].set_xlabel("layer (decoder block)")
    figure_legend(fig, axes, title="component")
    return fig
