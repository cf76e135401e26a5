"""The phase 1-3 commands: models, baseline, run, superweights, compare, plot, report, plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from esa.cli.app import app, options
from esa.errors import EsaError


@app.command()
def models() -> None:
    """List the bundled model aliases (they work offline)."""
    from esa.models import BUNDLED_ALIASES

    for name, desc in BUNDLED_ALIASES.items():
        typer.echo(f"{name:16s} {desc}")


@app.command()
@options("model", "data", "output", defaults={"out_dir": Path("outputs/esa/baseline"), "seq_len": None,
                                                "eval_samples": None, "batch_size": 1})
def baseline(
    preset: Annotated[str, typer.Option(help="smoke (seconds), standard, or extended (long context); --seq-len and --eval-samples override it.")] = "smoke",
    eval_protocol: Annotated[str, typer.Option("--eval-protocol", help="last: the fixed last N aligned windows; full: every aligned window of the text (SparseGPT/Wanda's eval).")] = "last",
    tasks: Annotated[Optional[str], typer.Option(help="Zero-shot tasks (lm-eval names or task YAML paths), comma-separated.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Items per zero-shot task.")] = None,
    *, model_opts: Any, data_opts: Any, output_opts: Any,
) -> None:
    """Phase 1: perplexity, bits per byte and next-token accuracy on a declared protocol (several models: --model a,b,c)."""
    from esa.pipeline.baseline import run_baseline_command
    from esa.pipeline.config import BaselineOptions, parse_name_list

    names = parse_name_list(model_opts.model)
    opts = BaselineOptions(model=model_opts, data=data_opts, output=output_opts, models=names if len(names) > 1 else [],
                           preset=preset, eval_protocol=eval_protocol, tasks=parse_name_list(tasks), limit=limit)
    typer.echo(run_baseline_command(opts))


def _perturbation_help() -> str:
    """The perturbations and their options, from what each declares."""
    from esa.perturb import PERTURBATIONS

    parts = []
    for name, pert in PERTURBATIONS.items():
        flags = ", ".join(f"{p.flag}" for p in pert.params.values())
        parts.append(f"{name}" + (f" ({flags})" if flags else ""))
    return "; ".join(parts) + "."


@app.command()
@options("model", "data", "output", defaults={"out_dir": Path("outputs/esa/run")})
def run(
    metric: Annotated[str, typer.Option(help="magnitude, grad_x_weight, grad_squared, act_mag or hutchinson_diag (or a registered one).")] = "grad_x_weight",
    mode: Annotated[str, typer.Option(help="per_layer: top-k of every tensor; global: exact top-k over all weights.")] = "per_layer",
    topk: Annotated[str, typer.Option(help="Weights to select; a comma list (1,10,100) sweeps k for dose-response.")] = "100",
    stability_check: Annotated[bool, typer.Option("--stability-check", help="Jaccard and Spearman of the top-k across seeds.")] = False,
    probes: Annotated[int, typer.Option(help="Rademacher probes for hutchinson_diag.")] = 8,
    include: Annotated[Optional[list[str]], typer.Option(help="Regex on parameter names to score (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Regex on parameter names to skip (repeatable).")] = None,
    accumulate_on: Annotated[str, typer.Option("--accumulate-on", help="Where float32 score accumulators live: param (same device) or cpu.")] = "param",
    checkpointing: Annotated[bool, typer.Option("--checkpointing", help="Activation checkpointing: recompute each block in backward to save memory.")] = False,
    save_scores: Annotated[bool, typer.Option("--save-scores", help="Write full score tensors (and signed extras) as safetensors.")] = False,
    weight_analysis: Annotated[bool, typer.Option("--weight-analysis", help="Magnitude, row/column concentration and tokens of the top-k.")] = False,
    architecture_analysis: Annotated[bool, typer.Option("--architecture-analysis", help="Sensitivity by component and depth.")] = False,
    superweights: Annotated[bool, typer.Option("--superweights", help="Also scan for super weights (as `esa superweights`) into this run directory.")] = False,
    perturb: Annotated[Optional[str], typer.Option(help="Validate by perturbation: " + _perturbation_help())] = None,
    perturb_scale: Annotated[str, typer.Option("--perturb-scale", help="Scale (comma list sweeps it).")] = "1.0",
    perturb_prob: Annotated[Optional[float], typer.Option("--perturb-prob", help="bit_flip: probability per bit.")] = None,
    bit: Annotated[Optional[str], typer.Option(help="bit_flip: one bit to flip (0 = LSB, 'sign', 'exponent_msb').")] = None,
    noise_ref: Annotated[Optional[str], typer.Option("--noise-ref", help="gauss_noise scale reference: abs (|w|, default) or std (tensor std).")] = None,
    controls: Annotated[str, typer.Option(help="Control sets: random_k,bottom_k.")] = "random_k,bottom_k",
    trials: Annotated[int, typer.Option(help="Random-control (and noise) trials.")] = 10,
    match_magnitude: Annotated[bool, typer.Option("--match-magnitude", help="Draw random controls with magnitudes like the target's.")] = False,
    tasks: Annotated[Optional[str], typer.Option(help="Zero-shot tasks scored for the unmodified model and each perturbed condition (needs --perturb).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Items per zero-shot task.")] = None,
    *, model_opts: Any, data_opts: Any, output_opts: Any,
) -> None:
    """Phase 2 (and 3 with --perturb): score every weight, rank, report heavy tails and stability."""
    from esa.pipeline.config import PerturbOptions, RunConfig, parse_float_list, parse_int_list, parse_name_list
    from esa.pipeline.run import run_command

    ks = parse_int_list(topk, "--topk")
    if not ks:
        raise EsaError("--topk needs a positive integer")
    cfg = RunConfig(
        model=model_opts, data=data_opts, output=output_opts,
        metric=metric, mode=mode, topk=max(ks), stability_check=stability_check, probes=probes,
        include=include or [], exclude=exclude or [], accumulate_on=accumulate_on, checkpointing=checkpointing,
        save_scores=save_scores, weight_analysis=weight_analysis, architecture_analysis=architecture_analysis,
        superweights=superweights, perturb=PerturbOptions(
            perturb=perturb, scales=parse_float_list(perturb_scale, "--perturb-scale"), prob=perturb_prob, bit=bit,
            noise_ref=noise_ref, controls=parse_name_list(controls), trials=trials, match_magnitude=match_magnitude,
            topks=ks if len(ks) > 1 else [],
        ),
        tasks=parse_name_list(tasks), limit=limit,
    )
    typer.echo(run_command(cfg))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories (e.g. one per metric).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the comparison as JSON here.")] = None,
) -> None:
    """Overlap of the top-k between runs: Jaccard and Spearman per pair (the seeds' cross-metric overlap)."""
    from esa.cli.app import setup_logging
    from esa.pipeline.compare import compare_runs

    setup_logging(False)
    typer.echo(compare_runs([str(p) for p in run_dirs], str(out) if out else None))


@app.command()
@options("model", "data", "output", defaults={"out_dir": Path("outputs/esa/superweights"), "max_samples": 4,
                                                "eval_samples": 8, "batch_size": 1})
def superweights(
    threshold: Annotated[float, typer.Option(help="A channel is massive when its max |activation| exceeds this multiple of the layer's median |activation|.")] = 1000.0,
    max_iter: Annotated[int, typer.Option("--max-iter", help="Most candidates to remove one after another.")] = 8,
    controls: Annotated[int, typer.Option("--controls", help="Control draws per candidate (magnitude-matched and random).")] = 3,
    metrics: Annotated[str, typer.Option(help="Metrics to cross-check the candidates' rank under (comma list, empty for none).")] = "magnitude,grad_x_weight",
    seed: Annotated[Optional[int], typer.Option(help="Seed for window draws and controls (same as --seeds with one seed).")] = None,
    *, model_opts: Any, data_opts: Any, output_opts: Any,
) -> None:
    """Detect super weights (Yu et al. 2024) automatically and validate each by zeroing it against controls."""
    from esa.pipeline.config import SuperweightOptions, parse_name_list
    from esa.pipeline.superweights import run_superweights_command

    if seed is not None:
        data_opts.seeds = [seed]
    opts = SuperweightOptions(model=model_opts, data=data_opts, output=output_opts, threshold=threshold,
                              max_iter=max_iter, n_controls=controls, metrics=parse_name_list(metrics))
    typer.echo(run_superweights_command(opts))


@app.command()
def plot(run_dir: Annotated[Path, typer.Argument(help="A run directory written by esa run / superweights.")]) -> None:
    """Draw every figure that applies to an existing run directory (into RUN_DIR/plots)."""
    from esa.pipeline.plotting import plot_command

    typer.echo(plot_command(run_dir))


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run directories.")],
    latex: Annotated[bool, typer.Option("--latex", help="Also write the main tables as LaTeX (booktabs).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the report (default: the run directory, or the runs' common parent).")] = None,
) -> None:
    """Write a self-contained report.md and report.html (figures embedded) for run directories."""
    from esa.pipeline.report import report_command

    typer.echo(report_command(run_dirs, latex=latex, out=out))


@app.command()
def plan(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local directory, config.json, bundled alias, or a built-in config name.")] = "llama-3.1-8b",
    metric: Annotated[str, typer.Option(help="The metric to plan for.")] = "grad_x_weight",
    dtype: Annotated[str, typer.Option(help="Model dtype: fp32, bf16 or fp16.")] = "bf16",
    seq_len: Annotated[int, typer.Option("--seq-len", help="Tokens per window.")] = 512,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per forward pass.")] = 1,
    max_samples: Annotated[int, typer.Option("--max-samples", help="Calibration windows.")] = 200,
    gpu: Annotated[Optional[str], typer.Option(help="h100, a100, a100-40gb, l40s, a10, rtx4090, cpu: throughput and memory assumption.")] = None,
    gpu_memory: Annotated[Optional[float], typer.Option("--gpu-memory", help="GPU memory in GiB (overrides the GPU's).")] = None,
    n_gpus: Annotated[int, typer.Option("--n-gpus", help="GPUs to spread the layers over (device_map auto).")] = 1,
    checkpointing: Annotated[bool, typer.Option("--checkpointing", help="Activation checkpointing.")] = False,
    accumulate_on: Annotated[str, typer.Option("--accumulate-on", help="device or cpu.")] = "device",
    probes: Annotated[int, typer.Option(help="hutchinson_diag probes.")] = 8,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the plan as JSON here.")] = None,
) -> None:
    """Predict memory per device, FLOPs and time of a run from the model's config alone, and what fits."""
    from esa.artifacts import atomic_write_json
    from esa.scale import format_plan, plan_run

    result = plan_run(model, metric, dtype=dtype, seq_len=seq_len, batch_size=batch_size, n_samples=max_samples,
                      gpu=gpu, gpu_memory_gb=gpu_memory, n_gpus=n_gpus, checkpointing=checkpointing,
                      accumulate_on=accumulate_on, probes=probes)
    if json_out:
        if Path(json_out).is_dir():
            raise EsaError(f"--json {json_out} is a directory; give a file path")
        atomic_write_json(json_out, result)
    typer.echo(format_plan(result))


@app.command()
def results(
    roots: Annotated[list[Path], typer.Argument(help="Directories to search for finished baseline runs (e.g. outputs).")],
    out: Annotated[Path, typer.Option("--out", help="The Markdown file to (re)write.")] = Path("outputs/RESULTS.md"),
) -> None:
    """Rebuild the phase-1 results table (Markdown) from the baseline runs under ROOTS."""
    from esa.artifacts import atomic_write_text
    from esa.reports.results import phase1_markdown

    if out.is_dir():
        raise EsaError(f"--out {out} is a directory; give a file path")
    text = phase1_markdown(list(roots))
    atomic_write_text(out, text)
    typer.echo(text + f"written to {out}")
