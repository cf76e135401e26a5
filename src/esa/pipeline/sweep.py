"""`esa sweep run|plan|status|collect`: the bodies over `esa.sweep` (the CLI passes the commands' flags).

`flags` maps each `esa` command to {long flag: default} as its Typer command declares them, so a grid is
checked against the real CLI and the planner sees the defaults a cell would run with.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esa.artifacts import write_table
from esa.errors import EsaError
from esa.sweep import Grid, cell_status, collect_cells, failure_message, load_grid, require_executor, run_cells

SWEEP_TABLE = "sweep_results.csv"  # + .parquet, under the sweep's out-dir
Flags = Mapping[str, Mapping[str, Any]]


def open_grid(path: Path | str, flags: Flags) -> Grid:
    return load_grid(path, {cmd: set(f) for cmd, f in flags.items()})


def run_sweep_command(grid: Grid, *, executor: str = "local", workers: int | None = None,
                      retry_failed: bool = False, address: str | None = None,
                      cluster: str | None = None) -> tuple[str, int]:
    """Run the grid's pending cells: (one line per cell run and the counts, number of failed cells)."""
    require_executor(executor)
    result = run_cells(grid.cells, executor=executor, workers=workers, threads=grid.threads,
                       retry_failed=retry_failed, address=address, cluster=cluster)
    lines = [f"{o.status:6s} {o.name} ({o.seconds:.1f} s)" + (f": {o.error}" if o.error else "") for o in result.ran]
    lines.append(f"sweep {grid.out_dir}: {len(result.ran) - result.n_failed} run, {len(result.skipped_done)} already done, "
                 f"{result.n_failed + len(result.skipped_failed)} failed ({executor})")
    return "\n".join(lines), result.n_failed + len(result.skipped_failed)


def status_text(grid: Grid) -> str:
    counts = {"done": 0, "failed": 0, "pending": 0}
    lines = []
    for cell in grid.cells:
        status = cell_status(cell)
        counts[status] += 1
        error = failure_message(cell) if status == "failed" else None
        lines.append(f"{status:8s} {cell.name}" + (f": {error}" if error else ""))
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(grid.cells)} cells in {grid.out_dir}")
    return "\n".join(lines)


def plan_cell(options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any] | str:
    """`esa plan`'s estimate for one cell (peak GiB, seconds on this host's device), or why there is none."""
    from esa.scale import plan_run

    merged = {**{k.lstrip("-"): v for k, v in defaults.items()}, **options}
    if "model" not in merged or "metric" not in merged:
        return "n/a (the command scores no metric)"
    model, metric = str(merged["model"]), str(merged["metric"])
    if "," in model or "," in metric:
        return "n/a (several models or metrics in one cell)"
    device = str(merged.get("device") or "auto")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        seeds = len(str(merged.get("seeds", "1")).split(","))
        plan = plan_run(model, metric, dtype=str(merged.get("dtype") or "fp32"),
                        seq_len=int(merged.get("seq-len") or 128), batch_size=int(merged.get("batch-size") or 1),
                        n_samples=int(merged.get("max-samples") or 16) * seeds, gpu="cpu" if device == "cpu" else None,
                        checkpointing=bool(merged.get("checkpointing")),
                        accumulate_on=str(merged.get("accumulate-on") or "param"), probes=int(merged.get("probes") or 8))
    except (EsaError, ValueError, OSError) as exc:
        return f"n/a ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return {"peak_gib": plan["peak_gib"], "seconds": (plan["time"] or {}).get("seconds")}


def plan_text(grid: Grid, flags: Flags) -> str:
    lines = [f"{len(grid.cells)} cells of `esa {grid.command}` into {grid.out_dir}"]
    for cell in grid.cells:
        est = plan_cell(cell.options, flags.get(grid.command, {}))
        figures = est if isinstance(est, str) else (
            f"peak {est['peak_gib']:.3g} GiB, " + (f"~{est['seconds']:.3g} s" if est["seconds"] is not None else "time n/a"))
        axes = " ".join(f"{k}={v}" for k, v in cell.axes.items())
        lines.append(f"{cell_status(cell):8s} {cell.name}  {axes}  [{figures}]")
    lines.append("Estimates are the planner's formulas (esa plan), for scoring only; see `esa plan` for details.")
    return "\n".join(lines)


def collect_command(grid: Grid) -> str:
    table = collect_cells(grid.cells)
    if table.empty:
        raise EsaError(f"no cell of {grid.out_dir} is done yet; run `esa sweep run` first")
    path = grid.out_dir / SWEEP_TABLE
    write_table(table, path)
    return f"{len(table)} of {len(grid.cells)} cells -> {path} (+ .parquet), {table.shape[1]} columns"
