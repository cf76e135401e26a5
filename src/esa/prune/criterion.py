"""How a pruned model is judged against magnitude pruning: the workflow's "beats magnitude by > 15%".

The criterion compares perplexity *gaps to the dense model*, so that a score is credited for the
damage it avoids, not for the dense model's own perplexity:

    gap(score)  = PPL(score) - PPL(dense)
    improvement = (gap(magnitude) - gap(ESA)) / gap(magnitude)
    PASS        iff improvement > 0.15   (at the same sparsity and pattern)
"""

from __future__ import annotations

import math

MARGIN = 0.15
FORMULA = "improvement = (gap_magnitude - gap_esa) / gap_magnitude, gap = PPL - PPL_dense; PASS iff improvement > 0.15"


def gap_improvement(ppl: float, ppl_magnitude: float, ppl_dense: float) -> float:
    """Share of magnitude pruning's perplexity gap that the other score avoids (see FORMULA)."""
    gap_mag = ppl_magnitude - ppl_dense
    if not gap_mag > 0:
        return math.nan
    return (gap_mag - (ppl - ppl_dense)) / gap_mag


def beats_magnitude(ppl: float, ppl_magnitude: float, ppl_dense: float, margin: float = MARGIN) -> bool:
    return gap_improvement(ppl, ppl_magnitude, ppl_dense) > margin
