"""Kept weights keep their exact bits, leave their group's statistics, and are charged to the bits."""

from __future__ import annotations

import math

import torch

import esa
from esa.quantize import ScoreCache, find_targets, fit_grid, rtn
from esa.quantize.cost import index_bits


def test_kept_weight_is_excluded_from_the_scale():
    w = torch.randn(2, 8) * 0.1
    w[0, 5] = 50.0
    keep = torch.zeros_like(w, dtype=torch.bool)
    keep[0, 5] = True
    q = rtn(w, 4, 8, False, keep)
    without = w.clone()
    without[0, 5] = 0.0
    assert torch.equal(q.grid.scale[0], fit_grid(without[:, :], 4, 8, False).scale[0])
    assert q.dequantized[0, 5] == 50.0


def test_top_weights_and_their_cost(llama, llama_windows):
    cache = ScoreCache()
    plain = esa.quantize(llama, llama_windows, bits=3, group_size=16, cache=cache)
    kept = esa.quantize(llama, llama_windows, bits=3, group_size=16, method="gptq", keep_topk=25,
                        keep_metric="magnitude", cache=cache, keep_quantized=True)
    try:
        named = dict(llama.model.named_parameters())
        assert kept.n_kept == 25
        for row in kept.kept:
            now = named[row["param"]].detach().reshape(-1)[row["flat_index"]]
            before = kept._originals[row["param"]].reshape(-1)[row["flat_index"]]
            assert now.view(torch.int32) == before.view(torch.int32) and float(before) == row["value"]
        magnitudes = torch.cat([kept._originals[t.name].abs().reshape(-1) for t in find_targets(llama)])
        smallest_kept = min(abs(r["value"]) for r in kept.kept)
        assert int((magnitudes > smallest_kept).sum()) == 24  # exactly the 25 largest (no ties here)
    finally:
        kept.restore()
    sizes = {t.name: t.numel for t in find_targets(llama)}
    extra = sum(16 + index_bits(sizes[r["param"]]) for r in kept.kept) / kept.n_weights
    assert math.isclose(kept.effective_bits - plain.effective_bits, extra, rel_tol=1e-12)


def test_fraction_counts_the_targets(llama, llama_windows):
    r = esa.quantize(llama, llama_windows, bits=4, group_size=0, keep_fraction=0.001, keep_metric="magnitude")
    assert r.n_kept == round(0.001 * r.n_weights)
