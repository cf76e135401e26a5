"""Does perturbing the selection hurt more than perturbing controls? ΔPPL per condition and dose-response.

Drawn from perturbation_results.json: "summary" holds one entry per (scale, k) with each set's mean
ΔPPL and bootstrap 95% interval, "rows" every single evaluation (one dot per trial). A mean that is
not finite (the model produced inf/NaN perplexity) is drawn as a marker on the top edge labelled "inf".
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from esa.artifacts import schema
from esa.plots.style import SET_STYLE, log_axis, new_figure, styled
from esa.plots.values import fmt, num

YLABEL = "ΔPPL (perturbed − baseline perplexity)"


def conditions(perturbation: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The per-(scale, k) summary entries, without the trailing dose-response entry."""
    return [e for e in (perturbation or {}).get("summary", []) if "sets" in e]


def dose_response(perturbation: dict[str, Any] | None) -> dict[str, Any] | None:
    return next((e["dose_response"] for e in (perturbation or {}).get("summary", []) if "dose_response" in e), None)


def _interval(entry: dict[str, Any], set_name: str) -> tuple[float, float, float]:
    """(mean, ci low, ci high) of a set's ΔPPL; NaN when the set is absent, inf mean when non-finite."""
    d = entry["sets"].get(set_name, {}).get("delta_ppl")
    if not d:
        return np.nan, np.nan, np.nan
    mean = num(d.get("mean"))
    ci = d.get("ci95") or [None, None]
    lo, hi = num(ci[0]), num(ci[1])
    return (np.nan if mean is None else mean, np.nan if lo is None else lo, np.nan if hi is None else hi)


def definition(perturbation: dict[str, Any], scale: float) -> str:
    """What the perturbation does at `scale`, as the pipeline recorded it (e.g. "w -> 0")."""
    definitions = perturbation.get("protocol", {}).get("definitions", {})
    return str(definitions.get(str(float(scale)), definitions.get(f"{scale:g}", f"scale {scale:g}")))


def _scale_y(ax: Any, values: np.ndarray) -> None:
    """Symmetric-log y when the largest effect dwarfs the typical one (a target 100x its controls):
    linear up to the median magnitude, so the controls stay readable."""
    finite = values[np.isfinite(values)]
    mags = np.abs(finite[finite != 0])
    if not mags.size or mags.max() / np.median(mags) <= 100:
        return
    linthresh = float(np.median(mags))
    log_axis(ax, "y", "symlog", linthresh=linthresh)
    low, high = float(finite.min()), float(finite.max())  # symlog autoscaling pads by decades: set limits
    ax.set_ylim(low * 3 if low < -linthresh else -linthresh, high * 3 if high > linthresh else linthresh)


def _mark_nonfinite(ax: Any, xs: list[float], style: dict[str, Any]) -> None:
    if not xs:
        return
    top = ax.get_ylim()[1]
    ax.plot(xs, [top] * len(xs), linestyle="none", marker=style["marker"], color=style["color"], clip_on=False,
            markersize=8, markeredgecolor="black")
    for x in xs:
        ax.annotate("inf", (x, top), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7)


def _verdict_line(entry: dict[str, Any]) -> str:
    crit = {c["name"]: c for c in entry.get("criteria", [])}
    parts = []
    if "separation_5x" in crit:
        random_mean = _interval(entry, "random_k")[0]
        caveat = " (random ≤ 0)" if random_mean <= 0 else ""  # a ratio to a non-positive control means nothing
        parts.append(f"5x: {schema.criterion_label(crit['separation_5x'])}{caveat}")
    p = num(entry.get("tests", {}).get("p_target_gt_random"))
    if p is not None:
        parts.append(f"p = {p:.2g}")
    return ", ".join(parts)


@styled
def plot_perturbation(perturbation: dict[str, Any] | None, context: str = "") -> Figure | None:
    """Mean ΔPPL with 95% CI per condition and set (target vs random-k vs bottom-k), trials as dots."""
    entries = conditions(perturbation)
    if not entries:
        return None
    assert perturbation is not None
    proto, base = perturbation.get("protocol", {}), perturbation.get("baseline", {})
    sets = [s for s in SET_STYLE if any(s in e["sets"] for e in entries)]
    width = float(np.clip(2.2 + 1.5 * len(entries), 5.5, 16.0))
    title = f"Perplexity change when perturbing the selection ({proto.get('perturbation', '?')}), 95% CIs"
    fig = new_figure(width, 4.4, title, context)
    ax = fig.add_subplot()
    offsets = np.linspace(-0.25, 0.25, len(sets)) if len(sets) > 1 else np.zeros(1)
    rows = perturbation.get("rows", [])
    all_values = []
    nonfinite: dict[str, list[float]] = {s: [] for s in sets}
    for off, set_name in zip(offsets, sets):
        style = SET_STYLE[set_name]
        stats = np.array([_interval(e, set_name) for e in entries])
        x = np.arange(len(entries)) + off
        ok = np.isfinite(stats[:, 0])
        nonfinite[set_name] = list(x[np.isinf(stats[:, 0])])
        yerr = np.abs(stats[ok][:, 1:].T - stats[ok][:, 0])
        yerr = np.where(np.isfinite(yerr), yerr, 0.0)
        ax.errorbar(x[ok], stats[ok, 0], yerr=yerr, linestyle="none", marker=style["marker"], color=style["color"],
                    markersize=7, markeredgecolor="black", markeredgewidth=0.6, capsize=4, elinewidth=1.4,
                    label=style["label"] + " mean", zorder=3)
        all_values.extend(stats[ok].ravel())
        tx, ty = _trials(rows, entries, set_name, off)
        if ty.size:
            ax.plot(tx, ty, linestyle="none", marker=style["marker"], markersize=3, markerfacecolor="none",
                    color=style["color"], alpha=0.6, zorder=2)
            all_values.extend(ty[np.isfinite(ty)])
    ax.axhline(0.0, color="black", linewidth=0.8)
    _scale_y(ax, np.asarray(all_values, float))
    for set_name in sets:
        _mark_nonfinite(ax, nonfinite[set_name], SET_STYLE[set_name])
    labels = [f"{definition(perturbation, e['scale'])}\nk = {e['k']} ({proto.get('mode', '')})\n{_verdict_line(e)}"
              for e in entries]
    ax.set_xticks(range(len(entries)), labels, fontsize=7.5)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.grid(axis="x", visible=False)
    ax.set_ylabel(YLABEL)
    ax.set_xlabel("condition (perturbation, weights per selection); small symbols: single trials")
    ppl = num(base.get("ppl"))
    if ppl is not None:
        ax.text(0.99, 0.98, f"baseline PPL {ppl:.4g} on {fmt(base.get('n_tokens'))} evaluation tokens",
                transform=ax.transAxes, ha="right", va="top", fontsize=7.5)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(sets))
    return fig


def _trials(rows: list[dict[str, Any]], entries: list[dict[str, Any]], set_name: str, off: float) -> tuple[np.ndarray, np.ndarray]:
    """x, ΔPPL of every saved trial of `set_name`, spread a little around its condition's position."""
    position = {(float(e["scale"]), int(e["k"])): i for i, e in enumerate(entries)}
    found = [(position.get((float(r["scale"]), int(r["k"]))), num(r.get("delta_ppl")))
             for r in rows if r.get("set") == set_name]
    found = [(i, v) for i, v in found if i is not None and v is not None]
    if not found:
        return np.empty(0), np.empty(0)
    idx = np.array([i for i, _ in found], float)
    vals = np.array([v for _, v in found], float)
    order = np.argsort(np.argsort(idx, kind="stable"), kind="stable")  # position within its condition
    spread = ((order % 7) - 3) * 0.012  # deterministic jitter, no RNG
    return idx + off + spread, vals


@styled
def plot_dose_response(perturbation: dict[str, Any] | None, context: str = "") -> Figure | None:
    """ΔPPL against perturbation strength (scale, or k when only k varies), one line per set with 95%
    bands; one panel per value of the other variable. None with a single level."""
    entries = conditions(perturbation)
    scales = sorted({float(e["scale"]) for e in entries})
    ks = sorted({int(e["k"]) for e in entries})
    if len(scales) < 2 and len(ks) < 2:
        return None
    assert perturbation is not None
    x_is_scale = len(scales) > 1
    panels = ks if x_is_scale else scales
    n = len(panels)
    fig = new_figure(min(4.2 * n + 1.5, 16.0), 4.0,
                     f"Dose-response: ΔPPL vs {'perturbation scale' if x_is_scale else 'k'} "
                     f"({perturbation.get('protocol', {}).get('perturbation', '?')}), 95% CIs", context)
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    for ax, fixed in zip(axes, panels):
        chosen = sorted((e for e in entries if (int(e["k"]) if x_is_scale else float(e["scale"])) == fixed),
                        key=lambda e: float(e["scale"]) if x_is_scale else int(e["k"]))
        x = np.array([float(e["scale"]) if x_is_scale else int(e["k"]) for e in chosen], float)
        values = []
        for set_name, style in SET_STYLE.items():
            stats = np.array([_interval(e, set_name) for e in chosen])
            if np.isnan(stats[:, 0]).all():
                continue
            ok = np.isfinite(stats[:, 0])
            ax.plot(x[ok], stats[ok, 0], color=style["color"], marker=style["marker"], linestyle=style["linestyle"],
                    markeredgecolor="black", markeredgewidth=0.5, label=style["label"])
            band = ok & np.isfinite(stats[:, 1]) & np.isfinite(stats[:, 2])
            ax.fill_between(x[band], stats[band, 1], stats[band, 2], color=style["color"], alpha=0.15, linewidth=0)
            ax.errorbar(x[band], stats[band, 0], yerr=np.abs(stats[band][:, 1:].T - stats[band, 0]),
                        linestyle="none", color=style["color"], capsize=3, elinewidth=0.8)
            values.extend(stats[ok].ravel())
            _mark_nonfinite(ax, list(x[np.isinf(stats[:, 0])]), style)
        if x.min() > 0 and x.max() / x.min() >= 10:
            log_axis(ax, "x")
        ax.set_xticks(x, [f"{v:g}" for v in x])  # the levels measured, not the axis' round numbers
        ax.axhline(0.0, color="black", linewidth=0.8)
        _scale_y(ax, np.asarray(values, float))
        ax.set_xlabel("perturbation scale" if x_is_scale else "k (weights selected)")
        ax.set_title(f"k = {fixed}" if x_is_scale else definition(perturbation, fixed))
    axes[0].set_ylabel(YLABEL)
    summary = dose_response(perturbation)
    verdict = None
    if summary:
        mono = ", ".join(f"{s}: {'yes' if v else 'no'}" for s, v in summary.get("monotonic", {}).items())
        held = sum(bool(h.get("holds")) for h in summary.get("hierarchy", []))
        verdict = (f"monotonic increase: {mono}; target > random > bottom at {held}/"
                   f"{len(summary.get('hierarchy', []))} levels")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, title=verdict,
               title_fontsize=7.5)
    return fig
