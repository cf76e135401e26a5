"""Exact top-k of ONE score tensor, without torch.topk over the whole tensor.

torch.topk on CPU copies every element into a (value, index) pair (16 bytes each, 8 GiB for a
Llama-3-8B embedding) and selects single-threaded. Scores are finite and >= 0, so the float32 bit
pattern orders like the value: we bisect a threshold t over the bit patterns, starting from a
strided sample's guess, until k <= #{x >= t} <= cap, and sort only those candidates. Each probe is
one comparison pass in fixed chunks, so extra memory is O(chunk + cap) whatever the tensor size.

Selection order (the tie rule everywhere in ESA): better score first (higher for top-k, lower for
bottom-k), then lower flat index. Across tensors, ties go to the tensor earlier in model order.
"""

from __future__ import annotations

import math
import struct
from typing import Callable

import torch

from esa.errors import EsaError

CHUNK = 1 << 22  # elements per comparison pass: a 4 MiB bool buffer
SAMPLE = 1 << 16  # most elements in the strided sample that seeds the threshold search

Compare = Callable[..., torch.Tensor]


def check_scores(name: str, scores: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Flat contiguous float32 view of one parameter's scores, with its exact min and max.

    One aminmax pass also validates: NaN propagates into both, inf shows in the max.
    """
    x = scores.detach().reshape(-1)
    if x.dtype != torch.float32:
        x = x.float()
    x = x.contiguous()
    if x.numel() == 0:
        return x, 0.0, 0.0
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise EsaError(f"scores of {name!r} contain NaN or inf; the metric produced non-finite values")
    if lo < 0:
        raise EsaError(f"scores of {name!r} go down to {lo:.4g}; ESA scores must be >= 0")
    return x, lo, hi


def float_bits(v: float) -> int:
    """Bit pattern of a non-negative float32 as an int (-0.0 maps to 0)."""
    return struct.unpack("<i", struct.pack("<f", v + 0.0))[0]


def bits_float(b: int) -> float:
    return struct.unpack("<f", struct.pack("<i", b))[0]


class Order:
    """Comparisons for top-k (largest=True) or bottom-k (largest=False)."""

    def __init__(self, largest: bool) -> None:
        self.largest = largest
        self.admits: Compare = torch.ge if largest else torch.le  # as good as the threshold
        self.beats: Compare = torch.gt if largest else torch.lt  # strictly better

    def arrange(self, values: torch.Tensor) -> torch.Tensor:
        """Permutation putting `values` in selection order; stable, so equal values keep their order."""
        return torch.sort(values, descending=self.largest, stable=True).indices


def indices_where(x: torch.Tensor, op: Compare, t: float, limit: int | None = None) -> torch.Tensor:
    """Ascending flat indices i with op(x[i], t), stopping once `limit` are found."""
    buf = torch.empty(min(CHUNK, x.numel()), dtype=torch.bool, device=x.device)
    parts, found = [], 0
    for start in range(0, x.numel(), CHUNK):
        chunk = x[start:start + CHUNK]
        mask = buf[:chunk.numel()]
        op(chunk, t, out=mask)
        idx = mask.nonzero().squeeze(1)
        if limit is not None:
            idx = idx[:limit - found]
        parts.append(idx + start)
        found += idx.numel()
        if limit is not None and found >= limit:
            break
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long, device=x.device)


def _first_k(x: torch.Tensor, idx: torch.Tensor, k: int, order: Order) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of the candidates `idx` (ascending), in selection order."""
    vals = x[idx]
    perm = order.arrange(vals)[:k]
    return vals[perm], idx[perm]


def best_of_tensor(
    x: torch.Tensor, k: int, order: Order, lo: float, hi: float, bar: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best elements of flat `x` (values, flat indices) in selection order, on x's device.

    `lo`/`hi` are x's min/max (from check_scores). `bar`, when given, is a value the result must
    strictly beat (the running k-th best of earlier tensors in a global ranking): elements that do
    not are never wanted, which usually makes one cheap pass enough. Returns fewer than k then.
    """
    n = x.numel()
    k = min(k, n)
    cap = 4 * k + max(n >> 11, 1 << 12)  # candidates we are happy to sort
    if bar is not None:
        idx = indices_where(x, order.beats, bar, cap + 1)
        if idx.numel() <= cap:
            return _first_k(x, idx, k, order)
    if n <= cap:
        return _first_k(x, torch.arange(n, device=x.device), k, order)

    # Bisect over bit patterns: `admit` lets >= k elements through (worse than cap), `reject` < k.
    admit, reject = (float_bits(lo), float_bits(hi) + 1) if order.largest else (float_bits(hi), float_bits(lo) - 1)
    sample = x[::n // min(SAMPLE, max(n >> 6, 1024))]
    sample = sample[order.arrange(sample)]
    rank: int | None = min(sample.numel() - 1, 2 * k * sample.numel() // n + 8)
    while abs(reject - admit) > 1:
        probe = float_bits(float(sample[rank])) if rank is not None else None
        if probe is None or not min(admit, reject) < probe < max(admit, reject):
            probe, rank = (admit + reject) // 2, None
        idx = indices_where(x, order.admits, bits_float(probe), cap + 1)
        if idx.numel() < k:
            reject = probe
            rank = min(rank * 8, sample.numel() - 1) if rank is not None and rank < sample.numel() - 1 else None
        elif idx.numel() <= cap:
            return _first_k(x, idx, k, order)
        else:
            admit = probe
            rank = rank // 8 if rank else None
    # `admit` is now exactly the k-th best value, tied more than `cap` times: take the strictly
    # better elements (fewer than k), then the lowest-index ties.
    t = bits_float(admit)
    better = indices_where(x, order.beats, t)
    ties = indices_where(x, torch.eq, t, k - better.numel())
    return _first_k(x, torch.sort(torch.cat([better, ties])).values, k, order)
