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

from esa.artifacts import Manifest, RunDir, atomic_write_json, write_table
from esa.data import make_windows
from esa.errors import EsaError
from esa.metrics import get_metric
from esa.pipeline.common import bos_id_for, fmt, open_session, show_progress
from esa.pipeline.config import RunConfig
from esa.pipeline.profile import SeedProfile, profile_seed, selection_table
from esa.ranking import filter_params
from esa.statistics import stability_report

log = logging.getLogger("esa")


def run_command(cfg: RunConfig) -> str:
    """Run the whole `esa run` job and return the human summary; results land in cfg.out_dir."""
    cfg.validate()
    metric = get_metric(cfg.metric)  # fail on a bad metric before loading anything
    if cfg.perturb.perturb is not None:
        from esa.pipeline.validate import check_perturb_options

        check_perturb_options(cfg)
    progress = show_progress(cfg.quiet)
    manifest = Manifest("run")
    with RunDir(cfg.out_dir) as stage:
        with manifest.stage("load"):
            session = open_session(cfg.model, cfg.data.dataset, progress)
        lm = session.lm
        names = filter_params(lm.params, cfg.include, cfg.exclude)
        bos_id = bos_id_for(lm, cfg.data.bos)
        profiles: list[SeedProfile] = []
        tables: list[pd.DataFrame] = []
        score_files: dict[int, Path] = {}
        keep_scores = cfg.save_scores or (cfg.stability_check and len(cfg.seeds) > 1)
        for seed in cfg.seeds:
            log.info("seed %d: scoring %d tensors with %s", seed, len(names), cfg.metric)
            windows = make_windows(
                session.corpus, cfg.data.seq_len, cfg.data.max_samples, cfg.data.eval_samples, seed,
                bos_id=bos_id, max_seq_len=lm.max_seq_len,
            )
            try:
                prof = profile_seed(
                    lm, metric, windows, names, seed=seed, k=cfg.topk, mode=cfg.mode, batch_size=cfg.data.batch_size,
                    probes=cfg.probes, accumulate_on=cfg.accumulate_on, progress=progress,
                    bottom=cfg.perturb.perturb is not None and "bottom_k" in cfg.perturb.controls,
                    checkpointing=cfg.checkpointing,
                )
            except torch.OutOfMemoryError as exc:
                raise _out_of_memory(exc, cfg) from None
            for name, seconds in prof.timings.items():
                manifest.timings[name] = manifest.timings.get(name, 0.0) + seconds
            with manifest.stage("write"):
                tables.append(selection_table(lm, prof.selection, prof.result, seed))
                if keep_scores:
                    folder = stage / ("scores" if cfg.save_scores else ".scratch")
                    folder.mkdir(exist_ok=True)
                    score_files[seed] = folder / f"scores_seed{seed}.safetensors"
                    save_file({n: t.detach().float().cpu().contiguous() for n, t in prof.result.scores.items()},
                              str(score_files[seed]), metadata={"metric": cfg.metric, "seed": str(seed)})
            profiles.append(prof)
            if seed != cfg.seeds[-1]:
                prof.result = _drop_tensors(prof.result)

        stats: dict[str, Any] = {
            "metric": cfg.metric,
            "mode": cfg.mode,
            "k": cfg.topk,
            "notes": profiles[0].result.notes,
            **profiles[0].stats,
            "by_seed": {str(p.seed): p.stats for p in profiles[1:]},
        }
        if cfg.stability_check:
            with manifest.stage("stability"):
                stats["stability"] = _stability(profiles, score_files) if len(profiles) > 1 else {
                    "note": "stability needs at least two seeds (--seeds a,b,c)"}
        last = profiles[-1]
        if cfg.weight_analysis or cfg.architecture_analysis:
            with manifest.stage("analysis"):
                stats.update(_analyses(cfg, lm, last))

        perturbation: dict[str, Any] | None = None
        if cfg.perturb.perturb is not None:
            from esa.pipeline.validate import validate_selection

            with manifest.stage("perturb"):
                perturbation = validate_selection(cfg, lm, profiles, progress=progress, stage=stage)

        with manifest.stage("write"):
            table = pd.concat(tables, ignore_index=True)
            write_table(table, stage / "top_weights.csv")
            atomic_write_json(stage / "sensitivity_stats.json", stats)
            atomic_write_json(stage / "config.json", cfg.to_dict())
            shutil.rmtree(stage / ".scratch", ignore_errors=True)
        if cfg.save_plots:
            from esa.pipeline.plotting import plot_run_dir

            with manifest.stage("plots"):
                plot_run_dir(stage, lm_summary=lm.summary())
        manifest.add(
            model=lm.summary(),
            metric=cfg.metric,
            data={"dataset": session.corpus.description, **{str(p.seed): p.windows.protocol() for p in profiles}},
            seeds=cfg.seeds,
        )
        atomic_write_json(stage / "experiment_manifest.json", manifest.to_dict())
    return _summary(cfg, lm, profiles, stats, table, perturbation, manifest)


def _out_of_memory(exc: BaseException, cfg: RunConfig) -> EsaError:
    """A CUDA OOM becomes one line naming the settings the planner predicts would fit."""
    from esa.scale import oom_advice

    n_gpus = torch.cuda.device_count() if cfg.model.device_map else 1
    return oom_advice(exc, {
        "model": cfg.model.model, "metric": cfg.metric, "dtype": cfg.model.dtype, "seq_len": cfg.data.seq_len,
        "batch_size": cfg.data.batch_size, "n_samples": cfg.data.max_samples, "n_gpus": max(1, n_gpus),
        "checkpointing": cfg.checkpointing, "accumulate_on": cfg.accumulate_on, "probes": cfg.probes,
    })


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


def _summary(cfg: RunConfig, lm: Any, profiles: list[SeedProfile], stats: dict[str, Any], table: pd.DataFrame,
             perturbation: dict[str, Any] | None, manifest: Manifest) -> str:
    g = stats.get("global", {})
    lines = [
        f"model     {lm.model_id} ({lm.family}, {lm.n_params:,} parameters, {lm.n_layers} layers, {str(lm.dtype).replace('torch.', '')})",
        f"metric    {cfg.metric}, {cfg.mode} top-{cfg.topk}, seeds {','.join(map(str, cfg.seeds))}, "
        f"{cfg.data.max_samples} x {cfg.data.seq_len}-token calibration windows",
    ]
    if g:
        lines.append(
            f"scores    {g.get('count', 0):,} weights; max/median {fmt(g.get('max_over_median'))}, "
            f"Gini {fmt(g.get('gini'))}, top 0.1% hold {fmt(100 * g.get('top_share', {}).get('0.1%', float('nan')), 3)}% of the total"
        )
    first = table[table["seed"] == cfg.seeds[0]].head(5)
    lines.append("top weights (first seed):")
    for row in first.itertuples():
        tok = f"  token {row.token!r}" if row.token else ""
        lines.append(f"  {row.rank:>3}  {row.param}[{row.index}]  score {row.score:.4g}  w {row.weight:.4g}{tok}")
    if "stability" in stats and "mean_jaccard" in stats["stability"]:
        s = stats["stability"]
        lines.append(f"stability mean Jaccard {s['mean_jaccard']:.3f}, mean Spearman {fmt(s.get('mean_spearman'))} over {len(cfg.seeds)} seeds")
    if perturbation is not None:
        lines.extend(perturbation.get("summary_lines", []))
    for note in stats.get("notes", []):
        lines.append(f"note      {note}")
    lines.append(f"results   {Path(cfg.out_dir).resolve()} ({manifest.timings_total():.1f} s)")
    return "\n".join(lines)
