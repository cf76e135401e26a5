"""GPTQ on one small layer equals brute-force Optimal Brain Quantization: one weight at a time,
re-inverting the Hessian of the weights still free at every step (no Cholesky, no lazy batches)."""

from __future__ import annotations

import pytest
import torch

from esa.quantize import fit_grid, gptq, rtn

OUT, IN = 5, 16


@pytest.fixture(scope="module")
def layer() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(OUT, IN, generator=g, dtype=torch.float64)
    x = torch.randn(IN, 300, generator=g, dtype=torch.float64) * torch.rand(IN, 1, generator=g, dtype=torch.float64) * 3
    return w, 2 * x @ x.T / x.shape[1]


def obq(w, h, bits, group, symmetric, act_order, keep=None, damp=0.01):
    h = h.clone()
    order = torch.argsort(h.diagonal(), descending=True, stable=True).tolist() if act_order else list(range(IN))
    h.diagonal().add_(damp * h.diagonal().mean())
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    keep = torch.zeros_like(w, dtype=torch.bool) if keep is None else keep
    out = torch.zeros_like(w)
    static = act_order or group == 0
    for r in range(OUT):
        row, free = w[r].clone(), list(range(IN))
        grid = fit_grid(w[r : r + 1], bits, group, symmetric, keep[r : r + 1]) if static else None
        for p in order:
            if static:
                s, z = grid.scale[0, p // group if group else 0], grid.zero[0, p // group if group else 0]
            elif p % group == 0:
                local = fit_grid(row[None, p : p + group], bits, 0, symmetric, keep[r : r + 1, p : p + group])
                s, z = local.scale[0, 0], local.zero[0, 0]
            q = w[r, p] if keep[r, p] else (torch.clamp(torch.round(row[p] / s) + z, qmin, qmax) - z) * s
            inv = torch.linalg.inv(h[free][:, free])
            k = free.index(p)
            row[free] -= (row[p] - q) / inv[k, k] * inv[:, k]
            row[p] = q
            free.remove(p)
        out[r] = row
    return out


@pytest.mark.parametrize("bits,group,symmetric,act_order", [
    (3, 0, False, False), (4, 0, True, False), (3, 4, False, False), (2, 8, True, False),
    (3, 0, False, True), (4, 4, False, True),
])
def test_matches_brute_force_obq(layer, bits, group, symmetric, act_order):
    w, h = layer
    got = gptq(w, h, bits, group, symmetric, act_order=act_order, block_size=8).dequantized
    assert torch.allclose(got, obq(w, h, bits, group, symmetric, act_order), atol=1e-12, rtol=0)


def test_kept_weights_match_brute_force_and_keep_their_bits(layer):
    w, h = layer
    keep = torch.zeros_like(w, dtype=torch.bool)
    keep[0, 3] = keep[2, 9] = keep[4, 0] = True
    got = gptq(w, h, 3, 4, False, keep=keep, block_size=8).dequantized
    assert torch.allclose(got, obq(w, h, 3, 4, False, False, keep), atol=1e-12, rtol=0)
    assert torch.equal(got[keep], w[keep])


def test_beats_rtn_on_the_layer_objective(layer):
    w, h = layer
    loss = lambda q: float(torch.einsum("oi,ij,oj->", w - q, h, w - q))  # noqa: E731
    assert loss(gptq(w, h, 3, 0, False).dequantized) < loss(rtn(w, 3, 0, False).dequantized)
