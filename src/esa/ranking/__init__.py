"""Select parameters and rank their weights by score."""

from esa.ranking.filter import filter_params
from esa.ranking.select import check_scores
from esa.ranking.topk import MODES, top_k
from esa.ranking.weight_set import WeightSet

__all__ = ["MODES", "WeightSet", "check_scores", "filter_params", "top_k"]
