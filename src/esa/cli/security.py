"""`esa faults`, `esa attack`, `esa fingerprint`, `esa verify`, `esa diff`: thin Typer commands over
esa.pipeline.security."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from esa.cli.app import app, options


@app.command()
@options("model", "data", "output", defaults={"out_dir": Path("outputs/esa/faults"), "max_samples": 4, "eval_samples": 2})
def faults(
    sites: Annotated[str, typer.Option(help="random and/or topk:METRIC:K (comma list: campaigns side by side), e.g. random,topk:grad_x_weight:1000.")] = "random",
    bits: Annotated[str, typer.Option(help="Bits a fault may flip: all, sign, exponent, mantissa, or a position (0 = least significant).")] = "all",
    injections: Annotated[Optional[int], typer.Option(help="Trials per campaign (default 100 unless --margin).")] = None,
    margin: Annotated[Optional[float], typer.Option(help="Error margin of the failure probability: Leveugle et al. 2009 sample size.")] = None,
    confidence: Annotated[float, typer.Option(help="Confidence of the margin and of the Wilson intervals.")] = 0.95,
    faults_per_trial: Annotated[int, typer.Option("--faults-per-trial", help="Bits flipped together in each trial.")] = 1,
    failure: Annotated[str, typer.Option(help="dppl>X (perplexity rises by more than X), acc_drop>X, or nonfinite.")] = "dppl>1",
    quantize_bits: Annotated[Optional[int], typer.Option("--quantize-bits", help="Quantize with RTN in memory first (2, 3, 4, 5, 6 or 8 bits) and flip bits of the integer codes; --bits is then all or a code bit 0..B-1.")] = None,
    quantize_group_size: Annotated[int, typer.Option("--quantize-group-size", help="Inputs per scale group of that quantization; 0 = per output channel.")] = 64,
    quantize_symmetric: Annotated[bool, typer.Option("--quantize-symmetric", help="Symmetric grid (codes stored offset by 2^(B-1), as llama.cpp Q4_0).")] = False,
    *, model_opts: Any, data_opts: Any, output_opts: Any,
) -> None:
    """Statistical fault injection: flip stored bits (or, with --quantize-bits, integer codes) at random or critical sites, evaluate, restore bit-exactly."""
    from esa.pipeline.security import FaultsOptions, run_faults_command

    opts = FaultsOptions(model=model_opts, data=data_opts, output=output_opts, sites=sites, bits=bits,
                         injections=injections, margin=margin, confidence=confidence,
                         faults_per_trial=faults_per_trial, failure=failure, quantize_bits=quantize_bits,
                         quantize_group_size=quantize_group_size, quantize_symmetric=quantize_symmetric)
    typer.echo(run_faults_command(opts))


@app.command()
@options("model", "data", "output", defaults={"out_dir": Path("outputs/esa/attack"), "max_samples": 4, "eval_samples": 4})
def attack(
    target_ppl: Annotated[float, typer.Option("--target-ppl", help="Stop when evaluation perplexity exceeds this.")] = 1000.0,
    max_flips: Annotated[int, typer.Option("--max-flips", help="Flip budget.")] = 20,
    protect_topk: Annotated[int, typer.Option("--protect-topk", help="Also attack with the K most critical weights unflippable; report the extra flips.")] = 0,
    protect_metric: Annotated[str, typer.Option("--protect-metric", help="Metric ranking the protected weights.")] = "grad_x_weight",
    overlap_k: Annotated[int, typer.Option("--overlap-k", help="Report how many flips land in each metric's top-K.")] = 100,
    in_range: Annotated[bool, typer.Option("--in-range", help="Only flips that keep the value within the model's largest |weight| (stealthy).")] = False,
    tries: Annotated[int, typer.Option(help="Best-estimated flips measured exactly per step.")] = 4,
    *, model_opts: Any, data_opts: Any, output_opts: Any,
) -> None:
    """Bit-flip attack (progressive bit search): how few flips break the model, with and without protection."""
    from esa.pipeline.security import AttackOptions, run_attack_command

    opts = AttackOptions(model=model_opts, data=data_opts, output=output_opts, target_ppl=target_ppl,
                         max_flips=max_flips, protect_topk=protect_topk, protect_metric=protect_metric,
                         overlap_k=overlap_k, in_range=in_range, tries=tries)
    typer.echo(run_attack_command(opts))


@app.command()
@options("model", "data", defaults={"max_samples": 4, "eval_samples": 1})
def fingerprint(
    out: Annotated[Path, typer.Option("--out", help="Fingerprint file to write (JSON).")],
    metric: Annotated[str, typer.Option(help="Metric ranking the stored critical weights.")] = "grad_x_weight",
    topk: Annotated[int, typer.Option(help="Critical weights stored with their exact positions and bits.")] = 100,
    *, model_opts: Any, data_opts: Any,
) -> None:
    """Integrity fingerprint: SHA-256 of every tensor's stored bytes plus the exact top-K critical weights."""
    from esa.pipeline.security import run_fingerprint_command

    typer.echo(run_fingerprint_command(model_opts, data_opts, out, metric, topk))


@app.command()
@options("model")
def verify(
    against: Annotated[Path, typer.Option("--against", help="Fingerprint file written by esa fingerprint.")],
    reference: Annotated[Optional[str], typer.Option(help="The fingerprinted model itself, to name every changed weight exactly.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON here.")] = None,
    *, model_opts: Any,
) -> None:
    """Check a model against a fingerprint. Exit code 0 intact, 1 tampered, 2 bad input."""
    from esa.pipeline.security import run_verify_command

    intact, text = run_verify_command(model_opts, against, reference, json_out)
    typer.echo(text)
    if not intact:
        raise typer.Exit(code=1)


@app.command()
@options("data", "output", defaults={"out_dir": Path("outputs/esa/diff"), "max_samples": 4, "eval_samples": 1})
def diff(
    base: Annotated[str, typer.Argument(help="The original model (hub id, directory, alias).")],
    suspect: Annotated[str, typer.Argument(help="The model to compare with it (same architecture).")],
    metric: Annotated[str, typer.Option(help="Metric of the sensitivity profiles.")] = "grad_x_weight",
    topk: Annotated[int, typer.Option(help="Critical weights per model for the overlap counts.")] = 1000,
    dtype: Annotated[str, typer.Option(help="fp32, bf16 or fp16 for both models.")] = "fp32",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    *, data_opts: Any, output_opts: Any,
) -> None:
    """What changed between two models, tensor by tensor, and how it moved their sensitivity."""
    from esa.pipeline.config import ModelOptions
    from esa.pipeline.security import DiffOptions, run_diff_command

    opts = DiffOptions(base=ModelOptions(model=base, dtype=dtype, device=device), suspect=suspect, data=data_opts,
                       output=output_opts, metric=metric, topk=topk)
    typer.echo(run_diff_command(opts))
