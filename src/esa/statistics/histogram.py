"""A streaming, mergeable summary of non-negative float32 scores: exact moments plus a histogram.

Bucket = the top 16 bits of the float32 (its bfloat16 truncation): `x.view(int32) >> 16`. For
x >= 0 bucket order is value order; each bucket spans [2^e, 2^e (1 + 2^-7)) at most, so any value
read off a bucket is within a relative 2^-7 (0.78%) of the truth. Below the smallest normal float
(1.2e-38) buckets are 9.2e-41 wide, so errors there are absolute, < 9.2e-41; bucket 0 holds the
zeros. One bincount for counts and one, weighted by the float64 values, for per-bucket sums: a few
ns per value on one CPU core, O(chunk) scratch memory per tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from esa.statistics.significance import ratio

N_BUCKETS = 0x7F80  # buckets of the finite non-negative float32 values (0x7F80 << 16 is +inf)
EDGES = torch.arange(N_BUCKETS + 1, dtype=torch.int32).bitwise_left_shift(16).view(torch.float32).double().numpy()
EDGES[-1] = float(torch.finfo(torch.float32).max)  # the top bucket ends at the largest finite float
REL_ERROR = 2.0**-7
PERCENTILES = ("50", "90", "95", "99", "99.9", "99.99")
TOP_SHARES = {"0.001%": 100_000, "0.01%": 10_000, "0.1%": 1_000, "1%": 100}  # label -> 1/fraction
CHUNK = {"cpu": 1 << 20, "other": 1 << 24}  # values per pass; CPU: near-cache speed, few thread fork/joins

RESOLUTION = {
    "histogram": "bfloat16 buckets: the top 16 bits of each float32 score (128 per power of two)",
    "bucket_relative_width": REL_ERROR,
    "exact": ["count", "n_zero", "sum", "mean", "std", "min", "max", "max_over_mean"],
    "percentiles": "order statistics read as their bucket's mean value, linear interpolation between "
                   "ranks like numpy.percentile; relative error < 2^-7 (absolute < 9.2e-41 below 1.2e-38)",
    "max_over_median": "relative error < 2^-7 (from the median)",
    "top_share": "sum of the ceil(fraction * count) largest scores over the total; the boundary bucket "
                 "contributes its mean per value taken, so relative error < 2^-7 (a lower bound)",
    "gini": "from bucket counts and sums, bounded by how values can spread inside a bucket: "
            "|true - gini| <= gini_max_error",
}


@dataclass
class Summary:
    """Exact count/sum/M2 (sum of squared deviations)/min/max/zeros plus the bucket histogram."""

    count: int = 0
    total: float = 0.0
    m2: float = 0.0
    n_zero: int = 0
    min: float = math.inf
    max: float = -math.inf
    hist_count: np.ndarray = field(default_factory=lambda: np.zeros(N_BUCKETS, dtype=np.int64))
    hist_sum: np.ndarray = field(default_factory=lambda: np.zeros(N_BUCKETS, dtype=np.float64))

    def add(self, other: Summary) -> None:
        """Merge `other` in place (Chan et al.'s pairwise update for M2)."""
        self.m2 = _pooled_m2(self.count, self.total, self.m2, other.count, other.total, other.m2)
        self.count += other.count
        self.total += other.total
        self.n_zero += other.n_zero
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.hist_count += other.hist_count
        self.hist_sum += other.hist_sum


def _pooled_m2(n_a: int, total_a: float, m2_a: float, n_b: int, total_b: float, m2_b: float) -> float:
    """M2 of two pooled samples from each one's count, sum and M2 (Chan, Golub and LeVeque)."""
    if n_a == 0 or n_b == 0:
        return m2_a + m2_b
    delta = total_b / n_b - total_a / n_a
    return m2_a + m2_b + delta * delta * n_a * n_b / (n_a + n_b)


def summarize(x: torch.Tensor, lo: float, hi: float) -> Summary:
    """Summary of one flat float32 tensor of finite scores >= 0 with min `lo`, max `hi`, on its device.

    Works in chunks, so scratch memory is O(chunk) whatever the tensor size.
    """
    n = x.numel()
    chunk = min(n, CHUNK["cpu" if x.device.type == "cpu" else "other"])
    bucket_buf = torch.empty(chunk, dtype=torch.int32, device=x.device)
    value_buf = torch.empty(chunk, dtype=torch.float64, device=x.device)
    counts = torch.zeros(N_BUCKETS, dtype=torch.int64, device=x.device)
    sums = torch.zeros(N_BUCKETS, dtype=torch.float64, device=x.device)
    total = m2 = 0.0
    bits = x.view(torch.int32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        bucket, value = bucket_buf[:m], value_buf[:m]
        torch.bitwise_right_shift(bits[start:start + m], 16, out=bucket)
        bucket.bitwise_and_(0x7FFF)  # -0.0 has the sign bit set
        counts += torch.bincount(bucket, minlength=N_BUCKETS)
        value.copy_(x[start:start + m])
        part_sums = torch.bincount(bucket, weights=value, minlength=N_BUCKETS)
        sums += part_sums
        part_total = float(part_sums.sum())
        value.sub_(part_total / m)
        m2 = _pooled_m2(start, total, m2, m, part_total, float(torch.dot(value, value)))
        total += part_total
    out = Summary(count=n, total=total, m2=m2, min=lo, max=hi,
                  hist_count=counts.cpu().numpy(), hist_sum=sums.cpu().numpy())
    out.n_zero = _zeros(x, lo, out)
    return out


def _zeros(x: torch.Tensor, lo: float, s: Summary) -> int:
    """Exact count of zeros, from the histogram unless bucket 0 also holds subnormals."""
    if lo > 0:
        return 0
    if s.hist_sum[0] == 0:  # non-negative values summing to 0 are all 0
        return int(s.hist_count[0])
    return int(torch.count_nonzero(x == 0))


def describe(s: Summary) -> dict[str, object]:
    """The JSON-ready statistics of one summary (see RESOLUTION for what is exact; std is the
    population std, ddof=0). Undefined ratios are None, a positive max over a zero median is inf."""
    n, total = s.count, s.total
    mean = total / n
    pct = _order_stats(s, [float(q) for q in PERCENTILES])
    gini, gini_err = _gini(s, total)
    return {
        "count": n,
        "n_zero": s.n_zero,
        "sum": total,
        "mean": mean,
        "std": math.sqrt(s.m2 / n),
        "min": s.min,
        "max": s.max,
        "percentiles": dict(zip(PERCENTILES, pct)),
        "max_over_mean": ratio(s.max, mean),
        "max_over_median": ratio(s.max, pct[0]),
        "gini": gini,
        "gini_max_error": gini_err,
        "top_share": _top_shares(s, total),
    }


def _bucket_mean(s: Summary, b: np.ndarray) -> np.ndarray:
    c = s.hist_count[b]
    return np.clip(s.hist_sum[b] / np.maximum(c, 1), s.min, s.max)


def _order_stats(s: Summary, qs: list[float]) -> list[float]:
    """numpy.percentile's linear interpolation, each order statistic read as its bucket's mean."""
    cum = np.cumsum(s.hist_count)
    pos = np.array(qs) / 100.0 * (s.count - 1)
    below = np.floor(pos).astype(np.int64)
    above = np.minimum(below + 1, s.count - 1)
    lo = _bucket_mean(s, np.searchsorted(cum, below, side="right"))
    hi = _bucket_mean(s, np.searchsorted(cum, above, side="right"))
    return [float(v) for v in lo + (pos - below) * (hi - lo)]


def _gini(s: Summary, total: float) -> tuple[float | None, float | None]:
    """Sample Gini 2*sum(i x_(i))/(n S) - (n+1)/n over ascending x.

    Setting each bucket's values equal to their mean gives a lower bound; the truth exceeds it by
    at most 2/(nS) * sum_b width_b * floor(c_b^2/4) (width_b: the bucket's span clipped to the
    exact [min, max]). We report the middle of that interval and its half-width.
    """
    if total <= 0:
        return None, None
    n = s.count
    c = s.hist_count.astype(np.float64)
    below = np.cumsum(c) - c
    lower = 2.0 * float((s.hist_sum * (below + (c + 1) / 2)).sum()) / (n * total) - (n + 1) / n
    width = np.clip(EDGES[1:], s.min, s.max) - np.clip(EDGES[:-1], s.min, s.max)
    spread = 2.0 * float((width * np.floor(c * c / 4)).sum()) / (n * total)
    return lower + spread / 2, spread / 2


def _top_shares(s: Summary, total: float) -> dict[str, float | None]:
    """Share of the total held by the ceil(fraction * n) largest scores."""
    if total <= 0:
        return {label: None for label in TOP_SHARES}
    c = s.hist_count[::-1]
    sums = s.hist_sum[::-1]
    cum = np.cumsum(c)
    cum_sum = np.cumsum(sums)
    out = {}
    for label, inverse in TOP_SHARES.items():
        m = -(-s.count // inverse)
        b = int(np.searchsorted(cum, m, side="left"))  # first bucket (from the top) reaching m
        before = cum[b] - c[b]
        taken = cum_sum[b] - sums[b] + (m - before) * sums[b] / c[b]
        out[label] = float(taken / total)
    return out


def display_bins(s: Summary, max_bins: int = 512) -> dict[str, list[float]]:
    """The histogram merged to <= max_bins log-spaced bins (non-empty only), zero bucket on its own:
    enough to draw the distribution and a rank-vs-score curve without the score tensors."""
    nonzero = np.flatnonzero(s.hist_count[1:]) + 1
    bins = [(0, 1)] if s.hist_count[0] else []
    if nonzero.size:
        first, last = int(nonzero[0]), int(nonzero[-1]) + 1
        width = -(-(last - first) // (max_bins - 1))  # equal bucket runs: equal log widths
        bins += [(a, min(a + width, last)) for a in range(first, last, width)]
    count = [int(s.hist_count[a:b].sum()) for a, b in bins]
    keep = [i for i, c in enumerate(count) if c]
    return {
        "lower": [float(EDGES[bins[i][0]]) for i in keep],
        "upper": [float(EDGES[bins[i][1]]) for i in keep],
        "count": [count[i] for i in keep],
        "sum": [float(s.hist_sum[bins[i][0]:bins[i][1]].sum()) for i in keep],
    }
