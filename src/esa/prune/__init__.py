"""Pruning guided by sensitivity scores: magnitude, Wanda (act_mag), gradient metrics, SparseGPT, ESA's own.

    from esa.prune import prune
    result = prune(lm, windows, score="act_mag", sparsity=0.5)             # Wanda, one-shot, per row
    result = prune(lm, windows, score="sparsegpt", pattern="2:4", sequential=True)
    result.ppl, result.achieved_sparsity                                   # the model is restored bit-exactly

`keep=True` leaves the pruned weights in memory for `save_pruned_model`.
"""

from esa._callable import callable_package
from esa.prune.criterion import FORMULA, MARGIN, beats_magnitude, gap_improvement
from esa.prune.patterns import GROUPS, Pattern, parse_pattern, prune_masks
from esa.prune.prune import PruneResult, prune, resolve_allocation
from esa.prune.save import pruning_provenance, save_pruned_model, superweight_positions
from esa.prune.allocate import allocate_sparsity
from esa.prune.scores import CURVATURE, ESA, ESA_ALLOCATE_BY, ESA_RANK, SPARSEGPT, score_names, weight_scores
from esa.prune.sparsegpt import SparseGPTLayer, sparsegpt_layer
from esa.prune.targets import Target, find_targets

__all__ = [
    "CURVATURE",
    "ESA",
    "ESA_ALLOCATE_BY",
    "ESA_RANK",
    "FORMULA",
    "GROUPS",
    "MARGIN",
    "SPARSEGPT",
    "Pattern",
    "PruneResult",
    "SparseGPTLayer",
    "Target",
    "allocate_sparsity",
    "beats_magnitude",
    "find_targets",
    "gap_improvement",
    "parse_pattern",
    "prune",
    "prune_masks",
    "pruning_provenance",
    "resolve_allocation",
    "save_pruned_model",
    "score_names",
    "sparsegpt_layer",
    "superweight_positions",
    "weight_scores",
]

callable_package(__name__, prune)
