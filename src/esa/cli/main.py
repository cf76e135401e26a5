"""`esa`: a thin command line over the library API (every command is one library call)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from esa.errors import EsaError

app = typer.Typer(
    name="esa",
    help=(
        "ESA (Enhanced Sensitivity Analysis): find the few weights of a transformer language model that matter "
        "most, prove it by perturbing them against controls, and report.\n\n"
        "Start with `esa run` (profiles the bundled SmolLM2-135M with CPU-sized defaults) or `esa baseline`."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

# Options shared by several commands, declared once.
Model = Annotated[str, typer.Option("--model", "-m", help="Hub id, local directory, .gguf file, or bundled alias (see `esa models`).")]
Dataset = Annotated[str, typer.Option(help="'builtin' (offline English text shipped with Python), a .txt/.jsonl/.parquet path, or wikitext2/c4 (needs `datasets` and network).")]
Dtype = Annotated[str, typer.Option(help="Model dtype: fp32, bf16 or fp16. Scores always accumulate in float32.")]
Device = Annotated[str, typer.Option(help="cpu, cuda or auto (cuda when available).")]
DeviceMap = Annotated[Optional[str], typer.Option("--device-map", help="'auto' spreads the model over all GPUs (accelerate).")]
SeqLen = Annotated[int, typer.Option("--seq-len", help="Tokens per window.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Windows per forward pass.")]
Bos = Annotated[bool, typer.Option("--bos/--no-bos", help="Prepend the BOS token to every window (default: stream tokens only, the SparseGPT/Wanda protocol).")]
OutDir = Annotated[Path, typer.Option("--out-dir", "-o", help="Directory for results; written atomically.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log each stage.")]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="esa: %(message)s", stream=sys.stderr)


@app.command()
def models() -> None:
    """List the bundled model aliases (they work offline)."""
    from esa.models import BUNDLED_ALIASES

    for name, desc in BUNDLED_ALIASES.items():
        typer.echo(f"{name:16s} {desc}")


@app.command()
def baseline(
    model: Model = "smollm2-135m",
    dataset: Dataset = "builtin",
    preset: Annotated[str, typer.Option(help="smoke (seconds), standard, or extended (long context).")] = "smoke",
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Override the preset's window length.")] = None,
    eval_samples: Annotated[Optional[int], typer.Option("--eval-samples", help="Override the preset's number of evaluation windows.")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; several seeds report mean and spread.")] = "1337",
    dtype: Dtype = "fp32",
    device: Device = "auto",
    device_map: DeviceMap = None,
    batch_size: BatchSize = 1,
    bos: Bos = False,
    out_dir: OutDir = Path("outputs/esa/baseline"),
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Phase 1: perplexity and next-token accuracy of a model on a declared protocol."""
    from esa.pipeline.baseline import BaselineOptions, run_baseline_command
    from esa.pipeline.config import ModelOptions, parse_int_list

    _setup_logging(verbose)
    opts = BaselineOptions(
        model=ModelOptions(model=model, dtype=dtype, device=device, device_map=device_map),
        dataset=dataset, preset=preset, seq_len=seq_len, eval_samples=eval_samples,
        seeds=parse_int_list(seeds, "--seeds"), batch_size=batch_size, bos=bos,
        out_dir=str(out_dir), quiet=quiet,
    )
    summary = run_baseline_command(opts)
    typer.echo(summary)


@app.command()
def run(
    model: Model = "smollm2-135m",
    metric: Annotated[str, typer.Option(help="magnitude, grad_x_weight, grad_squared, act_mag or hutchinson_diag.")] = "grad_x_weight",
    mode: Annotated[str, typer.Option(help="per_layer: top-k of every tensor; global: exact top-k over all weights.")] = "per_layer",
    topk: Annotated[str, typer.Option(help="Weights to select; a comma list (1,10,100) sweeps k for dose-response.")] = "100",
    max_samples: Annotated[int, typer.Option("--max-samples", help="Calibration windows per seed.")] = 16,
    eval_samples: Annotated[int, typer.Option("--eval-samples", help="Evaluation windows (disjoint from calibration).")] = 16,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; each draws its own calibration windows.")] = "1337",
    stability_check: Annotated[bool, typer.Option("--stability-check", help="Jaccard and Spearman of the top-k across seeds.")] = False,
    dataset: Dataset = "builtin",
    seq_len: SeqLen = 128,
    batch_size: BatchSize = 4,
    bos: Bos = False,
    probes: Annotated[int, typer.Option(help="Rademacher probes for hutchinson_diag.")] = 8,
    include: Annotated[Optional[list[str]], typer.Option(help="Regex on parameter names to score (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Regex on parameter names to skip (repeatable).")] = None,
    dtype: Dtype = "fp32",
    device: Device = "auto",
    device_map: DeviceMap = None,
    accumulate_on: Annotated[str, typer.Option("--accumulate-on", help="Where float32 score accumulators live: param (same device) or cpu.")] = "param",
    checkpointing: Annotated[bool, typer.Option("--checkpointing", help="Activation checkpointing: recompute each block in backward to save memory.")] = False,
    save_scores: Annotated[bool, typer.Option("--save-scores", help="Write full score tensors as safetensors.")] = False,
    save_plots: Annotated[bool, typer.Option("--save-plots", help="Draw figures into plots/.")] = False,
    weight_analysis: Annotated[bool, typer.Option("--weight-analysis", help="Magnitude, row/column concentration and tokens of the top-k.")] = False,
    architecture_analysis: Annotated[bool, typer.Option("--architecture-analysis", help="Sensitivity by component and depth.")] = False,
    perturb: Annotated[Optional[str], typer.Option(help="Validate by perturbation: sign_flip, zero, gauss_noise or bit_flip.")] = None,
    perturb_scale: Annotated[str, typer.Option("--perturb-scale", help="Scale (comma list sweeps it).")] = "1.0",
    perturb_prob: Annotated[Optional[float], typer.Option("--perturb-prob", help="bit_flip: probability per bit.")] = None,
    bit: Annotated[Optional[str], typer.Option(help="bit_flip: one bit to flip (0 = LSB, 'sign', 'exponent_msb').")] = None,
    noise_ref: Annotated[str, typer.Option("--noise-ref", help="gauss_noise scale reference: abs (|w|) or std (tensor std).")] = "abs",
    controls: Annotated[str, typer.Option(help="Control sets: random_k,bottom_k.")] = "random_k,bottom_k",
    trials: Annotated[int, typer.Option(help="Random-control (and noise) trials.")] = 10,
    match_magnitude: Annotated[bool, typer.Option("--match-magnitude", help="Draw random controls with magnitudes like the target's.")] = False,
    out_dir: OutDir = Path("outputs/esa/run"),
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Phase 2 (and 3 with --perturb): score every weight, rank, report heavy tails and stability."""
    from esa.pipeline.config import (
        DataOptions, ModelOptions, PerturbOptions, RunConfig, parse_float_list, parse_int_list, parse_name_list,
    )
    from esa.pipeline.run import run_command

    _setup_logging(verbose)
    ks = parse_int_list(topk, "--topk")
    if not ks:
        raise EsaError("--topk needs a positive integer")
    cfg = RunConfig(
        model=ModelOptions(model=model, dtype=dtype, device=device, device_map=device_map),
        data=DataOptions(dataset=dataset, seq_len=seq_len, max_samples=max_samples, eval_samples=eval_samples, bos=bos, batch_size=batch_size),
        metric=metric, mode=mode, topk=max(ks), seeds=parse_int_list(seeds, "--seeds"),
        stability_check=stability_check, probes=probes, include=include or [], exclude=exclude or [],
        accumulate_on=accumulate_on, checkpointing=checkpointing, save_scores=save_scores, save_plots=save_plots,
        weight_analysis=weight_analysis, architecture_analysis=architecture_analysis,
        perturb=PerturbOptions(
            perturb=perturb, scales=parse_float_list(perturb_scale, "--perturb-scale"), prob=perturb_prob, bit=bit,
            noise_ref=noise_ref, controls=parse_name_list(controls), trials=trials, match_magnitude=match_magnitude,
            topks=ks if len(ks) > 1 else [],
        ),
        out_dir=str(out_dir), quiet=quiet, verbose=verbose,
    )
    typer.echo(run_command(cfg))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories (e.g. one per metric).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the comparison as JSON here.")] = None,
) -> None:
    """Overlap of the top-k between runs: Jaccard and Spearman per pair (the seeds' cross-metric overlap)."""
    from esa.pipeline.compare import compare_runs

    typer.echo(compare_runs([str(p) for p in run_dirs], str(out) if out else None))


@app.command()
def superweights(
    model: Model = "smollm2-135m",
    threshold: Annotated[float, typer.Option(help="A channel is massive when its max |activation| exceeds this multiple of the layer's median |activation|.")] = 1000.0,
    max_iter: Annotated[int, typer.Option("--max-iter", help="Most candidates to remove one after another.")] = 8,
    controls: Annotated[int, typer.Option("--controls", help="Control draws per candidate (magnitude-matched and random).")] = 3,
    metrics: Annotated[str, typer.Option(help="Metrics to cross-check the candidates' rank under (comma list, empty for none).")] = "magnitude,grad_x_weight",
    dataset: Dataset = "builtin",
    seq_len: SeqLen = 128,
    max_samples: Annotated[int, typer.Option("--max-samples", help="Calibration windows added to the built-in prompts.")] = 4,
    eval_samples: Annotated[int, typer.Option("--eval-samples", help="Evaluation windows for the causal check.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for window draws and controls.")] = 1337,
    dtype: Dtype = "fp32",
    device: Device = "auto",
    device_map: DeviceMap = None,
    bos: Bos = False,
    save_plots: Annotated[bool, typer.Option("--save-plots", help="Draw the activation-spike figure into plots/.")] = False,
    out_dir: OutDir = Path("outputs/esa/superweights"),
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Detect super weights (Yu et al. 2024) automatically and validate each by zeroing it against controls."""
    from esa.pipeline.config import ModelOptions, parse_name_list
    from esa.pipeline.superweights import SuperweightOptions, run_superweights_command

    _setup_logging(verbose)
    opts = SuperweightOptions(
        model=ModelOptions(model=model, dtype=dtype, device=device, device_map=device_map), dataset=dataset,
        seq_len=seq_len, max_samples=max_samples, eval_samples=eval_samples, threshold=threshold, max_iter=max_iter,
        n_controls=controls, metrics=parse_name_list(metrics), seed=seed, bos=bos, save_plots=save_plots,
        out_dir=str(out_dir), quiet=quiet,
    )
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
    model: Model = "llama-3.1-8b",
    metric: Annotated[str, typer.Option(help="The metric to plan for.")] = "grad_x_weight",
    dtype: Dtype = "bf16",
    seq_len: SeqLen = 512,
    batch_size: BatchSize = 1,
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
        atomic_write_json(json_out, result)
    typer.echo(format_plan(result))


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()  # standalone mode: usage errors already print one line and exit 2
    except EsaError as exc:
        typer.echo(f"esa: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
