"""GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers"), written from the paper, for one [out, in] weight matrix.

Goal per layer: codes Q minimising ||W X - Q X||^2 over the calibration inputs X [in, n], i.e. the
quadratic form with Hessian H = 2 X X^T / n (accumulated by esa.quantize.calibrate). The Optimal Brain
Quantization step quantizes input column i, q_i = quant(w_i), and moves the columns not yet quantized
to compensate: W[:, F] -= (w_i - q_i) / [H_F^-1]_ii * [H_F^-1]_{i,F}. GPTQ quantizes every row in the
same column order, so all rows share H_F^-1; its rows are those of the upper Cholesky factor U of H^-1
(H^-1 = U^T U), which gives the updates of every step at once without re-inverting. Updates are applied
lazily: within a block of B columns exactly, to the columns after the block once per block (one matrix
product). Dampening: H += damp * mean(diag H) * I. An input that never fired (diag H = 0) gets
H_ii = 1: its column is rounded with no compensation (the paper zeroes it; we keep it, since an MoE
expert that received no calibration token is still used at evaluation time).

Options: `act_order` quantizes columns by decreasing H_ii (the paper's "act-order"); with groups, the
grid of each group is fitted when its first column is reached, from the compensated weights; with
act-order or per channel, the grids are fitted once on W before any update ("static groups"), so a
group is always a run of consecutive inputs in the stored layout. Kept weights (protection) are fixed at
their original value: their error is propagated like any other, and they are left out of the grid.
Memory: W, H and U in the compute dtype ([out, in] + 2 [in, in]). Time: O(out in^2 + in^3).
"""

from __future__ import annotations

import torch

from esa.quantize.rtn import Grid, QuantizedMatrix, compute_dtype, dequantize, fit_grid, quantize_codes, restore_kept

DEFAULT_DAMP = 0.01
DEFAULT_BLOCK = 128


def gptq(
    w: torch.Tensor, hessian: torch.Tensor, bits: int, group_size: int, symmetric: bool, *,
    act_order: bool = False, keep: torch.Tensor | None = None, damp: float = DEFAULT_DAMP,
    block_size: int = DEFAULT_BLOCK,
) -> QuantizedMatrix:
    """GPTQ of `w` [out, in] with the input Hessian `hessian` [in, in] (any positive scale)."""
    dtype = compute_dtype(w)
    out, n_in = w.shape
    original = w.to(dtype)
    keep = torch.zeros(out, n_in, dtype=torch.bool) if keep is None else keep.cpu()
    h = hessian.to(dtype).clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    order = torch.argsort(h.diagonal(), descending=True, stable=True) if act_order else torch.arange(n_in)
    static = act_order or group_size == 0
    grid = fit_grid(original, bits, group_size, symmetric, keep) if static else _empty_grid(
        out, n_in, bits, group_size, symmetric, dtype)
    if group_size and not static:  # a block must hold whole groups, so a group's grid sees its updated weights
        block_size = max(block_size // group_size, 1) * group_size

    h = h[order][:, order]
    h.diagonal().add_(damp * h.diagonal().mean())
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    work, orig, kept = original[:, order].clone(), original[:, order], keep[:, order]
    codes = torch.zeros_like(work)
    values = torch.zeros_like(work)
    for b0 in range(0, n_in, block_size):
        b1 = min(b0 + block_size, n_in)
        block = work[:, b0:b1]
        errors = torch.zeros_like(block)
        for j in range(b1 - b0):
            i = b0 + j
            col = order[i : i + 1]
            if not static and int(col) % group_size == 0:
                _fit_group(grid, block[:, j : j + group_size], kept[:, i : i + group_size], int(col) // group_size)
            code = quantize_codes(block[:, j : j + 1], grid, col)
            value = torch.where(kept[:, i : i + 1], orig[:, i : i + 1], dequantize(code, grid, col))
            err = (block[:, j] - value[:, 0]) / u[i, i]
            block[:, j:] -= err[:, None] * u[i, i:b1][None, :]
            errors[:, j] = err
            codes[:, i], values[:, i] = code[:, 0], value[:, 0]
        work[:, b1:] -= errors @ u[b0:b1, b1:]
    inverse = torch.argsort(order)
    return QuantizedMatrix(codes[:, inverse], grid, restore_kept(values[:, inverse], w, keep))


def _empty_grid(out: int, n_in: int, bits: int, group_size: int, symmetric: bool, dtype: torch.dtype) -> Grid:
    shape = (out, n_in // group_size)
    return Grid(bits, group_size, symmetric, torch.ones(shape, dtype=dtype), torch.zeros(shape, dtype=dtype))


def _fit_group(grid: Grid, weights: torch.Tensor, kept: torch.Tensor, group: int) -> None:
    """Fill group `group` of `grid` from its (compensated) weights."""
    one = fit_grid(weights, grid.bits, 0, grid.symmetric, kept)
    grid.scale[:, group], grid.zero[:, group] = one.scale[:, 0], one.zero[:, 0]
