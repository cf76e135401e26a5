"""Looking at what the sensitivity metrics found: super weights, the selected weights, the architecture."""

from esa.analysis.architecture import architecture_analysis
from esa.analysis.projections import OutputProjection, find_output_projections
from esa.analysis.superweights import SuperweightResult, detect_superweights, rank_under_metrics
from esa.analysis.weights import weight_analysis

__all__ = [
    "OutputProjection",
    "SuperweightResult",
    "architecture_analysis",
    "detect_superweights",
    "find_output_projections",
    "rank_under_metrics",
    "weight_analysis",
]
