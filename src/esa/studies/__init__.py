"""Studies across finished runs: one table of runs, scaling fits, and family comparisons."""

from esa.studies.families import FamiliesResult, Group, families
from esa.studies.scaling import ScalingFit, ScalingResult, scaling
from esa.studies.table import run_table

__all__ = ["FamiliesResult", "Group", "ScalingFit", "ScalingResult", "families", "run_table", "scaling"]
