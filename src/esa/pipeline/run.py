"""`esa run`: profile (phase 2) and optionally validate by perturbation (phase 3), into one run directory."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from esa.artifacts import Manifest, schema
from esa.metrics import get_metric
from esa.pipeline.command import command_run, fmt
from esa.pipeline.config import RunConfig
from esa.pipeline.profile import SeedProfile, profile_seed, selection_table
from esa.pipeline.validate import check_perturb_options, summary_lines, validate_profiles, write_validation
from esa.ranking import filter_params
from esa.statistics import signed_estimate_check, stability_report
from esa.validation import ValidationResult

log = logging.getLogger("esa")


def run_command(cfg: RunConfig) -> str:
    """Run the whole `esa run` job and return the human summary; results land in cfg.output.out_dir."""
    cfg.validate()
    metric = get_metric(cfg.metric)  # fail on a bad metric before loading anything
    validation: ValidationResult | None = None
    if cfg.perturb.perturb is not None:
        check_perturb_options(cfg)
    with command_run("run", cfg, output=cfg.output, model=cfg.model, data=cfg.data,
                     output_bytes=lambda lm: _output_bytes(cfg, lm)) as run:
        tasks = None
        if cfg.tasks:
            from esa.pipeline.tasks import task_scorer

            tasks = task_scorer(run.lm, cfg.tasks, cfg.limit, cfg.data.batch_size)
        run.planner.update(metric=cfg.metric, checkpointing=cfg.checkpointing, accumulate_on=cfg.accumulate_on,
                           probes=cfg.probes)
        lm = run.lm
        names = filter_params(lm.params, cfg.include, cfg.exclude)
        profiles: list[SeedProfile] = []
        tables: list[pd.DataFrame] = []
        score_files: dict[int, Path] = {}
        keep_scores = cfg.save_scores or (cfg.stability_check and len(cfg.data.seeds) > 1)
        for seed in cfg.data.seeds:
            log.info("seed %d: scoring %d tensors with %s", seed, len(names), cfg.metric)
            windows = run.windows(seed)
            prof = profile_seed(
                lm, metric, windows, names, seed=seed, k=cfg.topk, mode=cfg.mode, batch_size=cfg.data.batch_size,
                probes=cfg.probes, accumulate_on=cfg.accumulate_on, progress=run.progress,
                bottom=cfg.perturb.perturb is not None and "bottom_k" in cfg.perturb.controls,
                checkpointing=cfg.checkpointing,
            )
            for name, seconds in prof.timings.items():
                run.manifest.timings[name] = run.manifest.timings.get(name, 0.0) + seconds
            with run.manifest.stage("write"):
                tables.append(selection_table(lm, prof.selection, prof.result, seed))
                if "signed" in prof.result.extras and "stderr" in prof.result.extras:
                    prof.stats["signed_estimate"] = signed_estimate_check(prof.result, prof.selection, cfg.probes)
                if keep_scores:
                    rel = schema.score_file(seed) if cfg.save_scores else f".scratch/scores_seed{seed}.safetensors"
                    score_files[seed] = run.path(rel)
                    score_files[seed].parent.mkdir(exist_ok=True)
                    save_scores(prof.result, score_files[seed], cfg.metric, seed)
            profiles.append(prof)
            if seed != cfg.data.seeds[-1]:
                prof.result = _drop_tensors(prof.result)

        stats: dict[str, Any] = {
            "metric": cfg.metric,
            "mode": cfg.mode,
            "k": cfg.topk,
            "notes": profiles[0].result.notes + _estimate_notes(profiles[0].stats),
            **profiles[0].stats,
            "by_seed": {str(p.seed): p.stats for p in profiles[1:]},
        }
        if cfg.stability_check:
            with run.manifest.stage("stability"):
                stats["stability"] = _stability(profiles, score_files) if len(profiles) > 1 else {
                    "note": "stability needs at least two seeds (--seeds a,b,c)"}
        last = profiles[-1]
        if cfg.weight_analysis or cfg.architecture_analysis:
            with run.manifest.stage("analysis"):
                stats.update(_analyses(cfg, lm, last))

        if cfg.superweights:
            with run.manifest.stage("superweights"):
                run.write_json(schema.SUPERWEIGHTS, _superweights(lm, last, cfg, run.progress))

        if cfg.perturb.perturb is not None:
            with run.manifest.stage("perturb"):
                validation = validate_profiles(cfg, run, profiles, tasks)
                write_validation(run, validation)

        with run.manifest.stage("write"):
            table = pd.concat(tables, ignore_index=True)
            run.write_table(table, schema.TOP_WEIGHTS)
            run.write_json(schema.SENSITIVITY_STATS, stats)
            shutil.rmtree(run.path(".scratch"), ignore_errors=True)
        run.manifest.add(metric=cfg.metric, seeds=cfg.data.seeds)
        if tasks is not None:
            run.manifest.add(tasks=tasks.provenance())
    return _summary(cfg, lm, stats, table, validation, run.manifest)


def _output_bytes(cfg: RunConfig, lm: Any) -> tuple[int, int]:
    """Expected size of the results: score files (4 bytes a weight, per seed) dominate when saved."""
    one = 4 * lm.n_params * (3 if "hutchinson" in cfg.metric else 1) if cfg.save_scores or cfg.stability_check else 0
    return one * len(cfg.data.seeds) + (1 << 20), max(one, 1 << 20)


def save_scores(result: Any, path: Path, metric: str, seed: int) -> None:
    """Full score tensors, plus a metric's extras under "EXTRA/param" (hutchinson_diag's signed mean and
    stderr), as safetensors; metadata and tensors in a fixed order so the same seed gives the same bytes."""
    tensors = {n: t.detach().float().cpu().contiguous() for n, t in result.scores.items()}
    for extra, values in sorted(result.extras.items()):
        tensors.update({f"{extra}/{n}": t.detach().float().cpu().contiguous() for n, t in values.items()})
    save_file(dict(sorted(tensors.items())), str(path), metadata={"metric": metric, "seed": str(seed)})


def _superweights(lm: Any, prof: SeedProfile, cfg: RunConfig, progress: bool) -> dict[str, Any]:
    """The super-weight scan on this run's windows, with each candidate's rank under this run's metric."""
    from esa.analysis.superweights import detect_superweights, rank_under_metrics

    result = detect_superweights(lm, prof.windows, seed=prof.seed, batch_size=cfg.data.batch_size, progress=progress)
    out = result.to_dict()
    out.pop("timings", None)  # timings belong in the manifest only
    if result.candidates and prof.result.scores:
        out["rank_under_metrics"] = rank_under_metrics(result, {cfg.metric: prof.result.scores})
    return out


def _estimate_notes(stats: dict[str, Any]) -> list[str]:
    check = stats.get("signed_estimate")
    if not check or check["share_significant"] >= 0.5:
        return []
    return [f"only {100 * check['share_significant']:.0f}% of the selected weights have |mean| > 2 standard errors "
            f"over {check['probes']} probes: the ranking is mostly noise; raise --probes"]


def _drop_tensors(result: Any) -> Any:
    """Free a finished seed's score tensors (they are on disk when needed later)."""
    result.scores = {}
    result.extras = {}
    return result


def _stability(profiles: list[SeedProfile], score_files: dict[int, Path]) -> dict[str, Any]:
    sets = {str(p.seed): p.selection.keys() for p in profiles}

    def lookup_for(path: Path):
        def lookup(index: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            out = {}
            with safe_open(str(path), framework="pt") as f:
                for name, idx in index.items():
                    out[name] = f.get_tensor(name).reshape(-1)[idx]
            return out
        return lookup

    return stability_report(sets, {str(seed): lookup_for(path) for seed, path in score_files.items()})


def _analyses(cfg: RunConfig, lm: Any, prof: SeedProfile) -> dict[str, Any]:
    from esa.analysis import architecture_analysis, weight_analysis

    out: dict[str, Any] = {}
    if cfg.weight_analysis:
        counts = torch.bincount(torch.cat([w.reshape(-1) for w in prof.windows.batches("calib", 64)]).reshape(-1),
                                minlength=int(lm.model.config.vocab_size))
        out["weight_analysis"] = weight_analysis(prof.selection, lm, counts)
    if cfg.architecture_analysis:
        out["architecture_analysis"] = architecture_analysis(
            prof.result.scores, prof.selection, {n: lm.params[n] for n in prof.result.scores}, lm.n_layers)
    return out


def _summary(cfg: RunConfig, lm: Any, stats: dict[str, Any], table: pd.DataFrame,
             validation: ValidationResult | None, manifest: Manifest) -> str:
    g = stats.get("global", {})
    lines = [
        f"model     {lm.model_id} ({lm.family}, {lm.n_params:,} parameters, {lm.n_layers} layers, {str(lm.dtype).replace('torch.', '')})",
        f"metric    {cfg.metric}, {cfg.mode} top-{cfg.topk}, seeds {','.join(map(str, cfg.data.seeds))}, "
        f"{cfg.data.max_samples} x {cfg.data.seq_len}-token calibration windows",
    ]
    if g:
        lines.append(
            f"scores    {g.get('count', 0):,} weights; max/median {fmt(g.get('max_over_median'))}, "
            f"Gini {fmt(g.get('gini'))}, top 0.1% hold {fmt(100 * g.get('top_share', {}).get('0.1%', float('nan')), 3)}% of the total"
        )
    first = table[table["seed"] == cfg.data.seeds[0]].head(5)
    lines.append("top weights (first seed):")
    for row in first.itertuples():
        tok = f"  token {row.token!r}" if row.token else ""
        lines.append(f"  {row.rank:>3}  {row.param}[{row.index}]  score {row.score:.4g}  w {row.weight:.4g}{tok}")
    if "stability" in stats and "mean_jaccard" in stats["stability"]:
        s = stats["stability"]
        lines.append(f"stability mean Jaccard {s['mean_jaccard']:.3f}, mean Spearman {fmt(s.get('mean_spearman'))} over {len(cfg.data.seeds)} seeds")
    if validation is not None:
        lines.extend(summary_lines(validation))
    for note in stats.get("notes", []):
        lines.append(f"note      {note}")
    lines.append(f"results   {Path(cfg.output.out_dir).resolve()} ({manifest.timings_total():.1f} s)")
    return "\n".join(lines)
