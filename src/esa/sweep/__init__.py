"""Sweeps: expand a grid of `esa` command options into run directories and run them on an existing engine.

`load_grid`/`parse_grid` -> `Grid` (cells with run directories named by a hash of their options),
`run_cells` (local process pool, submitit/SLURM, Ray), `cell_status`, and `collect_cells` (one row of
headline figures per finished cell).
"""

from esa.sweep.collect import collect_cells, headline_figures
from esa.sweep.execute import EXECUTORS, CellOutcome, SweepResult, require_executor, run_cell, run_cells
from esa.sweep.grid import Cell, Grid, cell_status, failure_message, load_grid, parse_grid

__all__ = [
    "EXECUTORS", "Cell", "CellOutcome", "Grid", "SweepResult", "cell_status", "collect_cells", "failure_message",
    "headline_figures", "load_grid", "parse_grid", "require_executor", "run_cell", "run_cells",
]
