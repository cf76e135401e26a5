"""How a pruned model is judged: bits per byte, and the workflow's "beats magnitude by > 15%".

The criterion compares perplexity *gaps to the dense model*, so that a score is credited for the
damage it avoids, not for the dense model's own perplexity:

    gap(score)  = PPL(score) - PPL(dense)
    improvement = (gap(magnitude) - gap(ESA)) / gap(magnitude)
    PASS        iff improvement > 0.15   (at the same sparsity and pattern)

Bits per byte = Σ NLL (nats) / (ln 2 · UTF-8 bytes of the predicted tokens), tokenizer-independent.
"""

from __future__ import annotations

import math

from esa.data import WindowSet
from esa.evaluation.perplexity import EvalResult

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


def bits_per_byte(result: EvalResult, windows: WindowSet, tokenizer: object) -> float:
    """Σ NLL / (ln 2 · bytes), the bytes being those the predicted tokens of each window decode to."""
    n_bytes = 0
    for offset in result.offsets:
        ids = windows.window(offset)[1:].tolist()
        n_bytes += len(tokenizer.decode(ids).encode("utf-8"))  # type: ignore[attr-defined]
    nats = math.fsum(nll * (result.seq_len - 1) for nll in result.window_nll)
    return nats / (math.log(2) * n_bytes) if n_bytes else math.nan
