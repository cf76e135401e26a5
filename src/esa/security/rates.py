"""Failure rates with Wilson score intervals, and the Leveugle et al. (2009) sample size.

Wilson interval for x failures in n trials, p = x/n, z the two-sided normal quantile of `confidence`:
    centre = (p + z²/2n) / (1 + z²/n),  half = z / (1 + z²/n) · sqrt(p(1-p)/n + z²/4n²).
It stays inside [0, 1] and is honest at p = 0 or 1, where the normal (Wald) interval collapses.

Statistical fault injection (Leveugle, Calvez, Maistri, Vanhauwaert, DATE 2009): to estimate a
failure probability within ±e at confidence t (normal quantile) from a population of N possible
faults, inject
    n = N / (1 + e² (N - 1) / (t² p (1 - p)))
faults drawn at random, with p = 0.5 (the worst case) unless a prior estimate is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

from esa.errors import EsaError


def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile: 1.95996... for 0.95."""
    if not 0.0 < confidence < 1.0:
        raise EsaError(f"confidence must be strictly between 0 and 1, got {confidence}")
    return float(norm.ppf(1.0 - (1.0 - confidence) / 2.0))


@dataclass(frozen=True)
class Rate:
    """`failures` of `n` trials, the point estimate `p` and its Wilson interval [lo, hi]."""

    n: int
    failures: int
    p: float
    lo: float
    hi: float


def wilson(failures: int, n: int, confidence: float = 0.95) -> Rate:
    """Failure probability with its Wilson score interval (n = 0 gives p = NaN and [0, 1])."""
    if n < 0 or not 0 <= failures <= max(n, 0):
        raise EsaError(f"need 0 <= failures <= n, got {failures} of {n}")
    if n == 0:
        return Rate(0, 0, math.nan, 0.0, 1.0)
    z = z_value(confidence)
    p = failures / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Rate(n, failures, p, max(0.0, centre - half), min(1.0, centre + half))


def leveugle_sample_size(population: int, margin: float, confidence: float = 0.95, p: float = 0.5) -> int:
    """Injections needed for a failure probability within ±`margin` at `confidence` (rounded up)."""
    if population < 1:
        raise EsaError(f"the fault population is empty ({population} possible faults); choose other sites or bits")
    if not 0.0 < margin < 1.0:
        raise EsaError(f"margin must be strictly between 0 and 1, got {margin}")
    if not 0.0 < p < 1.0:
        raise EsaError(f"the prior failure probability must be strictly between 0 and 1, got {p}")
    t = z_value(confidence)
    n = population / (1.0 + margin * margin * (population - 1) / (t * t * p * (1.0 - p)))
    return min(population, math.ceil(n - 1e-9))
