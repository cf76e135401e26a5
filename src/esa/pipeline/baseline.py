"""`esa baseline`: phase 1, perplexity and accuracy of the unmodified model, with its protocol."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from esa.artifacts import Manifest, RunDir, atomic_write_json
from esa.evaluation import PRESETS, run_baseline
from esa.errors import EsaError
from esa.pipeline.common import bos_id_for, open_session, show_progress
from esa.pipeline.config import ModelOptions


@dataclass
class BaselineOptions:
    model: ModelOptions = field(default_factory=ModelOptions)
    dataset: str = "builtin"
    preset: str = "smoke"
    seq_len: int | None = None
    eval_samples: int | None = None
    seeds: list[int] = field(default_factory=lambda: [1337])
    batch_size: int = 1
    bos: bool = False
    out_dir: str = "outputs/esa/baseline"
    quiet: bool = False


def run_baseline_command(opts: BaselineOptions) -> str:
    """Evaluate, write baseline.json + config + manifest atomically, return the human summary."""
    if opts.preset not in PRESETS:
        raise EsaError(f"unknown --preset {opts.preset!r}; choose one of {', '.join(PRESETS)}")
    if not opts.seeds:
        raise EsaError("--seeds needs at least one integer seed")
    if opts.batch_size <= 0:
        raise EsaError(f"--batch-size must be a positive integer, got {opts.batch_size}")
    progress = show_progress(opts.quiet)
    manifest = Manifest("baseline")
    with RunDir(opts.out_dir) as stage:
        with manifest.stage("load"):
            session = open_session(opts.model, opts.dataset, progress)
        lm = session.lm
        with manifest.stage("evaluate"):
            result = run_baseline(
                lm.model, session.corpus, preset=opts.preset, seq_len=opts.seq_len, n_eval=opts.eval_samples,
                seeds=opts.seeds, batch_size=opts.batch_size, bos_id=bos_id_for(lm, opts.bos),
                max_seq_len=lm.max_seq_len, progress=progress,
            )
        result["model"] = lm.model_id
        result["dtype"] = str(lm.dtype).replace("torch.", "")
        atomic_write_json(stage / "baseline.json", result)
        atomic_write_json(stage / "config.json", asdict(opts))
        manifest.add(model=lm.summary(), data={"dataset": session.corpus.description, "baseline_windows": {
            "pool_offsets": result["pool_offsets"], "fixed": result["fixed"]["offsets"],
            **{str(s["seed"]): s["offsets"] for s in result["seeds"]}}})
        atomic_write_json(stage / "experiment_manifest.json", manifest.to_dict())
    fixed, spread = result["fixed"], result["across_seeds"]
    lines = [
        f"model     {lm.model_id} ({lm.family}, {lm.n_params:,} parameters, {result['dtype']})",
        f"protocol  {opts.preset}: {fixed['n_windows']} windows x {result['seq_len']} tokens of {opts.dataset}, "
        f"{fixed['n_tokens']:,} predicted tokens, BOS {'per window' if opts.bos else 'none'}",
        f"PPL       {fixed['ppl']:.4f}   accuracy {100 * fixed['accuracy']:.2f}%   (fixed evaluation windows)",
    ]
    if spread and spread["n_seeds"] > 1:
        p, a = spread["ppl"], spread["accuracy"]
        lines.append(
            f"seeds     {spread['n_seeds']} draws: PPL {p['mean']:.4f} ± {p['std']:.4f} (min {p['min']:.4f}, max {p['max']:.4f}); "
            f"accuracy {100 * a['mean']:.2f}% ± {100 * a['std']:.2f}"
        )
    lines.append(f"results   {Path(opts.out_dir).resolve()}/baseline.json ({manifest.timings_total():.1f} s)")
    return "\n".join(lines)
