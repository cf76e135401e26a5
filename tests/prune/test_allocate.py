"""allocate_sparsity: the greedy allocation is the brute-force optimum where it must be, meets the
budget of uniform pruning, stays inside its bounds, and reduces to uniform pruning at spread 0."""

from __future__ import annotations

import itertools

import pytest
import torch

from esa.errors import EsaError
from esa.prune.allocate import allocate_sparsity


def _cost(order: torch.Tensor, saliency: torch.Tensor, k: int) -> float:
    ranked = torch.sort(order, dim=-1, stable=True).indices[:, :k]
    return float(saliency.double().gather(1, ranked).sum())


def test_equal_shapes_and_unit_steps_give_the_brute_force_optimum() -> None:
    gen = torch.Generator().manual_seed(0)
    sal = {f"t{i}": torch.rand(4, 10, generator=gen) * (i + 1) ** 2 for i in range(3)}
    order = dict(sal)  # ranking by the saliency itself: each tensor's cost is convex in k
    s, spread = 0.5, 0.3
    got = allocate_sparsity(order, sal, s, spread=spread, step=0.1)
    k_got = {n: round(f * 10) for n, f in got.items()}
    lo, hi, budget = int(10 * (s - spread)), int(10 * (s + spread)), int(s * 3 * 40) // 4
    best = min((sum(_cost(order[n], sal[n], k) for n, k in zip(sal, ks)), ks)
               for ks in itertools.product(range(lo, hi + 1), repeat=3) if sum(ks) == budget)
    assert sum(k_got.values()) == budget
    assert sum(_cost(order[n], sal[n], k_got[n]) for n in sal) == pytest.approx(best[0])
    assert k_got["t2"] < k_got["t0"]  # the most salient tensor is pruned least


def test_budget_and_bounds_hold_for_unequal_shapes() -> None:
    gen = torch.Generator().manual_seed(1)
    shapes = {"a": (8, 64), "b": (24, 16), "c": (5, 96)}
    sal = {n: torch.rand(*sh, generator=gen) for n, sh in shapes.items()}
    total = sum(r * c for r, c in shapes.values())
    got = allocate_sparsity(sal, sal, 0.6, spread=0.1)
    pruned = sum(shapes[n][0] * round(f * shapes[n][1]) for n, f in got.items())
    assert 0 <= pruned - int(0.6 * total) < max(r for r, _ in shapes.values())  # budget to within one row
    assert all(0.5 - 1e-9 <= f <= 0.7 + 1e-9 for f in got.values())


def test_spread_zero_is_uniform_pruning() -> None:
    sal = {"a": torch.rand(4, 20), "b": torch.rand(6, 20)}
    assert allocate_sparsity(sal, sal, 0.5, spread=0.0) == {"a": 0.5, "b": 0.5}


def test_bad_spread_is_refused() -> None:
    with pytest.raises(EsaError, match="spread"):
        allocate_sparsity({"a": torch.rand(2, 4)}, {"a": torch.rand(2, 4)}, 0.5, spread=1.5)
