"""`esa quantize`: RTN/GPTQ with critical-weight protection and sensitivity-guided mixed precision."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from esa.cli.app import app, options


@app.command()
@options("model", "data", "output", defaults={"out_dir": Path("outputs/esa/quantize")})
def quantize(
    bits: Annotated[str, typer.Option(help="Uniform bit widths, comma-separated (2,3,4,5,6,8); one configuration each.")] = "8,4,3",
    group_size: Annotated[int, typer.Option(help="Inputs per scale group (must divide every input size); 0 = per output channel.")] = 64,
    method: Annotated[str, typer.Option(help="rtn (round to nearest) or gptq (Frantar et al. 2022); a comma list runs both.")] = "rtn",
    symmetric: Annotated[bool, typer.Option("--symmetric", help="Symmetric grid (no zero point).")] = False,
    act_order: Annotated[bool, typer.Option("--act-order", help="GPTQ: quantize inputs by decreasing Hessian diagonal.")] = False,
    keep_topk: Annotated[int, typer.Option(help="Keep the K most critical weights (by --keep-metric) in 16 bits.")] = 0,
    keep_fraction: Annotated[Optional[float], typer.Option(help="Keep this fraction of the quantized weights instead of K (e.g. 0.001).")] = None,
    keep_metric: Annotated[Optional[str], typer.Option(help="Metric ranking the kept weights (grad_squared, act_mag, magnitude, ...).")] = None,
    keep_superweights: Annotated[bool, typer.Option("--keep-superweights", help="Keep every detected, validated super weight in 16 bits.")] = False,
    budget_bits: Annotated[Optional[str], typer.Option(help="Mixed precision: average effective bits per weight (comma list), bits per tensor chosen by --allocate-by.")] = None,
    allocate_by: Annotated[Optional[str], typer.Option(help="Metric weighting the quantization error in the allocation (e.g. grad_squared).")] = None,
    save_model: Annotated[bool, typer.Option("--save-model", help="Save the (single) configuration as <out-dir>/quantized_model: transformers directory + GGUF where the format allows.")] = False,
    tasks: Annotated[Optional[str], typer.Option(help="Zero-shot tasks (lm-eval names or task YAML paths) scored for each configuration.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Examples per zero-shot task.")] = None,
    *, model_opts: Any, data_opts: Any, output_opts: Any,
) -> None:
    """Quantize the linear layers (RTN, GPTQ), protect critical weights, allocate mixed precision; PPL vs bits."""
    from esa.pipeline.config import parse_float_list, parse_int_list, parse_name_list
    from esa.pipeline.quantize import QuantizeOptions, run_quantize_command

    opts = QuantizeOptions(
        model=model_opts, data=data_opts, output=output_opts, bits=parse_int_list(bits, "--bits"),
        group_size=group_size, methods=parse_name_list(method), symmetric=symmetric, act_order=act_order,
        keep_topk=keep_topk, keep_fraction=keep_fraction, keep_metric=keep_metric,
        keep_superweights=keep_superweights, budget_bits=parse_float_list(budget_bits, "--budget-bits") if budget_bits else [],
        allocate_by=allocate_by, save_model=save_model, tasks=parse_name_list(tasks), limit=limit,
    )
    typer.echo(run_quantize_command(opts))
