"""`esa sweep`: run a grid of `esa` commands on local cores, SLURM (submitit) or Ray; plan, status, collect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from esa.cli.app import app
from esa.errors import EsaError

sweep_app = typer.Typer(help="Grids of runs (GRID.yaml: command, options, axes, zip, out-dir) on an existing engine.",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(sweep_app, name="sweep")

GridArg = Annotated[Path, typer.Argument(help="The grid YAML (see grids/).")]


def command_flags() -> dict[str, dict[str, Any]]:
    """{"run": {"--metric": "grad_x_weight", ...}, "study scaling": {...}}: every command's long flags and defaults."""
    flags: dict[str, dict[str, Any]] = {}

    def walk(cmd: Any, path: list[str]) -> None:  # typer's (vendored) click objects: duck-typed
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                if name != "sweep":
                    walk(sub, [*path, name])
        elif path:
            flags[" ".join(path)] = {o: p.default for p in cmd.params if getattr(p, "param_type_name", "") == "option"
                                     for o in p.opts if o.startswith("--")}

    walk(typer.main.get_command(app), [])
    return flags


def _grid(path: Path) -> Any:
    from esa.pipeline.sweep import open_grid

    return open_grid(path, command_flags())


@sweep_app.command("run")
def run(
    grid: GridArg,
    executor: Annotated[str, typer.Option(help="local (a process pool), submitit (SLURM; pip install esa-llm[slurm]) or ray (pip install esa-llm[ray]).")] = "local",
    workers: Annotated[Optional[int], typer.Option(help="Cells at once (local: default cores // threads).")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Also rerun cells that failed before.")] = False,
    address: Annotated[Optional[str], typer.Option(help="ray: the cluster address (default: a local Ray).")] = None,
    cluster: Annotated[Optional[str], typer.Option(help="submitit: slurm, local or debug (default: auto).")] = None,
) -> None:
    """Run every pending cell (done cells are skipped, so a rerun resumes); failed cells are recorded."""
    from esa.pipeline.sweep import run_sweep_command
    from esa.sweep import require_executor

    require_executor(executor)  # before parsing the grid's commands: a missing engine is the first thing to say
    text, n_failed = run_sweep_command(_grid(grid), executor=executor, workers=workers, retry_failed=retry_failed,
                                       address=address, cluster=cluster)
    typer.echo(text)
    if n_failed:
        raise EsaError(f"{n_failed} cells failed; see `esa sweep status {grid}`, fix, and rerun with --retry-failed")


@sweep_app.command("plan")
def plan(grid: GridArg) -> None:
    """The cells and the planner's memory/time estimate for each, before anything runs."""
    from esa.pipeline.sweep import plan_text

    flags = command_flags()
    typer.echo(plan_text(_grid(grid), flags))


@sweep_app.command("status")
def status(grid: GridArg) -> None:
    """done / failed (with its error) / pending, per cell."""
    from esa.pipeline.sweep import status_text

    typer.echo(status_text(_grid(grid)))


@sweep_app.command("collect")
def collect(grid: GridArg) -> None:
    """One table (CSV + Parquet in the sweep's out-dir) of every done cell's headline figures."""
    from esa.pipeline.sweep import collect_command

    typer.echo(collect_command(_grid(grid)))
