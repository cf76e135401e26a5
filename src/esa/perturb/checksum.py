"""A checksum of a tensor's stored bits, to prove that a restore gave back exactly what was there.

Every stored value is read as H signed 16-bit pieces (its bytes in memory order: H = 2 for fp32,
1 for bf16/fp16), p in [-2^15, 2^15). For each piece position the checksum holds two sums over the
flattened tensor, Σp and Σp·(i mod 2^16 + 1), with i the flat index. Both are exact integers: per
chunk of 2^20 values every partial sum is an integer below 2^52 in magnitude, so float64 (and its
fast BLAS matrix-vector product) adds them without rounding; chunks add up as Python ints. Hence:
 - any change confined to ONE element (one flipped bit, another NaN payload, -0.0 for +0.0)
   changes Σp of a piece that changed: always detected;
 - changes to several elements escape only if they cancel in every sum at once (e.g. two values
   swapped between positions a multiple of 65,536 apart).
Unlike hashlib it runs where the tensor is, with no copy to the host, at about the speed of SHA-1 on
a CPU: one pass in fixed chunks, O(chunk) extra memory (a non-contiguous tensor is first copied whole).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from esa.perturb.base import int_view_dtype

PERIOD = 1 << 16
CHUNK = 1 << 20  # a multiple of PERIOD (same weights in every chunk); 2^15 · 2^16 · CHUNK = 2^51 < 2^53

Checksum = tuple[int, ...]


def tensor_checksum(tensor: torch.Tensor) -> Checksum:
    """(Σp, Σp·w) of each 16-bit piece position in turn, in memory order."""
    flat = tensor.detach().view(int_view_dtype(tensor.dtype)).reshape(-1)
    n_pieces = flat.element_size() // 2
    pieces = flat.view(torch.int16).view(-1, n_pieces)
    weights = _position_weights(flat.device)
    parts: list[torch.Tensor] = []
    for start in range(0, flat.numel(), CHUNK):
        p = pieces[start : start + CHUNK].double()
        parts.append(torch.stack([p.sum(0), weights[: p.shape[0]] @ p], 1).reshape(-1))
    rows = torch.stack(parts).tolist() if parts else []
    return tuple(sum(int(row[j]) for row in rows) for j in range(2 * n_pieces))


@lru_cache(maxsize=None)
def _position_weights(device: torch.device) -> torch.Tensor:
    """i mod 2^16 + 1 for i < CHUNK, made once per device (8 MiB) instead of once per tensor."""
    return (torch.arange(CHUNK, device=device) % PERIOD + 1).double()
