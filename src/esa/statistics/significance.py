"""Small, explicit statistics for perturbation validation: is the selection's damage beyond chance?"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 10_000, alpha: float = 0.05, seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) interval of the mean; the same seed gives the same interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    rows = max(1, 1_000_000 // x.size)  # resample in blocks: memory stays ~8 MB
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def empirical_p_greater(target: float, controls: Sequence[float]) -> float:
    """One-sided p-value that `target` exceeds the control distribution: (1 + #{c >= target}) / (1 + n).

    The +1 counts the target as one draw of the null (Davison & Hinkley; North et al. 2002), so p is
    never 0 and the smallest reachable p is 1/(n+1): 19 controls can at best give p = 0.05.
    """
    hits = sum(1 for c in controls if c >= target)
    return (1 + hits) / (1 + len(controls))


def mann_whitney_greater(a: Sequence[float], b: Sequence[float], min_size: int = 3) -> tuple[float, float] | None:
    """(U of `a`, one-sided p) for 'a tends to exceed b'; None when a group has fewer than `min_size`
    values, where the test cannot reach any useful p."""
    if len(a) < min_size or len(b) < min_size:
        return None
    res = stats.mannwhitneyu(a, b, alternative="greater")
    return float(res.statistic), float(res.pvalue)


def ratio(a: float, b: float) -> float | None:
    """a / b for a positive denominator. Otherwise: inf when b == 0 < a (a finite effect over a
    zero baseline), None when a/b means nothing (b < 0, 0/0, or a non-finite input)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    if b > 0:
        return a / b
    if b == 0 and a > 0:
        return math.inf
    return None
