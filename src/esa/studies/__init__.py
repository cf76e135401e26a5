"""Studies across finished runs: one table of runs, scaling fits, and family comparisons."""

from esa.studies.table import run_table

__all__ = ["run_table"]
