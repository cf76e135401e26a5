"""What a quantized tensor costs to store, in bits: the basis of effective bits per weight.

A b-bit tensor of `rows` x `in` weights in groups of g inputs (g = in for per channel) stores
    rows * in * b               codes
  + rows * (in / g) * 16        one 16-bit scale per group
  + rows * (in / g) * b         one b-bit zero point per group (asymmetric only)
and every weight kept in 16 bits beside it (dense-and-sparse) adds 16 value bits plus
ceil(log2(numel)) bits of position inside its tensor (the smallest index that addresses it; its code
slot in the dense part is still stored). Effective bits = total bits / number of target weights.
"""

from __future__ import annotations

import math

SCALE_BITS = 16
KEPT_VALUE_BITS = 16


def tensor_bits(rows: int, n_in: int, bits: int, group_size: int, symmetric: bool) -> int:
    """Bits of codes plus per-group scale (and zero point)."""
    groups = rows * (n_in // (group_size or n_in))
    return rows * n_in * bits + groups * (SCALE_BITS + (0 if symmetric else bits))


def index_bits(numel: int) -> int:
    return max(1, math.ceil(math.log2(numel)))


def kept_bits(n_kept: int, numel: int) -> int:
    """Bits of `n_kept` 16-bit weights with their positions in a tensor of `numel` weights."""
    return n_kept * (KEPT_VALUE_BITS + index_bits(numel))
