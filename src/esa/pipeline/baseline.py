"""`esa baseline`: phase 1, perplexity and accuracy of the unmodified model, with its protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esa.artifacts import schema
from esa.evaluation import run_baseline
from esa.pipeline.command import command_run
from esa.pipeline.config import BaselineOptions


def run_baseline_command(opts: BaselineOptions) -> str:
    """Evaluate, write baseline.json + config + manifest atomically, return the human summary."""
    with command_run("baseline", opts, output=opts.output, model=opts.model, data=opts.data) as run:
        lm, session = run.lm, run.session
        with run.manifest.stage("evaluate"):
            result = run_baseline(
                lm.model, session.corpus, preset=opts.preset, seq_len=opts.data.seq_len,
                n_eval=opts.data.eval_samples, seeds=opts.data.seeds, batch_size=opts.data.batch_size,
                bos_id=session.bos.bos_id, max_seq_len=lm.max_seq_len, progress=run.progress,
            )
        result["model"] = lm.model_id
        result["dtype"] = str(lm.dtype).replace("torch.", "")
        result["bos"] = session.bos.to_dict()
        run.write_json(schema.BASELINE, result)
        run.windows_used["baseline_windows"] = {
            "pool_offsets": result["pool_offsets"], "fixed": result["fixed"]["offsets"],
            **{str(s["seed"]): s["offsets"] for s in result["seeds"]}}
    return _summary(opts, lm, result, run.manifest.timings_total())


def _summary(opts: BaselineOptions, lm: Any, result: dict[str, Any], seconds: float) -> str:
    fixed, spread = result["fixed"], result["across_seeds"]
    lines = [
        f"model     {lm.model_id} ({lm.family}, {lm.n_params:,} parameters, {result['dtype']})",
        f"protocol  {opts.preset}: {fixed['n_windows']} windows x {result['seq_len']} tokens of {opts.data.dataset}, "
        f"{fixed['n_tokens']:,} predicted tokens, BOS {'per window' if result['bos']['prepended'] else 'none'} "
        f"({result['bos']['reason']})",
        f"PPL       {fixed['ppl']:.4f}   accuracy {100 * fixed['accuracy']:.2f}%   (fixed evaluation windows)",
    ]
    if spread and spread["n_seeds"] > 1:
        p, a = spread["ppl"], spread["accuracy"]
        lines.append(
            f"seeds     {spread['n_seeds']} draws: PPL {p['mean']:.4f} ± {p['std']:.4f} (min {p['min']:.4f}, max {p['max']:.4f}); "
            f"accuracy {100 * a['mean']:.2f}% ± {100 * a['std']:.2f}"
        )
    lines.append(f"results   {Path(opts.output.out_dir).resolve()}/{schema.BASELINE} ({seconds:.1f} s)")
    return "\n".join(lines)
