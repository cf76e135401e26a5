"""SparseGPT (Frantar & Alistarh 2023): prune one linear layer and update its remaining weights.

The layer-wise problem: find Ŵ with the mask's zeros minimising ||W Xᵀ - Ŵ Xᵀ||², X the layer's
calibration inputs, H = XᵀX [in, in]. Each row is solved by Optimal Brain Surgeon steps taken column
by column, left to right: when column j is fixed (pruned: q = 0, kept: q = w_j), the error
e = (w_j - q) / U_jj is spread over the columns not yet fixed, w_F -= e · U_{j,F}, where U is the
upper Cholesky factor of H⁻¹ (its row j is row j of (H_F)⁻¹ over the not-yet-fixed set F = {j, ...},
scaled by 1/sqrt([(H_F)⁻¹]_jj); one factorisation gives every step's inverse).

As the paper states: H is dampened by `damp`·mean(diag H) on its diagonal (inputs that never fire get
H_jj = 1 and their weights zeroed); updates are applied lazily per block of `blocksize` columns
(inside the block immediately, to later columns once per block as a matrix product); the mask is
chosen adaptively at the start of each block from the OBS error w² / U_jj² of the block's current
weights (`group` "row": the same share in every row, "tensor": over the whole block; the counts per
block are cumulative roundings, so the layer gets exactly floor(s·in) per row or floor(s·numel));
N:M chooses within each group of M columns when the loop reaches its first column.

Cost: O(in³) for the factorisation plus O(out·in²) for the updates; memory: H, U and a copy of W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from esa.errors import EsaError
from esa.prune.patterns import Pattern

DEFAULT_BLOCKSIZE = 128
DEFAULT_DAMP = 0.01


@dataclass
class SparseGPTLayer:
    """The pruned, updated [out, in] weight, its mask (True = pruned) and Σ e² (the OBS loss proxy)."""

    weight: torch.Tensor
    mask: torch.Tensor
    obs_loss: float


def sparsegpt_layer(
    weight: torch.Tensor, hessian: torch.Tensor, *, sparsity: float, pattern: Pattern, group: str = "row",
    protected: torch.Tensor | None = None, blocksize: int = DEFAULT_BLOCKSIZE, damp: float = DEFAULT_DAMP,
) -> SparseGPTLayer:
    """Prune the [out, in] `weight` with the input Hessian `hessian` = XᵀX (see the module docstring)."""
    if group not in ("row", "tensor"):
        raise EsaError(f"sparsegpt chooses its mask per block of columns; use group 'row' or 'tensor', not {group!r}")
    if pattern.structured and blocksize % pattern.m:
        raise EsaError(f"sparsegpt's block size {blocksize} must be a multiple of M={pattern.m}")
    out, n_in = weight.shape
    w = weight.detach().float().clone()
    u = _inverse_cholesky(hessian, w, damp)
    mask = torch.zeros_like(w, dtype=torch.bool)
    keep = torch.zeros_like(mask) if protected is None else protected
    loss = 0.0
    for i1 in range(0, n_in, blocksize):
        i2 = min(i1 + blocksize, n_in)
        w1, u1 = w[:, i1:i2].clone(), u[i1:i2, i1:i2]
        err = torch.zeros_like(w1)
        d = torch.diagonal(u1)
        if not pattern.structured:
            mask[:, i1:i2] = _block_mask(w1, d, keep[:, i1:i2], sparsity, group, out, i1, i2)
        for j in range(i2 - i1):
            if pattern.structured and j % pattern.m == 0:
                cols = slice(i1 + j, i1 + j + pattern.m)
                salience = (w1[:, j : j + pattern.m] / d[j : j + pattern.m]).square().masked_fill(keep[:, cols], math.inf)
                chosen = torch.sort(salience, dim=1, stable=True).indices[:, : pattern.n]
                mask[:, cols] = torch.zeros_like(salience, dtype=torch.bool).scatter_(1, chosen, True)
            col = w1[:, j]
            q = col.masked_fill(mask[:, i1 + j], 0.0)
            e = (col - q) / d[j]
            w1[:, j:] -= e.unsqueeze(1) * u1[j, j:].unsqueeze(0)
            w1[:, j] = q
            err[:, j] = e
        w[:, i1:i2] = w1
        w[:, i2:] -= err @ u[i1:i2, i2:]
        loss += float(err.double().square().sum())
    if (mask & keep).any():
        raise EsaError(f"sparsegpt: a group of {pattern.m} holds more protected weights than {pattern.label} lets it keep; "
                       "protect fewer weights")
    return SparseGPTLayer(w.to(weight.dtype), mask, loss)


def _inverse_cholesky(hessian: torch.Tensor, w: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + λI)⁻¹, in float64 for the factorisations; zeroes dead inputs' weights."""
    h = hessian.detach().double().clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h.diagonal().add_(damp * float(torch.diagonal(h).mean()))
    try:
        hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
        return torch.linalg.cholesky(hinv, upper=True).float()
    except torch.linalg.LinAlgError:
        raise EsaError("sparsegpt: the dampened input Hessian is not positive definite; raise the dampening") from None


def _block_mask(
    w1: torch.Tensor, d: torch.Tensor, keep: torch.Tensor, sparsity: float, group: str, out: int, i1: int, i2: int,
) -> torch.Tensor:
    """The block's share of the layer's pruned weights, lowest w²/U_jj² first (protected never)."""
    salience = (w1 / d).square().masked_fill(keep, math.inf)
    if group == "row":
        k = int(sparsity * i2) - int(sparsity * i1)
        rows = salience
    else:
        k = int(sparsity * out * i2) - int(sparsity * out * i1)
        rows = salience.reshape(1, -1)
    chosen = torch.sort(rows, dim=1, stable=True).indices[:, :k]
    mask = torch.zeros_like(rows, dtype=torch.bool).scatter_(1, chosen, True).view(salience.shape)
    if torch.isinf(salience[mask]).any():
        raise EsaError(
            "sparsegpt: a block holds more protected weights than the sparsity target lets it keep; "
            "protect fewer weights or lower the sparsity"
        )
    return mask
