"""Fault-injection figures, drawn from faults.json only (esa faults).

`plot_fault_bits`: failure probability per stored bit position (0 = least significant) with its Wilson
interval, one series per campaign (random vs critical sites, labelled with the stored dtype), the
sign/exponent/mantissa fields shaded so the jump at the exponent's top bits reads at a glance.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from esa.plots.style import GREY, LINE_STYLES, MARKERS, OKABE_ITO, figure_legend, new_figure, styled

_MANTISSA = {"bfloat16": 7, "float16": 10, "float32": 23}


@styled
def plot_fault_bits(results: dict[str, Any] | None, context: str = "") -> Figure | None:
    campaigns = {k: c for k, c in (results or {}).get("campaigns", {}).items() if c.get("groups", {}).get("bit")}
    if not campaigns:
        return None
    fig = new_figure(6.4, 3.2, "Failure probability by flipped bit (Wilson intervals)", context)
    ax = fig.add_subplot()
    width = 0
    for i, (label, c) in enumerate(campaigns.items()):
        rates = sorted(((int(b), r) for b, r in c["groups"]["bit"].items()), key=lambda x: x[0])
        bits = [b for b, _ in rates]
        p = [r["p"] for _, r in rates]
        err = [[r["p"] - r["lo"] for _, r in rates], [r["hi"] - r["p"] for _, r in rates]]
        offset = (i - (len(campaigns) - 1) / 2) * 0.18
        ax.errorbar([b + offset for b in bits], p, yerr=err, color=OKABE_ITO[i % len(OKABE_ITO)],
                    marker=MARKERS[i % len(MARKERS)], linestyle=LINE_STYLES[i % len(LINE_STYLES)], capsize=2,
                    markersize=4, label=f"{label} ({c.get('dtype', '?')}, n={c['overall']['n']})")
        width = max(width, {"bfloat16": 16, "float16": 16, "float32": 32}.get(c.get("dtype", ""), max(bits) + 1))
        mant = _MANTISSA.get(c.get("dtype", ""))
    if mant is not None:
        ax.axvspan(mant - 0.5, width - 1.5, color=GREY, alpha=0.12, lw=0)
        ax.text((mant + width - 2) / 2, 1.02, "exponent", ha="center", fontsize=7, transform=ax.get_xaxis_transform())
        ax.text(width - 1, 1.02, "sign", ha="center", fontsize=7, transform=ax.get_xaxis_transform())
    codes = all(str(c.get("dtype", "")).startswith("uint") for c in campaigns.values())
    ax.set_xlabel(f"bit position of the {'integer code' if codes else 'stored value'} (0 = least significant)")
    ax.set_ylabel(f"P(failure: {next(iter(campaigns.values()))['failure']})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(range(0, width, 1 if width <= 16 else 2))
    figure_legend(fig, [ax], fontsize=7)
    return fig
