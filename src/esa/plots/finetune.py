"""Fine-tuning figures, drawn from finetune_results.json only (esa finetune).

`plot_finetune_curves`: training loss per step for each run (left) and target-domain perplexity at the
evaluated steps, step 0 being the model before training (right). `plot_finetune_tradeoff`: learning vs
forgetting, one point per run: target-domain perplexity gain (before - after, up is better) against the
retain perplexity change (after - before, left is better); drawn only when retain data was measured.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from esa.plots.style import GREY, LINE_STYLES, MARKERS, OKABE_ITO, figure_legend, new_figure, styled


def run_label(run: dict[str, Any]) -> str:
    """'sparse grad_squared 0.10%', 'lora 0.10%', 'full+ewc', 'frozen-critical 1,000'."""
    label = run["mode"] + (f"+{run['protect']}" if run.get("protect") else "")
    if run.get("mask_metric") and run["mode"] == "sparse":
        label += f" {run['mask_metric']}"
    k, n = run.get("budget_k"), run.get("n_weights")
    if k and n:
        label += f" {k:,}" if run["mode"] == "frozen-critical" else f" {100 * k / n:.2g}%"
    return label


def _look(i: int) -> dict[str, Any]:
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINE_STYLES[i % len(LINE_STYLES)]}


@styled
def plot_finetune_curves(results: dict[str, Any] | None, context: str = "") -> Figure | None:
    runs = [r for r in (results or {}).get("runs", []) if r.get("curve")]
    if not runs:
        return None
    fig = new_figure(9.0, 3.6, "Learning curves", context)
    loss_ax, ppl_ax = fig.subplots(1, 2)
    for i, r in enumerate(runs):
        look = _look(i)
        steps = [row["step"] for row in r["curve"]]
        loss_ax.plot(steps, [row["loss"] for row in r["curve"]], label=run_label(r), color=look["color"],
                     linestyle=look["linestyle"])
        evaluated = [(0, r["train_ppl_before"])] + [(row["step"], row["eval_ppl"]) for row in r["curve"] if "eval_ppl" in row]
        ppl_ax.plot(*zip(*evaluated), **look)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss (mean NLL of the batch)")
    ppl_ax.set_xlabel("step")
    ppl_ax.set_ylabel("target-domain perplexity")
    figure_legend(fig, [loss_ax])
    return fig


@styled
def plot_finetune_tradeoff(results: dict[str, Any] | None, context: str = "") -> Figure | None:
    runs = [r for r in (results or {}).get("runs", []) if r.get("retain_ppl_loss") is not None]
    if not runs:
        return None
    fig = new_figure(6.0, 4.0, "Learning vs forgetting", context)
    ax = fig.add_subplot()
    for i, r in enumerate(runs):
        look = _look(i)
        ax.plot([r["retain_ppl_loss"]], [r["train_ppl_gain"]], marker=look["marker"], color=look["color"],
                linestyle="none", markersize=8, label=run_label(r))
    ax.axhline(0, color=GREY, linewidth=0.8)
    ax.axvline(0, color=GREY, linewidth=0.8)
    ax.set_xlabel("retain perplexity change (after - before; forgetting to the right)")
    ax.set_ylabel("target perplexity gain (before - after)")
    figure_legend(fig, [ax])
    return fig
