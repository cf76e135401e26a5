"""`esa superweights`: find super weights automatically, validate each causally, cross-check with metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from esa.analysis.superweights import DEFAULT_MAX_ITER, DEFAULT_N_CONTROLS, DEFAULT_THRESHOLD, detect_superweights, rank_under_metrics
from esa.artifacts import Manifest, RunDir, atomic_write_json, write_table
from esa.data import make_windows
from esa.metrics import get_metric
from esa.pipeline.common import bos_id_for, open_session, show_progress
from esa.pipeline.config import ModelOptions
from esa.pipeline.profile import score_model


@dataclass
class SuperweightOptions:
    model: ModelOptions = field(default_factory=ModelOptions)
    dataset: str = "builtin"
    seq_len: int = 128
    max_samples: int = 4  # calibration windows added to the built-in prompts
    eval_samples: int = 8
    threshold: float = DEFAULT_THRESHOLD
    max_iter: int = DEFAULT_MAX_ITER
    n_controls: int = DEFAULT_N_CONTROLS
    metrics: list[str] = field(default_factory=lambda: ["magnitude", "grad_x_weight"])
    seed: int = 1337
    batch_size: int = 1
    bos: bool = False
    save_plots: bool = False
    out_dir: str = "outputs/esa/superweights"
    quiet: bool = False


def run_superweights_command(opts: SuperweightOptions) -> str:
    metrics = [get_metric(m) for m in opts.metrics]  # fail early on a bad name
    progress = show_progress(opts.quiet)
    manifest = Manifest("superweights")
    with RunDir(opts.out_dir) as stage:
        with manifest.stage("load"):
            session = open_session(opts.model, opts.dataset, progress)
        lm = session.lm
        windows = make_windows(session.corpus, opts.seq_len, opts.max_samples, opts.eval_samples, opts.seed,
                               bos_id=bos_id_for(lm, opts.bos), max_seq_len=lm.max_seq_len)
        with manifest.stage("detect"):
            result = detect_superweights(lm, windows, threshold=opts.threshold, max_iter=opts.max_iter,
                                         n_controls=opts.n_controls, seed=opts.seed, batch_size=opts.batch_size,
                                         progress=progress)
        out = result.to_dict()
        if result.candidates and metrics:
            with manifest.stage("cross_check"):
                scores = {m.name: score_model(lm, m, windows, list(lm.params), seed=opts.seed,
                                              batch_size=opts.batch_size, progress=progress).scores for m in metrics}
                out["rank_under_metrics"] = rank_under_metrics(result, scores)
                del scores
        atomic_write_json(stage / "superweights.json", out)
        if result.candidates:
            table = pd.DataFrame(result.candidates)
            write_table(table.map(lambda v: str(v) if isinstance(v, (list, dict)) else v), stage / "superweights.csv")
        atomic_write_json(stage / "config.json", asdict(opts))
        if opts.save_plots:
            from esa.pipeline.plotting import plot_run_dir

            with manifest.stage("plots"):
                plot_run_dir(stage, lm_summary=lm.summary())
        manifest.add(model=lm.summary(), data={"dataset": session.corpus.description, str(opts.seed): windows.protocol()})
        atomic_write_json(stage / "experiment_manifest.json", manifest.to_dict())
    return _summary(out, opts, manifest)


def _summary(out: dict[str, Any], opts: SuperweightOptions, manifest: Manifest) -> str:
    lines = [f"model     {out['model_id']}: {out['protocol']['n_projections']} MLP output projections, "
             f"threshold {opts.threshold:g} x layer median |activation|; {out['stopped']}"]
    if out.get("baseline_ppl") is not None:
        lines.append(f"baseline  PPL {out['baseline_ppl']:.4f}")
    for c in out["candidates"]:
        ppl = c.get("ppl_zeroed")
        lines.append(
            f"  {c['param']}[{c['index']}]  w {c['value']:.4g}  spikes in {c['input_spike']:.4g} / out {c['output_spike']:.4g}"
            + (f"  PPL zeroed {ppl:.4g}" if isinstance(ppl, float) else "") + f"  -> {c.get('verdict', '')}"
        )
    if not out["candidates"]:
        lines.append("no massive activation above the threshold: no candidates (lower --threshold to look harder)")
    for note in out.get("notes", []):
        lines.append(f"note      {note}")
    lines.append(f"results   {Path(opts.out_dir).resolve()}/superweights.json ({manifest.timings_total():.1f} s)")
    return "\n".join(lines)
