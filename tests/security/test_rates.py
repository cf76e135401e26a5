"""Wilson intervals and Leveugle sample sizes against hand-computed values and a root-finding reference."""

from __future__ import annotations

import math

import pytest
from scipy.optimize import brentq

from esa.errors import EsaError
from esa.security.rates import leveugle_sample_size, wilson, z_value


def test_wilson_hand_computed() -> None:
    # 0/10: centre = half = (z²/20) / (1 + z²/10) = 0.13877 -> [0, 0.27753]
    r = wilson(0, 10)
    assert (r.p, r.lo) == (0.0, 0.0) and r.hi == pytest.approx(0.27753, abs=1e-5)
    # 5/10: centre 0.5, half = z/(1+z²/10) * sqrt(0.025 + z²/400) = 0.26341
    r = wilson(5, 10)
    assert r.lo == pytest.approx(0.23659, abs=1e-5) and r.hi == pytest.approx(0.76341, abs=1e-5)


@pytest.mark.parametrize("x,n,conf", [(3, 40, 0.95), (81, 263, 0.99), (1, 1000, 0.9)])
def test_wilson_endpoints_solve_the_score_equation(x: int, n: int, conf: float) -> None:
    """The Wilson limits are the p where |x/n - p| = z sqrt(p(1-p)/n)."""
    z, phat = z_value(conf), x / n
    f = lambda p: (phat - p) ** 2 - z * z * p * (1 - p) / n  # noqa: E731
    r = wilson(x, n, conf)
    assert r.lo == pytest.approx(brentq(f, 1e-12, phat), abs=1e-9)
    assert r.hi == pytest.approx(brentq(f, phat, 1 - 1e-12), abs=1e-9)


def test_wilson_empty_and_bad() -> None:
    assert math.isnan(wilson(0, 0).p)
    with pytest.raises(EsaError):
        wilson(5, 3)


def test_leveugle_hand_computed() -> None:
    # N = 1e6, e = 1%, 95%: n = 1e6 / (1 + 1e-4 * 999999 / (1.95996² * 0.25)) = 9512.3 -> 9513
    assert leveugle_sample_size(1_000_000, 0.01, 0.95) == 9513
    # an effectively infinite population approaches t² / (4 e²) = 9603.6 -> 9604
    assert leveugle_sample_size(10**12, 0.01, 0.95) == 9604
    # N = 100, e = 5%: 100 / (1 + 0.0025 * 99 / 0.960365) = 79.51 -> 80
    assert leveugle_sample_size(100, 0.05, 0.95) == 80
    assert leveugle_sample_size(1, 0.05) == 1


@pytest.mark.parametrize("args", [(0, 0.01), (100, 0.0), (100, 1.5), (100, 0.01, 1.0)])
def test_leveugle_bad_input(args: tuple) -> None:
    with pytest.raises(EsaError):
        leveugle_sample_size(*args)
