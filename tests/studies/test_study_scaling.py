"""Scaling fits recover a planted law with honest intervals, find planted breaks only, and refuse bad input."""

from __future__ import annotations

import numpy as np
import pytest
from studies.study_runs import write_run

from esa.errors import EsaError
from esa.studies import scaling
from esa.studies.scaling import fit_breakpoint, fit_power_law

ALPHA, C, NOISE = 0.3, 3.0, 0.2  # y = C N^ALPHA exp(eps), eps ~ N(0, NOISE^2)
SIZES = np.geomspace(1e5, 1e9, 10)


def planted(rng: np.random.Generator, sizes: np.ndarray = SIZES, noise: float = NOISE) -> np.ndarray:
    return C * sizes ** ALPHA * np.exp(rng.normal(0.0, noise, len(sizes)))


def hinge(rng: np.random.Generator) -> np.ndarray:
    """Slope 0.1 below N = 1e7, 0.6 above: a threshold in the law."""
    x = np.log(SIZES)
    return np.exp(np.log(C) + 0.1 * x + 0.5 * np.maximum(0.0, x - np.log(1e7)) + rng.normal(0.0, NOISE, len(x)))


def series(tmp_path, values, sizes=SIZES, metric="grad_x_weight", prefix="m"):
    return [write_run(tmp_path / f"{prefix}{i}", model_id=f"{prefix}{i}", n_params=int(n), metric=metric,
                      global_stats={"max_over_median": float(v)}) for i, (n, v) in enumerate(zip(sizes, values))]


def test_planted_law_is_recovered_end_to_end(tmp_path):
    values = planted(np.random.default_rng(3), noise=0.05)  # 5% noise: the 20% LOO criterion can pass
    result = scaling(series(tmp_path, values), quantities=["max_over_median"])
    (fit,) = result.fits
    assert fit.n == 10 and fit.alpha_ci95[0] <= ALPHA <= fit.alpha_ci95[1]
    assert fit.alpha == pytest.approx(ALPHA, abs=0.02) and fit.r2 > 0.95
    slope, intercept = np.polyfit(np.log(SIZES[:-1]), np.log(values[:-1]), 1)  # brute-force leave-one-out
    predicted = np.exp(intercept) * SIZES[-1] ** slope
    assert fit.loo_error == pytest.approx(abs(predicted - values[-1]) / values[-1])
    assert fit.criteria == {"r2": "PASS", "loo": "PASS" if fit.loo_error <= 0.2 else "FAIL"}
    assert not fit.breakpoint["preferred"]


def test_interval_has_95_percent_coverage_over_repeated_draws():
    rng = np.random.default_rng(0)
    sizes = SIZES[:6]
    covered = [lo <= ALPHA <= hi for lo, hi in (fit_power_law(sizes, planted(rng, sizes)).alpha_ci95 for _ in range(1000))]
    assert 0.93 <= np.mean(covered) <= 0.97  # binomial sd at 1000 draws: 0.7 percentage points


def test_fit_matches_numpy_polyfit_in_log_space():
    y = planted(np.random.default_rng(1))
    slope, intercept = np.polyfit(np.log(SIZES), np.log(y), 1)
    fit = fit_power_law(SIZES, y)
    assert fit.alpha == pytest.approx(slope) and fit.c == pytest.approx(np.exp(intercept))


def test_breakpoint_is_found_where_planted_and_not_where_not():
    rng = np.random.default_rng(2)
    found = [fit_breakpoint(SIZES, hinge(rng)) for _ in range(40)]
    false = [fit_breakpoint(SIZES, planted(rng))["preferred"] for _ in range(40)]
    assert np.mean([b["preferred"] for b in found]) >= 0.85
    assert np.median([b["size"] for b in found if b["preferred"]]) == pytest.approx(1e7, rel=1.0)
    assert np.mean(false) <= 0.15  # nominal 5%


def test_two_models_give_no_fit_and_say_why(tmp_path):
    runs = series(tmp_path, [1.0, 2.0], sizes=[1e5, 1e6])
    (fit,) = scaling(runs, quantities=["max_over_median"]).fits
    assert fit.alpha is None and fit.r2 is None and "no fit is possible" in fit.reason
    assert fit.criteria == {"r2": "N/A", "loo": "N/A"}


def test_runs_of_one_model_only_are_refused_in_one_line(tmp_path):
    runs = series(tmp_path, [1.0, 2.0, 3.0], sizes=[1e5] * 3)
    with pytest.raises(EsaError, match="one model") as err:
        scaling(runs)
    assert "\n" not in str(err.value)


def test_mixed_metrics_are_split_into_one_fit_per_metric(tmp_path):
    rng = np.random.default_rng(4)
    runs = series(tmp_path, planted(rng), prefix="a") + series(tmp_path, planted(rng) * 100, metric="magnitude", prefix="b")
    fits = scaling(runs, quantities=["max_over_median"]).fits
    assert sorted((f.metric, f.n) for f in fits) == [("grad_x_weight", 10), ("magnitude", 10)]
    assert all(f.alpha_ci95[0] <= ALPHA <= f.alpha_ci95[1] for f in fits)


def test_non_positive_values_get_a_reason_not_a_fit(tmp_path):
    (fit,) = scaling(series(tmp_path, [1.0, -2.0, 3.0], sizes=[1e5, 1e6, 1e7]), quantities=["max_over_median"]).fits
    assert fit.alpha is None and "y > 0" in fit.reason


def test_unknown_size_or_quantity_is_refused(tmp_path):
    runs = series(tmp_path, [1.0, 2.0, 3.0], sizes=[1e5, 1e6, 1e7])
    with pytest.raises(EsaError, match="unknown size"):
        scaling(runs, size="width")
    with pytest.raises(EsaError, match="no run holds"):
        scaling(runs, quantities=["nonsense"])
