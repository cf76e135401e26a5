"""Mixed precision respects the budget, and more budget never raises the objective."""

from __future__ import annotations

import itertools

import pytest
import torch

import esa
from esa.quantize import ScoreCache, allocate, find_targets
from esa.quantize.allocate import storage


@pytest.mark.parametrize("budget", [3.2, 3.5, 4.25, 6.0])
def test_effective_bits_within_budget(llama, llama_windows, budget):
    r = esa.quantize(llama, llama_windows, bits=None, group_size=16, budget_bits=budget, allocate_by="magnitude",
                     keep_topk=5, keep_metric="magnitude")
    assert r.effective_bits <= budget
    assert budget - r.effective_bits < 1.0  # the greedy spends the budget (the widest step is 8 - 6 bits)
    assert set(r.plan) == {t.name for t in find_targets(llama)}


def test_objective_falls_with_budget_and_greedy_is_near_exhaustive(llama):
    targets = find_targets(llama)[:3]
    scores = {t.name: torch.rand(t.info.shape, generator=torch.Generator().manual_seed(1)) for t in targets}
    widths = (2, 4, 8)
    lowest = sum(storage(t, 2, 16, False) for t in targets)
    errors = []
    for extra in (0.5, 1.5, 3.0):
        budget = int(lowest * (1 + extra / 2))
        a = allocate(targets, scores, {}, budget=budget, widths=widths, group_size=16, symmetric=False)
        assert a.used_bits <= budget
        best = min(sum(a.error[t.name][b] for t, b in zip(targets, combo))
                   for combo in itertools.product(widths, repeat=3)
                   if sum(storage(t, b, 16, False) for t, b in zip(targets, combo)) <= budget)
        assert best <= a.total_error <= 2 * best + 1e-12
        errors.append(a.total_error)
    assert errors == sorted(errors, reverse=True)


def test_sensitive_tensor_gets_more_bits(llama):
    targets = find_targets(llama)[:2]
    scores = {targets[0].name: torch.full(targets[0].info.shape, 100.0), targets[1].name: torch.ones(targets[1].info.shape)}
    budget = storage(targets[0], 4, 0, True) + storage(targets[1], 2, 0, True)
    a = allocate(targets, scores, {}, budget=budget, widths=(2, 4), group_size=0, symmetric=True)
    assert a.bits == {targets[0].name: 4, targets[1].name: 2}
