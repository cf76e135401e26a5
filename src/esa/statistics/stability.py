"""Do two runs (seeds, metrics) pick the same weights, and rank them alike?

A selection is a set of keys (parameter name, flat index), e.g. `WeightSet.keys()`. To compare
rankings we need each run's score at weights the OTHER run picked, so each run is described by a
`Lookup`: given flat indices per parameter, return that run's scores there. A dict of full score
tensors works too (wrapped by `tensor_lookup`); a lookup that reads a score file keeps memory low.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy import stats

Key = tuple[str, int]
Lookup = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; two empty sets count as identical (1.0)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def tensor_lookup(scores: Mapping[str, torch.Tensor]) -> Lookup:
    """A Lookup over score tensors held in memory."""
    return lambda index: {name: scores[name].reshape(-1)[idx.to(scores[name].device)] for name, idx in index.items()}


def scores_at(lookup: Lookup | Mapping[str, torch.Tensor], keys: Sequence[Key]) -> np.ndarray:
    """One run's scores at `keys`, in key order, asking the lookup once per parameter."""
    if isinstance(lookup, Mapping):
        lookup = tensor_lookup(lookup)
    positions: dict[str, list[int]] = {}
    for pos, (name, _) in enumerate(keys):
        positions.setdefault(name, []).append(pos)
    index = {name: torch.tensor([keys[p][1] for p in pos], dtype=torch.long) for name, pos in positions.items()}
    found = lookup(index)
    out = np.empty(len(keys), dtype=np.float64)
    for name, pos in positions.items():
        out[pos] = found[name].detach().double().cpu().numpy()
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho with average ranks for ties; None when undefined (< 2 points or a constant side)."""
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    return float(stats.spearmanr(x, y).statistic)


def spearman_on_union(a: set, b: set, lookup_a: Lookup | Mapping[str, torch.Tensor],
                      lookup_b: Lookup | Mapping[str, torch.Tensor]) -> float | None:
    """Rank agreement of two runs' scores over every weight either run selected."""
    keys = sorted(a | b)
    return spearman(scores_at(lookup_a, keys), scores_at(lookup_b, keys))


def stability_report(
    topk_sets: Mapping[str, set], lookups: Mapping[str, Lookup | Mapping[str, torch.Tensor]] | None = None,
) -> dict:
    """Jaccard (and, where both runs have a lookup, Spearman on the union) for every pair of runs.

    `topk_sets` maps a run label (seed, metric) to its selected keys; `lookups` maps labels to a
    Lookup or score tensors. Each lookup is called once, for the union of all selections.
    """
    labels = list(topk_sets)
    lookups = lookups or {}
    union = sorted(set().union(*topk_sets.values()))
    position = {key: i for i, key in enumerate(union)}
    at_union = {label: scores_at(lookups[label], union) for label in labels if label in lookups}
    pairs = []
    for a, b in itertools.combinations(labels, 2):
        sa, sb = topk_sets[a], topk_sets[b]
        rho = None
        if a in at_union and b in at_union:
            rows = [position[key] for key in sorted(sa | sb)]
            rho = spearman(at_union[a][rows], at_union[b][rows])
        pairs.append({"a": a, "b": b, "jaccard": jaccard(sa, sb), "spearman": rho,
                      "intersection": len(sa & sb), "union": len(sa | sb)})
    rhos = [p["spearman"] for p in pairs if p["spearman"] is not None]
    return {
        "runs": labels,
        "sizes": {label: len(topk_sets[label]) for label in labels},
        "pairs": pairs,
        "mean_jaccard": _mean([p["jaccard"] for p in pairs]),
        "mean_spearman": _mean(rhos),
        "spearman_pairs": len(rhos),
    }


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None
