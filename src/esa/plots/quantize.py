"""Quantization: perplexity against effective bits per weight, one point per configuration.

Drawn from quant_results.json (esa quantize): "configurations" rows with effective_bits, ppl,
method, keep flags and budget; "baseline" the unquantized model. Marker = method, colour = protection
(none, super weights, top-k by a metric, mixed precision); the Pareto front (no other point has both
fewer bits and lower perplexity) is joined by a line.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from esa.plots.style import GREY, MARKERS, OKABE_ITO, figure_legend, log_axis, new_figure, styled
from esa.plots.values import num


def protection_kind(row: dict[str, Any]) -> str:
    """The legend group of a configuration."""
    if row.get("budget_bits") is not None:
        return f"mixed precision ({row.get('allocate_by')})"
    kept = [f"top {row['keep_metric']}"] if row.get("keep_metric") else []
    kept += ["super weights"] if row.get("keep_superweights") else []
    return " + ".join(kept) or "no protection"


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both bits and perplexity, by increasing bits."""
    front: list[tuple[float, float]] = []
    for bits, ppl in sorted(points):
        if not front or ppl < front[-1][1]:
            front.append((bits, ppl))
    return front


@styled
def plot_quantization(quant: dict[str, Any] | None, context: str = "") -> Figure | None:
    """PPL (log) vs effective bits per configuration, the unquantized PPL as a reference line."""
    rows = [r for r in (quant or {}).get("configurations") or []
            if num(r.get("effective_bits")) is not None and num(r.get("ppl")) is not None]
    if not rows:
        return None
    assert quant is not None
    fig = new_figure(7.5, 4.5, "Quantization: perplexity vs effective bits per weight", context)
    ax = fig.subplots()
    kinds = sorted({protection_kind(r) for r in rows})
    methods = sorted({str(r.get("method")) for r in rows})
    for row in rows:
        kind = protection_kind(row)
        ax.scatter(num(row["effective_bits"]), num(row["ppl"]), color=OKABE_ITO[kinds.index(kind) % len(OKABE_ITO)],
                   marker=MARKERS[methods.index(str(row.get("method"))) % len(MARKERS)], s=28,
                   label=f"{row.get('method')}, {kind}", zorder=3)
    front = pareto_front([(num(r["effective_bits"]), num(r["ppl"])) for r in rows])  # type: ignore[misc]
    ax.plot([b for b, _ in front], [p for _, p in front], color=GREY, linestyle="--", label="Pareto front", zorder=2)
    base = num((quant.get("baseline") or {}).get("ppl"))
    if base is not None:
        ax.axhline(base, color="#000000", linestyle=":", label="unquantized")
    log_axis(ax, "y")
    ax.set_xlabel("effective bits per weight (codes + scales + zero points + kept weights)")
    ax.set_ylabel("evaluation perplexity")
    figure_legend(fig, [ax])
    return fig
