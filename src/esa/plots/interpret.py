"""Interpretation figures, drawn from interpret.json (esa.interpret.InterpretResult.to_dict()) only.

- plot_interpret_roles: how many selected weights got each role, the share assigned and the >= 50% verdict;
- plot_interpret_sink: for the weight with the largest sink drop (a super weight, typically), attention on
  the first token per layer intact / zeroed / control, and the largest |hidden state| entering each block;
- plot_interpret_heads: per head, sensitivity mass against the change of first-token attention when the
  selected weights are zeroed, beside the random-k change, with Spearman's rho and its interval;
- plot_interpret_knowledge: the net log-prob drop of the probes' answers per layer group and component group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from esa.plots.style import GREY, OKABE_ITO, figure_legend, log_axis, new_figure, styled
from esa.plots.values import fmt, num


@styled
def plot_interpret_roles(interpret: dict[str, Any] | None, context: str = "") -> Figure | None:
    roles = (interpret or {}).get("roles") or {}
    counts = roles.get("counts")
    if not counts:
        return None
    names = list(counts)
    fig = new_figure(8.0, 3.8, f"Roles of the {roles.get('n_weights')} selected weights: {fmt(roles.get('share_assigned'), 3)} "
                     f"assigned ({roles.get('verdict')}: {roles.get('criterion')})", context)
    ax = fig.subplots()
    colors = [GREY if n == "unassigned" else OKABE_ITO[i % len(OKABE_ITO)] for i, n in enumerate(names)]
    ax.barh(names[::-1], [counts[n] for n in names][::-1], color=colors[::-1], edgecolor="black", linewidth=0.6)
    for y, n in enumerate(names[::-1]):
        ax.annotate(str(counts[n]), (counts[n], y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_xlabel("weights (each gets the first role whose measured effect clears its threshold)")
    return fig


@styled
def plot_interpret_sink(interpret: dict[str, Any] | None, context: str = "") -> Figure | None:
    rows = [r for r in (interpret or {}).get("weights") or [] if num((r.get("effects") or {}).get("sink_drop")) is not None]
    if not rows:
        return None
    row = max(rows, key=lambda r: num(r["effects"]["sink_drop"]))
    sink, hidden = row["sink_per_layer"], row["hidden_max_per_layer"]
    layers = np.arange(len(sink["intact"]))
    fig = new_figure(9.0, 5.5, f"{row['label']} ({row['role']}): first-token attention and massive activations",
                     context)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for key, color, style in (("intact", OKABE_ITO[4], "-"), ("zeroed", OKABE_ITO[5], "--"), ("control", GREY, ":")):
        label = {"intact": "intact", "zeroed": "weight zeroed", "control": "control weight zeroed (mean)"}[key]
        top.plot(layers, sink[key], color=color, linestyle=style, marker="o", markersize=3, label=label)
    top.set_ylabel("attention on token 0\n(mean over heads, queries)")
    top.set_ylim(0, 1)
    bottom.plot(layers, hidden["intact"], color=OKABE_ITO[4], marker="o", markersize=3)
    bottom.plot(layers, hidden["zeroed"], color=OKABE_ITO[5], linestyle="--", marker="o", markersize=3)
    log_axis(bottom, "y")
    bottom.set_ylabel("max |hidden state|\nentering the block")
    bottom.set_xlabel("layer (decoder block)")
    if row.get("layer") is not None:
        for ax in (top, bottom):
            ax.axvline(row["layer"], color="black", linewidth=0.8, linestyle="-.")
    figure_legend(fig, (top, bottom), fontsize=7)
    return fig


@styled
def plot_interpret_heads(interpret: dict[str, Any] | None, context: str = "") -> Figure | None:
    att = (interpret or {}).get("attention") or {}
    if not att.get("head_mass"):
        return None
    mass = np.asarray(att["head_mass"], float).ravel()
    intact = np.asarray(att["sink"]["intact"], float).ravel()
    change = np.asarray(att["sink"]["topk_zeroed"], float).ravel() - intact
    random = np.asarray(att["sink"]["randomk_zeroed"], float).ravel() - intact
    corr = (att.get("correlation_with_head_mass") or {}).get("sink_change_topk") or {}
    interval = corr.get("ci95") or [None, None]
    fig = new_figure(8.0, 4.2, f"Heads: sensitivity mass vs change of first-token attention when the selected weights "
                     f"are zeroed (Spearman {fmt(corr.get('rho'), 3)}, 95% [{fmt(interval[0], 3)}, {fmt(interval[1], 3)}])",
                     context)
    ax = fig.subplots()
    x = np.where(mass > 0, mass, np.nan)
    ax.scatter(x, change, s=14, color=OKABE_ITO[5], label="selected weights zeroed", zorder=3)
    ax.scatter(x, random, s=10, color=GREY, marker="x", label="random-k zeroed (mean)")
    ax.axhline(0, color="black", linewidth=0.6)
    if np.isfinite(x).any():
        log_axis(ax, "x")
    ax.set_xlabel(f"head sensitivity mass ({att.get('mass_from', '')})")
    ax.set_ylabel("change of attention on token 0")
    figure_legend(fig, (ax,), fontsize=7)
    return fig


@styled
def plot_interpret_knowledge(interpret: dict[str, Any] | None, context: str = "") -> Figure | None:
    know = (interpret or {}).get("knowledge") or {}
    if not know:
        return None
    fig = new_figure(9.0, 4.0, "Knowledge probes: net drop of the answer's log-prob when a group's selected weights are "
                     "zeroed (minus random weights of the same tensors)", context)
    axes = fig.subplots(1, 2)
    for ax, by in zip(axes, ("by_layer", "by_component")):
        part = know.get(by) or {}
        groups = part.get("groups") or []
        ax.bar([g["group"] for g in groups], [g["effect"] for g in groups], color=OKABE_ITO[4], edgecolor="black",
               linewidth=0.6)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.set_title(f"{by.replace('_', ' ')}: localisation {fmt(part.get('localisation_score'), 3)}, "
                     f"{part.get('n_facts_dependent', 0)} facts dependent", fontsize=8)
        ax.set_ylabel("mean net drop (nats)")
    return fig
