"""Round-to-nearest (RTN) quantization of one weight matrix, per output channel or per input group.

A matrix W is [out, in] (the caller transposes GPT-2's Conv1D [in, out] first). Every row is cut into
groups of `group_size` consecutive input weights (`group_size = 0`: one group per row, i.e. per output
channel); each group g gets a scale s_g (and, asymmetric, an integer zero point z_g) from the weights it
holds, and every weight becomes

    asymmetric (b bits): q = clamp(round(w / s) + z, 0, 2^b - 1),   w' = s (q - z),
                         s = (max(w, 0) - min(w, 0)) / (2^b - 1),    z = round(-min(w, 0) / s)
    symmetric  (b bits): q = clamp(round(w / s), -2^(b-1), 2^(b-1) - 1),  w' = s q,
                         s = max|w| / (2^(b-1) - 1)

(the range includes 0, so a zero weight stays exactly zero; `round` is half-to-even). Weights marked in
`keep` are left out of the statistics that set s and z (dense-and-sparse protection, SpQR/SqueezeLLM) and
are put back at their original value after dequantization. Arithmetic is float32 (float64 for a float64
input, which the tests use); the result is cast to the weight's dtype. Memory: a float32 copy of W plus one [out, in / group] scale (and zero) tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SUPPORTED_BITS = (2, 3, 4, 5, 6, 8)


@dataclass(frozen=True)
class Grid:
    """Scales and zero points of one matrix: [out, n_groups] each (zero is 0 for a symmetric grid)."""

    bits: int
    group_size: int  # 0 = per output channel
    symmetric: bool
    scale: torch.Tensor  # float32
    zero: torch.Tensor  # float32 holding integers

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1

    def expand(self, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero of the input columns `cols` (indices), one column each: [out, len(cols)]."""
        group = cols // self.group_size if self.group_size else torch.zeros_like(cols)
        return self.scale[:, group], self.zero[:, group]


def compute_dtype(w: torch.Tensor) -> torch.dtype:
    """float32 for 16/32-bit weights, float64 for float64 ones."""
    return torch.promote_types(w.dtype, torch.float32)


def fit_grid(
    w: torch.Tensor, bits: int, group_size: int, symmetric: bool, keep: torch.Tensor | None = None
) -> Grid:
    """The RTN grid of the [out, in] matrix `w`; entries of `keep` (bool, w's shape) do not count."""
    w = w.to(compute_dtype(w))
    out, n_in = w.shape
    size = group_size or n_in
    groups = w.reshape(out, n_in // size, size)
    if keep is None:
        lo, hi = groups.amin(-1), groups.amax(-1)
    else:
        kept = keep.reshape(out, n_in // size, size)
        lo = groups.masked_fill(kept, float("inf")).amin(-1)
        hi = groups.masked_fill(kept, float("-inf")).amax(-1)
        all_kept = kept.all(-1)  # nothing left to quantize: any grid will do
        lo, hi = lo.masked_fill(all_kept, 0.0), hi.masked_fill(all_kept, 0.0)
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    if symmetric:
        scale = torch.maximum(-lo, hi) / (2 ** (bits - 1) - 1)
        zero = torch.zeros_like(scale)
    else:
        scale = (hi - lo) / (2**bits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: any scale is exact
    if not symmetric:
        zero = torch.round(-lo / scale)
    return Grid(bits, group_size, symmetric, scale, zero)


def quantize_codes(w: torch.Tensor, grid: Grid, cols: torch.Tensor | None = None) -> torch.Tensor:
    """Integer codes (as floats) of `w`: the whole matrix, or its input columns `cols` (indices)."""
    scale, zero = grid.expand(torch.arange(w.shape[1]) if cols is None else cols)
    return torch.clamp(torch.round(w.to(scale.dtype) / scale) + zero, grid.qmin, grid.qmax)


def dequantize(codes: torch.Tensor, grid: Grid, cols: torch.Tensor | None = None) -> torch.Tensor:
    """The values the codes stand for (in the grid's float dtype)."""
    scale, zero = grid.expand(torch.arange(codes.shape[1]) if cols is None else cols)
    return scale * (codes - zero)


@dataclass(frozen=True)
class QuantizedMatrix:
    """One quantized [out, in] matrix: codes and grid (what a packed format stores), and w' itself."""

    codes: torch.Tensor  # integers (as floats) in [grid.qmin, grid.qmax]
    grid: Grid
    dequantized: torch.Tensor  # in the original dtype, kept weights at their original value


def rtn(
    w: torch.Tensor, bits: int, group_size: int, symmetric: bool, keep: torch.Tensor | None = None
) -> QuantizedMatrix:
    """Round-to-nearest quantize-dequantize of `w` [out, in]."""
    grid = fit_grid(w, bits, group_size, symmetric, keep)
    codes = quantize_codes(w, grid)
    return QuantizedMatrix(codes, grid, restore_kept(dequantize(codes, grid), w, keep))


def restore_kept(values: torch.Tensor, w: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """`values` cast to w's dtype, with the kept positions holding w's original bits."""
    out = values.to(w.dtype)
    return out if keep is None else torch.where(keep.to(out.device), w, out)
