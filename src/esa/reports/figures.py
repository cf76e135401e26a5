"""Which figures a run gets, drawing them into run_dir/plots/, and reusing them while still current.

`plots/figures.json` lists the figures drawn and a fingerprint (size, mtime) of the files they were
drawn from; the report redraws only when a run file changed since, or a figure file is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from matplotlib.figure import Figure

from esa.artifacts import atomic_write_json, schema
from esa.errors import EsaError
from esa.plots import (
    plot_dose_response, plot_layer_heatmap, plot_layer_shares, plot_perturbation, plot_rank_score,
    plot_score_histogram, plot_similarity, plot_superweights, save_figure,
)
from esa.plots.architecture import plot_architecture
from esa.reports.rundata import RunData, input_fingerprint

PLOTS_DIR = "plots"
INDEX = "figures.json"
FORMATS = ("png", "pdf")


def _application(file: str, module: str, fn: str) -> Callable[[RunData, str], Figure | None]:
    """A figure of an application's saved result, drawn by its own plots module (imported when needed)."""

    def draw(run: RunData, context: str) -> Figure | None:
        if file not in run.results:
            return None
        import importlib

        return getattr(importlib.import_module(f"esa.plots.{module}"), fn)(run.results[file], context=context)

    return draw


@dataclass(frozen=True)
class FigureSpec:
    name: str
    caption: str
    draw: Callable[[RunData, str], Figure | None]


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("score_histogram", "Distribution of scores over all scored weights (log-log, weights per decade "
               "of score), with percentiles.", lambda r, c: plot_score_histogram(r.stats, c)),
    FigureSpec("rank_score", "Score against rank (Zipf plot); a straight line on these axes is a power law.",
               lambda r, c: plot_rank_score(r.stats, r.first_seed_top(), c)),
    FigureSpec("layer_heatmap", "Share of the total score and top-k counts per layer and component.",
               lambda r, c: plot_layer_heatmap(r.stats, r.first_seed_top(), c)),
    FigureSpec("layer_shares", "Per-layer share of the total score and of the top-k, stacked by component.",
               lambda r, c: plot_layer_shares(r.stats, r.first_seed_top(), c)),
    FigureSpec("stability", "Overlap of the top-k between seeds (Jaccard) and rank agreement on their union (Spearman).",
               lambda r, c: plot_similarity((r.stats or {}).get("stability"), c, label_prefix="seed ")),
    FigureSpec("perturbation", "Perplexity change per condition: target vs random-k and bottom-k controls, "
               "mean with bootstrap 95% CI, single trials as small symbols.",
               lambda r, c: plot_perturbation(r.perturbation, c)),
    FigureSpec("dose_response", "Perplexity change against perturbation strength, with 95% CI bands.",
               lambda r, c: plot_dose_response(r.perturbation, c)),
    FigureSpec("superweights", "Largest activations of the MLP down projections per layer, and spike strength "
               "against the detection threshold.", lambda r, c: plot_superweights(r.superweights, _superweights_context(r))),
    FigureSpec("architecture", "Share of the score mass (solid) and of the top-k (hatched) per component and per "
               "relative-depth bin; a hatched bar above its solid one marks an enriched group.",
               lambda r, c: plot_architecture(r.stats, c)),
    *(FigureSpec(name, caption, _application(file, module, fn)) for name, caption, file, module, fn in (
        ("prune_ppl", "Perplexity against sparsity per score (log scale).", schema.PRUNE, "prune", "plot_prune_ppl"),
        ("prune_layers", "Achieved sparsity per layer.", schema.PRUNE, "prune", "plot_prune_layers"),
        ("quantization", "Perplexity against effective bits per weight; the Pareto front joins the configurations "
         "no other beats on both.", schema.QUANT, "quantize", "plot_quantization"),
        ("fault_bits", "Failure probability by bit position (Wilson 95% intervals), random vs critical sites.",
         schema.FAULTS, "security", "plot_fault_bits"),
        ("finetune_curves", "Learning curves per fine-tuning mode.", schema.FINETUNE, "finetune", "plot_finetune_curves"),
        ("finetune_tradeoff", "Learning (target-domain PPL gain) against forgetting (retain-domain PPL loss) per mode.",
         schema.FINETUNE, "finetune", "plot_finetune_tradeoff"),
        ("interpret_roles", "Roles assigned to the selected weights, with the rule behind each.", schema.INTERPRET,
         "interpret", "plot_interpret_roles"),
        ("interpret_sink", "Attention mass on the first token per layer: intact, weight zeroed, random control.",
         schema.INTERPRET, "interpret", "plot_interpret_sink"),
        ("interpret_heads", "Per-head sensitivity mass against attention sink mass and entropy.", schema.INTERPRET,
         "interpret", "plot_interpret_heads"),
        ("interpret_knowledge", "Effect on the answers' log-probability of zeroing each group's critical weights vs "
         "random weights.", schema.INTERPRET, "interpret", "plot_interpret_knowledge"),
        ("scaling", "Each quantity against model size (log-log) with the fitted power law, its band, and residuals.",
         schema.SCALING, "studies", "plot_scaling"),
        ("depth_profiles", "Depth-normalised layer profiles of sensitivity mass per family.", schema.FAMILIES,
         "studies", "plot_depth_profiles"),
        ("family_ratios", "Attention-vs-MLP and other ratios per group, with intervals.", schema.FAMILIES, "studies",
         "plot_family_ratios"),
    )),
)
CAPTIONS = {spec.name: spec.caption for spec in FIGURES}


def _superweights_context(run: RunData) -> str:
    """The detection's own protocol: a run's metric and top-k say nothing about this figure."""
    proto = (run.superweights or {}).get("protocol", {})
    return (f"{run.model_id} · super-weight detection, threshold {proto.get('threshold', '?')}x median, "
            f"{len(proto.get('prompts', []))} prompts + {proto.get('n_calibration_windows', 0)} calibration windows")


@dataclass(frozen=True)
class DrawnFigure:
    name: str
    caption: str
    files: tuple[Path, ...]

    @property
    def png(self) -> Path | None:
        return next((f for f in self.files if f.suffix == ".png"), None)


def draw_run_figures(run: RunData, formats: tuple[str, ...] = FORMATS) -> list[DrawnFigure]:
    """Draw every figure that applies to `run` into run/plots/ and record them in plots/figures.json."""
    out = run.path / PLOTS_DIR
    context = run.context()
    drawn = []
    try:
        for spec in FIGURES:
            fig = spec.draw(run, context)
            if fig is not None:
                drawn.append(DrawnFigure(spec.name, spec.caption, tuple(save_figure(fig, out, spec.name, formats))))
        atomic_write_json(out / INDEX, {
            "inputs": input_fingerprint(run.path),
            "figures": [{"name": d.name, "files": [f.name for f in d.files]} for d in drawn],
        })
    except OSError as exc:
        raise EsaError(f"cannot write figures to {out}: {exc.strerror or exc}; make the run directory writable") from None
    return drawn


def current_figures(run: RunData) -> list[DrawnFigure]:
    """The run's figures: reused from plots/ when drawn from the run's current files, else redrawn."""
    out = run.path / PLOTS_DIR
    try:
        index = json.loads((out / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return draw_run_figures(run)
    figures = [DrawnFigure(f["name"], CAPTIONS.get(f["name"], ""), tuple(out / n for n in f["files"]))
               for f in index.get("figures", [])]
    fresh = index.get("inputs") == input_fingerprint(run.path) and all(p.is_file() for d in figures for p in d.files)
    return figures if fresh else draw_run_figures(run)
