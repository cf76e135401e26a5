"""Super weights: per-layer activation maxima of the MLP output (down) projections, spikes marked.

Drawn from superweights.json (esa.analysis.superweights.SuperweightResult.to_dict()): "series" holds,
per projection (per expert for MoE), the largest |input| and |output| activation and their medians
from a pass of the unmodified model; "candidates" the detected weights and their verdicts. With
experts, each layer shows its largest expert.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from esa.plots.style import GREY, OKABE_ITO, figure_legend, log_axis, new_figure, styled
from esa.plots.values import num

SIDES = {  # side -> (label, colour, marker, line style)
    "input": ("input of down-projection (max |x|)", OKABE_ITO[4], "o", "-"),
    "output": ("output of down-projection (max |y|)", OKABE_ITO[5], "s", "--"),
}


def _per_layer(series: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Layers and the largest `key` over each layer's projections (experts), NaN where missing."""
    values: dict[int, float] = {}
    for row in series:
        layer, v = row.get("layer"), num(row.get(key))
        if layer is None:
            continue
        values.setdefault(int(layer), np.nan)
        if v is not None and not (v <= values[int(layer)]):  # NaN-aware max
            values[int(layer)] = v
    layers = np.array(sorted(values), float)
    return layers, np.array([values[int(x)] for x in layers], float)


@styled
def plot_superweights(superweights: dict[str, Any] | None, context: str = "") -> Figure | None:
    """Top: per-layer max |activation| (input and output of the down projection) with medians.
    Bottom: max/median ratio against the detection threshold; candidates starred (filled: validated
    super weight)."""
    series = (superweights or {}).get("series") or []
    if not series:
        return None
    assert superweights is not None
    threshold = num(superweights.get("protocol", {}).get("threshold"))
    fig = new_figure(9.5, 6.0, "Super-weight scan: MLP down-projection activations per layer", context)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for side, (label, color, marker, style) in SIDES.items():
        layers, peak = _per_layer(series, f"{side}_max")
        _, median = _per_layer(series, f"{side}_median")
        _, ratio = _per_layer(series, f"{side}_ratio")
        top.plot(layers, peak, color=color, marker=marker, linestyle=style, markersize=4, label=label)
        top.plot(layers, median, color=color, linestyle=":", linewidth=0.9, alpha=0.8, label=f"median |{side}|")
        bottom.plot(layers, ratio, color=color, marker=marker, linestyle=style, markersize=4, label=f"{side} max / median")
        if threshold is not None:
            spikes = ratio >= threshold
            bottom.plot(layers[spikes], ratio[spikes], linestyle="none", marker=marker, markersize=10,
                        markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.2)
    if threshold is not None:
        bottom.axhline(threshold, color=GREY, linestyle="-.", linewidth=1, label=f"threshold {threshold:g}x median")
    _mark_candidates(top, superweights.get("candidates") or [])
    for ax in (top, bottom):
        log_axis(ax, "y")
    top.set_ylabel("|activation| (model units)")
    bottom.set_ylabel("max / median |activation|")
    bottom.set_xlabel("layer (decoder block)")
    figure_legend(fig, (top, bottom), fontsize=7)
    top.set_title("largest activation per layer (dotted: median over all entries)")
    bottom.set_title("spike strength (ringed: above the detection threshold)")
    return fig


def _mark_candidates(ax: Any, candidates: list[dict[str, Any]]) -> None:
    """A star at each candidate's layer and input spike; filled when validated as a super weight."""
    if candidates:
        ax.plot([], [], marker="*", markersize=10, linestyle="none", markeredgecolor="black",
                markerfacecolor=OKABE_ITO[0], label="candidate (filled: validated super weight)")
    for c in candidates:
        layer, spike = c.get("layer"), num(c.get("input_spike"))
        if layer is None or spike is None:
            continue
        is_super = bool(c.get("is_super_weight"))
        ax.plot([layer], [abs(spike)], marker="*", markersize=14, linestyle="none", markeredgecolor="black",
                markerfacecolor=OKABE_ITO[0] if is_super else "none", zorder=5)
        ax.annotate(f"[{c.get('index', '?')}]" + (" super" if is_super else ""), (layer, abs(spike)),
                    xytext=(6, 4), textcoords="offset points", fontsize=7)
