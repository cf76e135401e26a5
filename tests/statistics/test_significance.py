"""Significance helpers against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from esa.statistics import bootstrap_ci, empirical_p_greater, mann_whitney_greater, ratio


def test_bootstrap_is_deterministic_and_sane():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    lo, hi = bootstrap_ci(values, n_boot=2000, seed=3)
    assert (lo, hi) == bootstrap_ci(values, n_boot=2000, seed=3)
    assert (lo, hi) != bootstrap_ci(values, n_boot=2000, seed=4)
    assert min(values) <= lo < np.mean(values) < hi <= max(values)
    assert bootstrap_ci([2.5, 2.5, 2.5]) == (2.5, 2.5)
    assert bootstrap_ci([7.0]) == (7.0, 7.0)


def test_bootstrap_matches_a_direct_resampling():
    values = np.array([0.3, 1.1, 0.7, 2.9])
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, 4, size=(500, 4))].mean(axis=1)
    want = tuple(np.quantile(means, [0.05, 0.95]))
    assert bootstrap_ci(values, n_boot=500, alpha=0.1, seed=0) == pytest.approx(want)


def test_empirical_p_counts_the_target_once():
    assert empirical_p_greater(5.0, [1.0, 2.0, 3.0, 6.0]) == 2 / 5
    assert empirical_p_greater(5.0, [1.0, 5.0]) == 2 / 3  # ties count against the target
    assert empirical_p_greater(9.0, [1.0] * 19) == 0.05  # the floor: 1 / (n + 1)
    assert empirical_p_greater(9.0, []) == 1.0


def test_mann_whitney_exact_small_case():
    u, p = mann_whitney_greater([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    assert u == 9.0 and p == pytest.approx(1 / 20)  # complete separation: 1 / C(6, 3)
    u, p = mann_whitney_greater([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert u == 0.0 and p == pytest.approx(1.0)
    assert mann_whitney_greater([1.0, 2.0], [3.0, 4.0, 5.0]) is None


@pytest.mark.parametrize("a, b, want", [
    (6.0, 3.0, 2.0),
    (0.0, 3.0, 0.0),
    (1.0, 0.0, math.inf),
    (0.0, 0.0, None),
    (-1.0, 0.0, None),
    (2.0, -1.0, None),
    (float("nan"), 1.0, None),
])
def test_ratio(a, b, want):
    assert ratio(a, b) == want
