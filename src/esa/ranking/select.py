"""Exact top-k of ONE score tensor, without torch.topk over the whole tensor.

torch.topk on CPU copies every element into a (value, index) pair (16 bytes each, 8 GiB for a
Llama-3-8B embedding) and selects single-threaded. Instead we find a threshold t with
k <= #{x >= t} <= cap and sort only those candidates: first a guess from a strided sample (one
comparison pass, nearly always enough), else the exact k-th value by radix select (scores are
finite and >= 0, so float32 bit patterns order like the values; two histogram passes). Every pass
works in fixed chunks, so extra memory is O(chunk + cap) whatever the tensor size.

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


def bits_float(b: int) -> float:
    """The float32 whose bit pattern is the int `b`."""
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


def kth_best(x: torch.Tensor, k: int, order: Order) -> float:
    """The exact k-th best value of flat `x`: radix select on the float32 bits, two histogram passes
    (top 15 bits, then the low 16 bits inside the chosen bucket)."""
    bits = x.view(torch.int32)
    top, rank = _pick(_bit_histogram(bits), k, order)
    low, _ = _pick(_bit_histogram(bits, top), rank, order)
    return bits_float((top << 16) | low)


def _bit_histogram(bits: torch.Tensor, top: int | None = None) -> torch.Tensor:
    """Counts of the top 15 bits (sign dropped: -0.0 is 0), or of the low 16 bits among elements
    whose top bits equal `top`."""
    size = 1 << (15 if top is None else 16)
    hist = torch.zeros(size, dtype=torch.long, device=bits.device)
    buf = torch.empty(min(CHUNK, bits.numel()), dtype=torch.int32, device=bits.device)
    for start in range(0, bits.numel(), CHUNK):
        chunk = bits[start:start + CHUNK]
        part = buf[:chunk.numel()]
        torch.bitwise_right_shift(chunk, 16, out=part).bitwise_and_(0x7FFF)
        if top is not None:
            part = chunk[part == top].bitwise_and(0xFFFF)
        hist += torch.bincount(part, minlength=size)
    return hist.cpu()


def _pick(hist: torch.Tensor, k: int, order: Order) -> tuple[int, int]:
    """(bin holding the k-th best element, that element's rank inside the bin, from 1)."""
    counts = hist.flip(0) if order.largest else hist
    cum = torch.cumsum(counts, 0)
    i = int(torch.searchsorted(cum, k))
    rank = k - int(cum[i] - counts[i])
    return (hist.numel() - 1 - i if order.largest else i), rank


def best_of_tensor(
    x: torch.Tensor, k: int, order: Order, bar: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best elements of flat `x` (values, flat indices) in selection order, on x's device.

    `bar`, when given, is a value the result must strictly beat (the running k-th best of earlier
    tensors in a global ranking): elements that do not are never wanted, which usually makes one
    cheap pass enough. Returns fewer than k then.
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
    # Guess from a strided sample: about 2k + 9n/m elements pass its (2km/n + 8)-th best value.
    sample = x[::n // min(SAMPLE, max(n >> 6, 1024))]
    rank = min(sample.numel() - 1, 2 * k * sample.numel() // n + 8)
    guess = float(torch.sort(sample, descending=order.largest).values[rank])
    idx = indices_where(x, order.admits, guess, cap + 1)
    if k <= idx.numel() <= cap:
        return _first_k(x, idx, k, order)
    t = kth_best(x, k, order)
    if t != guess:
        idx = indices_where(x, order.admits, t, cap + 1)
        if idx.numel() <= cap:
            return _first_k(x, idx, k, order)
    # The k-th best value is tied more than `cap` times: the strictly better elements (fewer
    # than k), then the lowest-index ties.
    better = indices_where(x, order.beats, t)
    ties = indices_where(x, torch.eq, t, k - better.numel())
    return _first_k(x, torch.sort(torch.cat([better, ties])).values, k, order)
