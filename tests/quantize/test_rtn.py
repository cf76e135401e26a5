"""RTN equals an independent, loop-by-loop re-implementation of per-group (a)symmetric rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import esa
from esa.quantize import find_targets, rtn


def reference_rtn(w: np.ndarray, bits: int, group: int, symmetric: bool) -> np.ndarray:
    """One group at a time, in numpy float32, written from the formulas (not from esa's code)."""
    out = np.empty_like(w)
    size = group or w.shape[1]
    for r in range(w.shape[0]):
        for g0 in range(0, w.shape[1], size):
            x = w[r, g0 : g0 + size].astype(np.float32)
            lo, hi = np.float32(min(x.min(), 0.0)), np.float32(max(x.max(), 0.0))
            if symmetric:
                levels = np.float32(2 ** (bits - 1) - 1)
                s = np.float32(max(-lo, hi)) / levels
                s = s if s > 0 else np.float32(1.0)
                q = np.clip(np.round(x / s), -levels - 1, levels)
                out[r, g0 : g0 + size] = s * q
            else:
                s = (hi - lo) / np.float32(2**bits - 1)
                s = s if s > 0 else np.float32(1.0)
                z = np.round(-lo / s)
                q = np.clip(np.round(x / s) + z, 0, 2**bits - 1)
                out[r, g0 : g0 + size] = s * (q - z)
    return out


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group", [0, 16, 32])
@pytest.mark.parametrize("symmetric", [False, True])
def test_every_tensor_matches_the_reference(llama, llama_windows, bits, group, symmetric):
    result = esa.quantize(llama, llama_windows, bits=bits, group_size=group, symmetric=symmetric, keep_quantized=True)
    try:
        for t in find_targets(llama):
            got = t.matrix().numpy()
            want = reference_rtn(result._originals[t.name].numpy(), bits, group, symmetric)
            assert np.array_equal(got, want), t.name
    finally:
        result.restore()


def test_zero_stays_zero_and_codes_stay_in_range():
    w = torch.randn(4, 16)
    w[0, :8] = 0.0
    w[1, 3] = 0.0
    for symmetric in (False, True):
        q = rtn(w, 3, 8, symmetric)
        assert q.dequantized[0, :8].eq(0).all() and q.dequantized[1, 3] == 0
        assert q.codes.min() >= q.grid.qmin and q.codes.max() <= q.grid.qmax
        assert torch.equal(q.codes, q.codes.round())
