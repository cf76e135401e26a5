"""`esa interpret`: the thin Typer command over esa.pipeline.interpret."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from esa.cli.app import app, options


@app.command()
@options("model", "data", "output", defaults={"out_dir": Path("outputs/esa/interpret"), "model": "", "max_samples": 4,
                                             "batch_size": 2})
def interpret(
    run_dir: Annotated[Optional[Path], typer.Argument(help="An esa run directory: its top-k (top_weights.csv) and super weights (superweights.json) are interpreted; read only.")] = None,
    weight: Annotated[Optional[list[str]], typer.Option("--weight", help="A weight to interpret, 'param[row,col]'; repeatable (with --model, or added to RUN_DIR's).")] = None,
    top: Annotated[Optional[int], typer.Option("--top", help="Only the run's first N top-k weights (default: all).")] = None,
    no_superweights: Annotated[bool, typer.Option("--no-superweights", help="Leave out the run's super weights.")] = False,
    probes: Annotated[Optional[Path], typer.Option("--probes", help="JSONL of {\"prompt\": ..., \"answer\": ...} facts (default: the built-in 60).")] = None,
    no_knowledge: Annotated[bool, typer.Option("--no-knowledge", help="Skip knowledge localisation.")] = False,
    control_trials: Annotated[int, typer.Option("--control-trials", help="Control weights per tensor (and random-k draws).")] = 2,
    *, model_opts: Any, data_opts: Any, output_opts: Any,
) -> None:
    """What the critical weights compute: roles, attention sinks, head correlation, knowledge localisation (the model defaults to RUN_DIR's)."""
    from esa.pipeline.interpret import InterpretOptions, run_interpret_command

    opts = InterpretOptions(
        model=model_opts, data=data_opts, output=output_opts, run_dir=None if run_dir is None else str(run_dir),
        weights=list(weight or []), top=top, superweights=not no_superweights,
        probes=None if probes is None else str(probes), knowledge=not no_knowledge, control_trials=control_trials,
    )
    typer.echo(run_interpret_command(opts))
