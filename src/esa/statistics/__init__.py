"""Describe score distributions, compare selections across runs, and test perturbation effects."""

from esa.statistics.distribution import score_statistics, topk_distribution
from esa.statistics.estimates import signed_estimate_check
from esa.statistics.significance import bootstrap_ci, empirical_p_greater, mann_whitney_greater, ratio
from esa.statistics.stability import jaccard, scores_at, spearman, spearman_on_union, stability_report, tensor_lookup

__all__ = [
    "bootstrap_ci",
    "empirical_p_greater",
    "jaccard",
    "mann_whitney_greater",
    "ratio",
    "score_statistics",
    "signed_estimate_check",
    "scores_at",
    "spearman",
    "spearman_on_union",
    "stability_report",
    "tensor_lookup",
    "topk_distribution",
]
