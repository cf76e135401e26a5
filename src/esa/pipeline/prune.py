"""`esa prune`: one row per (seed, score, pattern, sparsity), the dense reference, and the workflow's
criterion, written into a run directory through the shared command skeleton.

One-shot scores of a registered metric (or ESA's) are computed once per (seed, score) and reused for
every pattern and sparsity, as are the curvature scores a per-tensor allocation needs (`esa`, or
`--allocate-by`); SparseGPT and sequential runs recompute what they need per condition.
`--save-model NAME` keeps the single condition's pruned weights and writes them, with pruning.json, as
a Hugging Face directory inside the run directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from esa.artifacts import schema
from esa.errors import EsaError
from esa.pipeline.command import command_run
from esa.pipeline.config import DataOptions, ModelOptions, Options, OutputOptions, opt

PRUNING_JSON = "pruning.json"
MAGNITUDE = "magnitude"


@dataclass
class PruneOptions(Options):
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/prune"))
    scores: list[str] = field(default_factory=lambda: ["act_mag"])
    sparsities: list[float] = opt(None, "--sparsity", min=0.0, max=1.0, factory=lambda: [0.5])
    patterns: list[str] = field(default_factory=lambda: ["unstructured"])
    group: str = "row"
    protect_topk: int = opt(0, "--protect-topk", min=0)
    protect_metric: str | None = None
    protect_superweights: bool = False
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    sequential: bool = False
    allocate_by: str | None = None
    spread: float = opt(0.2, "--spread", min=0.0, max=1.0)
    save_model: str | None = None
    tasks: list[str] = field(default_factory=list)
    limit: int | None = opt(None, "--limit", min=1)

    def check(self) -> None:
        from esa.prune import resolve_allocation
        from esa.prune.patterns import check_group, check_sparsity, parse_pattern
        from esa.prune.scores import check_score

        if not self.scores:
            raise EsaError("--score needs at least one score, e.g. --score act_mag")
        for score in self.scores + ([self.protect_metric] if self.protect_metric else []):
            check_score(score)
        for text in self.patterns:
            pattern = parse_pattern(text)
            check_group(self.group, pattern)
            for s in ([None] if pattern.structured else self.sparsities):
                check_sparsity(s, pattern)
            for score in self.scores:
                resolve_allocation(score, self.allocate_by, self.spread, pattern, self.group)
        if self.save_model is not None:
            if Path(self.save_model).is_absolute() or ".." in Path(self.save_model).parts:
                raise EsaError("--save-model names a folder inside the run directory (e.g. pruned_model), not a path")
            if len(self.conditions()) * len(self.scores) * len(self.data.seeds) != 1:
                raise EsaError("--save-model keeps one pruned model: give one score, one sparsity or pattern, one seed")

    def allocation_metric(self, score: str) -> str | None:
        """The curvature metric `score` allocates by in any condition (`--allocate-by`, or the esa score's)."""
        from esa.prune import resolve_allocation
        from esa.prune.patterns import parse_pattern

        used = {resolve_allocation(score, self.allocate_by, self.spread, parse_pattern(p), self.group)[0]
                for p, _ in self.conditions()}
        return next((by for by in used if by is not None), None)

    def conditions(self) -> list[tuple[str, float | None]]:
        """(pattern, sparsity) pairs: every sparsity for unstructured, N/M for an N:M pattern."""
        out: list[tuple[str, float | None]] = []
        for pattern in self.patterns:
            out += [(pattern, s) for s in self.sparsities] if pattern == "unstructured" else [(pattern, None)]
        return out


def run_prune_command(opts: PruneOptions) -> str:
    """Prune under every condition, write prune_results.json/.csv (and the saved model); return the summary."""
    from esa.analysis import detect_superweights
    from esa.evaluation import evaluate
    from esa.prune import ESA, ESA_RANK, SPARSEGPT, find_targets, prune, superweight_positions, weight_scores

    with command_run("prune", opts, output=opts.output, model=opts.model, data=opts.data) as run:
        lm, bs = run.lm, opts.data.batch_size
        tasks = None
        if opts.tasks:
            from esa.pipeline.tasks import task_scorer

            tasks = task_scorer(lm, opts.tasks, opts.limit, bs)
        names = [t.name for t in find_targets(lm, opts.include, opts.exclude)]
        results, dense = [], None
        for seed in opts.data.seeds:
            windows = run.windows(seed).with_text_measures(lm.tokenizer)
            if dense is None:
                with run.manifest.stage("dense"):
                    ev = evaluate(lm.model, windows, "eval", bs)
                    dense = {"ppl": ev.ppl, "accuracy": ev.accuracy, "bits_per_byte": ev.bits_per_byte,
                             "zero_shot": tasks() if tasks else None}
            protect = []
            if opts.protect_superweights:
                with run.manifest.stage("superweights"):
                    protect = superweight_positions(detect_superweights(lm, windows, seed=seed, batch_size=bs))
            scored: dict[str, Any] = {}  # metric -> its one-shot scores on these windows, for scores and allocations

            def once(metric: str) -> Any:
                if metric not in scored:
                    with run.manifest.stage(f"score:{metric}"):
                        scored[metric], _ = weight_scores(lm, windows, metric, names, seed=seed, batch_size=bs)
                return scored[metric]

            for score in opts.scores:  # sequential runs score each block on the pruned model: nothing to share
                one_shot = not opts.sequential
                cached = once(ESA_RANK if score == ESA else score) if one_shot and score != SPARSEGPT else None
                by = opts.allocation_metric(score)
                alloc = once(by) if one_shot and by is not None else None
                for pattern, sparsity in opts.conditions():
                    with run.manifest.stage(f"prune:{score}:{pattern}:{sparsity}"):
                        result = prune(
                            lm, windows, score=score, sparsity=sparsity, pattern=pattern, group=opts.group,
                            protect_topk=opts.protect_topk, protect_metric=opts.protect_metric,
                            protect_superweights=protect, include=opts.include, exclude=opts.exclude,
                            sequential=opts.sequential, seed=seed, batch_size=bs, keep=opts.save_model is not None,
                            scores=cached, allocate_by=opts.allocate_by, spread=opts.spread,
                            allocation_scores=alloc, tasks=tasks,
                        )
                    results.append((result, windows))
        out = results_dict(lm, dense, [r for r, _ in results])
        run.write_json(schema.PRUNE, out)
        run.write_table(pd.DataFrame(out["rows"]), schema.PRUNE_TABLE)
        if opts.save_model is not None:
            from esa.prune import pruning_provenance, save_pruned_model

            result, windows = results[0]
            path = save_pruned_model(lm, result, run.path(opts.save_model))
            provenance = pruning_provenance(lm, result, windows, command="esa prune " + json.dumps(opts.to_dict()))
            (path / PRUNING_JSON).write_text(json.dumps(provenance, indent=1))
        if opts.output.save_plots:
            from esa.plots.prune import plot_prune_layers, plot_prune_ppl
            from esa.plots.style import save_figure

            saved = json.loads(run.path(schema.PRUNE).read_text())
            for name, draw in (("prune_ppl", plot_prune_ppl), ("prune_layers", plot_prune_layers)):
                fig = draw(saved, lm.model_id)
                if fig is not None:
                    save_figure(fig, run.path(schema.PLOTS_DIR), name)
    return summary(out, opts)


def results_dict(lm: Any, dense: dict[str, Any] | None, results: list[Any]) -> dict[str, Any]:
    """prune_results.json: dense reference, one row per condition, full conditions, criterion."""
    from esa.prune import FORMULA

    conditions = []
    for r in results:
        c = r.to_dict()
        c["per_layer"] = per_layer(lm, r.per_tensor)
        conditions.append(c)
    rows = [{**r.row(), **{f"zs_{k}": v for k, v in _flat_tasks(r.zero_shot).items()}} for r in results]
    return {"dense": dense, "formula": FORMULA, "mode": results[0].mode if results else None,
            "rows": rows, "conditions": conditions, "criterion": criterion(dense, results)}


def per_layer(lm: Any, per_tensor: dict[str, float]) -> dict[str, float]:
    """Achieved sparsity per decoder block, weighted by tensor size."""
    zeros: dict[int, float] = {}
    sizes: dict[int, int] = {}
    for name, frac in per_tensor.items():
        info = lm.params[name]
        if info.layer is not None:
            zeros[info.layer] = zeros.get(info.layer, 0.0) + frac * info.numel
            sizes[info.layer] = sizes.get(info.layer, 0) + info.numel
    return {str(k): zeros[k] / sizes[k] for k in sorted(zeros)}


def criterion(dense: dict[str, Any] | None, results: list[Any]) -> list[dict[str, Any]]:
    """"ESA-guided beats magnitude by > 15%" for every non-magnitude score, per (seed, pattern, sparsity)."""
    from esa.prune import MARGIN, gap_improvement

    if dense is None:
        return []
    mags = {(r.seed, r.pattern, r.sparsity): r for r in results if r.score == MAGNITUDE}
    out = []
    for r in results:
        mag = mags.get((r.seed, r.pattern, r.sparsity))
        if r.score == MAGNITUDE or mag is None or r.ppl is None:
            continue
        improvement = gap_improvement(r.ppl, mag.ppl, dense["ppl"])
        out.append({"score": r.score, "seed": r.seed, "pattern": r.pattern, "sparsity": r.sparsity, "ppl": r.ppl,
                    "ppl_magnitude": mag.ppl, "ppl_dense": dense["ppl"], "improvement": improvement,
                    "pass": bool(improvement > MARGIN)})
    return out


def _flat_tasks(zero_shot: dict[str, Any] | None) -> dict[str, Any]:
    out = {}
    for task, value in (zero_shot or {}).get("tasks", zero_shot or {}).items():
        if isinstance(value, dict) and "acc" in value:
            out[task] = value["acc"]
    return out


def summary(out: dict[str, Any], opts: PruneOptions) -> str:
    dense = out["dense"] or {}
    lines = [f"mode      {out['mode']} ({'block by block, inputs from pruned blocks' if opts.sequential else 'all scores from the dense model'})",
             f"dense     PPL {dense.get('ppl', float('nan')):.4f}"]
    for r in out["rows"]:
        lines.append(f"  {r['score']:14s} {r['pattern']:12s} s={r['sparsity']:.2f} (achieved {r['achieved_sparsity']:.4f})  "
                     f"PPL {r['ppl']:.4f}  bpb {r['bits_per_byte'] or float('nan'):.4f}  seed {r['seed']}")
    if out["criterion"]:
        lines.append(f"criterion ESA-guided beats magnitude by > 15%: {out['formula']}")
        for c in out["criterion"]:
            lines.append(f"  {'PASS' if c['pass'] else 'FAIL'} {c['score']} {c['pattern']} s={c['sparsity']:.2f}: "
                         f"improvement {c['improvement']:+.1%}")
    elif MAGNITUDE not in opts.scores:
        lines.append("criterion not computed: add magnitude to --score to compare against it")
    lines.append(f"results   {Path(opts.output.out_dir).resolve()}/{schema.PRUNE}")
    return "\n".join(lines)
