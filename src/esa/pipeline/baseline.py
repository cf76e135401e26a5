"""`esa baseline`: phase 1, perplexity, bits per byte, accuracy (and zero-shot tasks) of unmodified models.

One model: the skeleton's session. Several (`--model a,b,c`): each is loaded in turn under one protocol
(`esa.evaluation.compare_baselines`, peak memory one model) and gets one row; BOS is decided per model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from esa.artifacts import schema
from esa.evaluation import baseline_row, compare_baselines, evaluate_tasks, run_baseline
from esa.pipeline.command import command_run, decide_bos
from esa.pipeline.config import BaselineOptions


def run_baseline_command(opts: BaselineOptions) -> str:
    """Evaluate, write baseline.json (+ baseline.csv, one row per model) atomically, return the summary."""
    several = len(opts.models) > 1
    with command_run("baseline", opts, output=opts.output, model=None if several else opts.model, data=opts.data) as run:
        with run.manifest.stage("evaluate"):
            rows = _several(opts, run.progress) if several else [_one(opts, run)]
        out: dict[str, Any] = {"models": [r.to_dict() for r in rows]} if several else rows[0].baseline | {
            "row": {k: v for k, v in rows[0].to_dict().items() if k not in ("baseline",)}}
        run.write_json(schema.BASELINE, out)
        run.write_table(pd.DataFrame([_flat(r) for r in rows]), "baseline.csv")
        task_provenance = [r.tasks for r in rows if r.tasks]
        if task_provenance:
            run.manifest.add(tasks=task_provenance)
        run.manifest.add(models=[{"model": r.model, "family": r.family, "n_params": r.n_params} for r in rows])
        for r in rows:
            b = r.baseline
            run.windows_used[f"baseline_windows/{r.model}"] = {
                "pool_offsets": b["pool_offsets"], "fixed": b["fixed"]["offsets"],
                **{str(s["seed"]): s["offsets"] for s in b["seeds"]}}
    return _summary(opts, rows, run.manifest.timings_total())


def _one(opts: BaselineOptions, run: Any) -> Any:
    lm, session = run.lm, run.session
    result = run_baseline(
        lm.model, session.corpus, preset=opts.preset, seq_len=opts.data.seq_len, n_eval=opts.data.eval_samples,
        seeds=opts.data.seeds, batch_size=opts.data.batch_size, bos_id=session.bos.bos_id,
        max_seq_len=lm.max_seq_len, progress=run.progress, protocol=opts.eval_protocol, tokenizer=lm.tokenizer,
    )
    result.update(model=lm.model_id, dtype=str(lm.dtype).replace("torch.", ""), bos=session.bos.to_dict())
    tasks = evaluate_tasks(lm, opts.tasks, limit=opts.limit, batch_size=opts.data.batch_size,
                           progress=run.progress) if opts.tasks else None
    return baseline_row(lm, result, tasks)


def _several(opts: BaselineOptions, progress: bool) -> list[Any]:
    from esa.models import load_model

    m = opts.model

    def load(spec: str) -> Any:
        return load_model(spec, dtype=m.dtype, device=m.device, device_map=m.device_map,
                          trust_remote_code=m.trust_remote_code, progress=progress)

    return compare_baselines(
        opts.models, load, dataset=opts.data.dataset, preset=opts.preset, seq_len=opts.data.seq_len,
        n_eval=opts.data.eval_samples, seeds=opts.data.seeds, protocol=opts.eval_protocol,
        batch_size=opts.data.batch_size, bos_id_for=lambda lm: decide_bos(lm.tokenizer, opts.data.bos, lm.model_id).bos_id,
        tasks=opts.tasks, limit=opts.limit, progress=progress,
    )


def _flat(row: Any) -> dict[str, Any]:
    """One CSV row: the headline figures, task accuracies and criteria of one model."""
    out = {k: getattr(row, k) for k in ("model", "family", "n_params", "ppl", "bits_per_byte", "word_ppl", "accuracy",
                                        "ppl_seed_mean", "ppl_seed_std", "ppl_seed_cv")}
    for task, s in sorted(row.task_scores.items()):
        out.update({f"{task}/{k}": v for k, v in s.items()})
    out.update({f"criterion/{k}": v for k, v in row.criteria.items()})
    return out


def _summary(opts: BaselineOptions, rows: list[Any], seconds: float) -> str:
    first = rows[0].baseline
    lines = [f"protocol  {opts.preset} ({opts.eval_protocol}): {first['fixed']['n_windows']} windows x {first['seq_len']} "
             f"tokens of {opts.data.dataset}; seeds {','.join(map(str, opts.data.seeds))}"]
    for r in rows:
        b = r.baseline
        bos = b.get("bos") or {}
        lines.append(f"model     {r.model} ({r.family}, {r.n_params:,} parameters)"
                     + (f", BOS {'per window' if bos.get('prepended') else 'none'} ({bos.get('reason')})" if bos else ""))
        bpb = f"   bits/byte {r.bits_per_byte:.4f}" if r.bits_per_byte is not None else ""
        lines.append(f"  PPL {r.ppl:.4f}{bpb}   accuracy {100 * r.accuracy:.2f}%   on {b['fixed']['n_tokens']:,} predicted tokens")
        spread = b.get("across_seeds")
        if spread and spread["n_seeds"] > 1:
            p = spread["ppl"]
            lines.append(f"  seeds {spread['n_seeds']} draws: PPL {p['mean']:.4f} ± {p['std']:.4f} (min {p['min']:.4f}, max {p['max']:.4f})")
        for task, s in sorted(r.task_scores.items()):
            acc = s.get("acc")
            norm = f", acc_norm {100 * s['acc_norm']:.2f}%" if s.get("acc_norm") is not None else ""
            if acc is not None:
                lines.append(f"  {task}: acc {100 * acc:.2f}% ± {100 * (s.get('acc_stderr') or 0):.2f}{norm}")
        lines.append("  criteria " + ", ".join(f"{k} {v}" for k, v in r.criteria.items()))
    lines.append(f"results   {Path(opts.output.out_dir).resolve()}/{schema.BASELINE} ({seconds:.1f} s)")
    return "\n".join(lines)
