"""`esa study scaling|families`: the thin Typer commands over esa.pipeline.study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from esa.cli.app import app, options

study_app = typer.Typer(help="Studies across finished runs: scaling laws and architecture-family comparisons.",
                        no_args_is_help=True)
app.add_typer(study_app, name="study")

RUNS_HELP = "Finished run directories (the --out-dir of esa run, baseline, superweights, prune, quantize)."


@study_app.command("scaling")
@options("output", defaults={"out_dir": Path("outputs/esa/study-scaling")})
def scaling(
    runs: Annotated[list[Path], typer.Argument(help=RUNS_HELP)],
    size: Annotated[str, typer.Option(help="Model size N: params, nonembedding or active (MoE).")] = "params",
    quantity: Annotated[Optional[str], typer.Option(help="Quantities to fit, comma-separated (default: all the runs hold).")] = None,
    *, output_opts: Any,
) -> None:
    """Fit y = c N^alpha per sensitivity quantity, with intervals, R2, leave-one-out error and a breakpoint test."""
    from esa.pipeline.config import parse_name_list
    from esa.pipeline.study import StudyOptions, run_scaling_command

    opts = StudyOptions(runs=[str(r) for r in runs], output=output_opts, size=size,
                        quantities=parse_name_list(quantity))
    typer.echo(run_scaling_command(opts))


@study_app.command("families")
@options("output", defaults={"out_dir": Path("outputs/esa/study-families")})
def families(
    runs: Annotated[list[Path], typer.Argument(help=RUNS_HELP)],
    group_by: Annotated[Optional[str], typer.Option("--group-by", help="Run-table columns to group by, comma-separated (default: family,kind).")] = None,
    *, output_opts: Any,
) -> None:
    """Compare sensitivity layouts across groups of runs (depth profiles, attention/MLP, MoE experts, super weights)."""
    from esa.pipeline.config import parse_name_list
    from esa.pipeline.study import StudyOptions, run_families_command

    opts = StudyOptions(runs=[str(r) for r in runs], output=output_opts, group_by=parse_name_list(group_by))
    typer.echo(run_families_command(opts))
