"""Peak-memory measurement, and the gradient folding it exists to check."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig

from esa.scale import folded_backward, measure_peak_memory

MIB = 2**20


def test_peak_counts_live_tensors_only() -> None:
    def allocate() -> None:
        a = torch.zeros(MIB)  # 4 MiB
        b = a + 1  # 8 MiB live
        del a  # 4 MiB
        c = torch.zeros(2 * MIB)  # 12 MiB live: the peak
        del b, c

    assert measure_peak_memory(allocate) == 12 * MIB


def test_peak_is_relative_to_what_was_live_before() -> None:
    keep = torch.zeros(4 * MIB)
    assert measure_peak_memory(lambda: torch.ones(MIB)) == 4 * MIB
    del keep


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_folding_saves_about_one_gradient_copy(helpers, dtype: torch.dtype) -> None:
    """Short windows so gradients, not activations, set the peak: keeping every .grad until the backward
    ends costs one more model-sized copy than folding, less the largest gradient (folding holds it too)."""
    model = helpers.build(AutoConfig.for_model("llama", **helpers.PLAN_MODEL), dtype)
    batches = [helpers.ids(4096, 1, 8, seed) for seed in (0, 1)]
    folded = measure_peak_memory(lambda: folded_backward(model, batches))
    kept = measure_peak_memory(lambda: folded_backward(model, batches, keep_gradients=True))
    params = list(model.parameters())
    b = params[0].element_size()
    n, largest = sum(p.numel() for p in params), max(p.numel() for p in params)
    assert 0.9 * (n - largest) * b <= kept - folded <= n * b


def test_folding_and_keeping_give_the_same_sums(helpers) -> None:
    model = helpers.build(AutoConfig.for_model("llama", **helpers.PLAN_MODEL))
    batches = [helpers.ids(4096, 2, 16, seed) for seed in (0, 1)]
    folded, kept = folded_backward(model, batches), folded_backward(model, batches, keep_gradients=True)
    assert folded.keys() == kept.keys()
    assert all(torch.equal(folded[n], kept[n]) for n in folded)
    assert all(p.grad is None for p in model.parameters())
