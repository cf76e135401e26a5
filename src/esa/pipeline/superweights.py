"""`esa superweights`: find super weights automatically, validate each causally, cross-check with metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from esa.analysis.superweights import detect_superweights, rank_under_metrics
from esa.artifacts import schema
from esa.metrics import get_metric
from esa.pipeline.command import command_run
from esa.pipeline.config import SuperweightOptions
from esa.pipeline.profile import score_model


def run_superweights_command(opts: SuperweightOptions) -> str:
    metrics = [get_metric(m) for m in opts.metrics]  # fail early on a bad name
    seed = opts.data.seeds[0]
    with command_run("superweights", opts, output=opts.output, model=opts.model, data=opts.data) as run:
        lm = run.lm
        windows = run.windows(seed)
        with run.manifest.stage("detect"):
            result = detect_superweights(lm, windows, threshold=opts.threshold, max_iter=opts.max_iter,
                                         n_controls=opts.n_controls, seed=seed, batch_size=opts.data.batch_size,
                                         progress=run.progress)
        out = result.to_dict()
        run.manifest.add(superweight_timings_s=out.pop("timings", {}))
        if result.candidates and metrics:
            with run.manifest.stage("cross_check"):
                scores = {m.name: score_model(lm, m, windows, list(lm.params), seed=seed,
                                              batch_size=opts.data.batch_size, progress=run.progress).scores for m in metrics}
                out["rank_under_metrics"] = rank_under_metrics(result, scores)
                del scores
        run.write_json(schema.SUPERWEIGHTS, out)
        if result.candidates:
            table = pd.DataFrame(result.candidates)
            run.write_table(table.map(lambda v: str(v) if isinstance(v, (list, dict)) else v), schema.SUPERWEIGHTS_TABLE)
    return _summary(out, opts, run.manifest.timings_total())


def _summary(out: dict[str, Any], opts: SuperweightOptions, seconds: float) -> str:
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
    lines.append(f"results   {Path(opts.output.out_dir).resolve()}/{schema.SUPERWEIGHTS} ({seconds:.1f} s)")
    return "\n".join(lines)
