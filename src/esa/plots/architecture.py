"""Architecture analysis figure: where the score mass and the top-k sit, by component and by depth.

Drawn from sensitivity_stats.json's `architecture_analysis` only. Two panels, each comparing a group's
share of the score mass with its share of the selection (hatched), so enrichment reads as bar height.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from esa.plots.style import OKABE_ITO, new_figure, styled
from esa.plots.values import num


@styled
def plot_architecture(stats: dict[str, Any] | None, context: str = "") -> Figure | None:
    arch = (stats or {}).get("architecture_analysis")
    if not isinstance(arch, dict) or not arch.get("by_component"):
        return None
    fig = new_figure(8.0, 3.2, "Score mass and top-k share by component and by relative depth", context)
    panels = [
        ("component", list(arch["by_component"].items())),
        ("relative depth", [(f"{b['depth_from']:.1f}-{b['depth_to']:.1f}", b) for b in arch.get("by_depth_bin", [])]),
    ]
    for i, (label, groups) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        x = np.arange(len(groups))
        mass = [num(g.get("mass_share")) or 0.0 for _, g in groups]
        topk = [num(g.get("topk_share")) or 0.0 for _, g in groups]
        ax.bar(x - 0.2, mass, 0.4, color=OKABE_ITO[4], label="share of score mass")
        ax.bar(x + 0.2, topk, 0.4, color="white", edgecolor=OKABE_ITO[5], hatch="//", label="share of top-k")
        ax.set_xticks(x, [name for name, _ in groups], rotation=30, ha="right")
        ax.set_xlabel(label)
        ax.set_ylabel("share")
        ax.set_ylim(0, max(mass + topk + [0.01]) * 1.15)
        if i == 0:
            ax.legend(loc="upper right", fontsize=7)
    return fig
