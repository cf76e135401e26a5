"""SparseGPT on one small linear layer equals Optimal Brain Surgeon computed by brute force.

The reference takes the OBS steps one column at a time with explicit inverses of the dampened Hessian
restricted to the columns not yet fixed, (H_F)⁻¹ with F = {j, ..., in-1}: pruning w_j moves the
remaining weights by -w_j / [(H_F)⁻¹]_jj · (H_F)⁻¹[:, j]. Masks are chosen like the paper's adaptive
selection, from w_c² / [(H_{c..})⁻¹]_cc at the start of each block (N:M: of each group of M). No
Cholesky, no lazy batches: if those are right, weights, masks and reconstruction error agree.
"""

from __future__ import annotations

import pytest
import torch

from esa.prune.patterns import Pattern
from esa.prune.sparsegpt import sparsegpt_layer

OUT, IN, TOKENS, BLOCK, DAMP = 5, 16, 64, 4, 0.01


def _layer(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(TOKENS, IN, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3.0, IN, dtype=torch.float64)
    return torch.randn(OUT, IN, generator=g, dtype=torch.float64), x


def _salience(w: torch.Tensor, h: torch.Tensor, cols: range) -> torch.Tensor:
    return torch.stack([w[c] ** 2 / torch.linalg.inv(h[c:, c:])[0, 0] for c in cols])


def _brute_force(w: torch.Tensor, x: torch.Tensor, sparsity: float, pattern: Pattern) -> tuple[torch.Tensor, torch.Tensor]:
    h = x.t() @ x
    h = h + DAMP * torch.diagonal(h).mean() * torch.eye(IN, dtype=h.dtype)
    out, mask = w.clone(), torch.zeros_like(w, dtype=torch.bool)
    for r in range(OUT):
        row = out[r]
        for j in range(IN):
            if pattern.structured and j % pattern.m == 0:
                sal = _salience(row, h, range(j, j + pattern.m))
                mask[r, j + sal.argsort()[: pattern.n]] = True
            elif not pattern.structured and j % BLOCK == 0:
                k = int(sparsity * (j + BLOCK)) - int(sparsity * j)
                sal = _salience(row, h, range(j, j + BLOCK))
                mask[r, j + sal.argsort()[:k]] = True
            if mask[r, j]:
                hinv = torch.linalg.inv(h[j:, j:])
                row[j:] -= row[j] / hinv[0, 0] * hinv[:, 0]
                row[j] = 0.0
    return out, mask


@pytest.mark.parametrize("sparsity,pattern", [(0.5, Pattern()), (0.3, Pattern()), (0.5, Pattern(2, 4))], ids=["50%", "30%", "2:4"])
def test_sparsegpt_equals_brute_force_obs(sparsity: float, pattern: Pattern) -> None:
    w, x = _layer()
    ref_w, ref_mask = _brute_force(w, x, sparsity, pattern)
    got = sparsegpt_layer(w.float(), (x.t() @ x).float(), sparsity=sparsity, pattern=pattern, blocksize=BLOCK, damp=DAMP)
    assert torch.equal(got.mask, ref_mask)
    assert torch.equal(got.weight == 0, ref_mask)
    torch.testing.assert_close(got.weight.double(), ref_w, rtol=1e-4, atol=1e-5)
    err = ((w - got.weight.double()) @ x.t()).square().sum()
    ref_err = ((w - ref_w) @ x.t()).square().sum()
    torch.testing.assert_close(err, ref_err, rtol=1e-4, atol=1e-6)
    # the update is what makes it SparseGPT: zeroing the same mask without it is worse
    plain = ((w * ~ref_mask) - w) @ x.t()
    assert err < plain.square().sum()


def test_lazy_blocks_do_not_change_the_result() -> None:
    """One block of all columns and blocks of 4 give the same answer when the masks are forced alike."""
    w, x = _layer(1)
    h = (x.t() @ x).float()
    a = sparsegpt_layer(w.float(), h, sparsity=0.5, pattern=Pattern(2, 4), blocksize=4)
    b = sparsegpt_layer(w.float(), h, sparsity=0.5, pattern=Pattern(2, 4), blocksize=16)
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-4, atol=1e-5)
