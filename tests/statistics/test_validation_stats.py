"""Criteria from a plain table: undecidable comparisons are N/A, never PASS (fix 1 of the core issue)."""

from __future__ import annotations

import math

import pandas as pd

from esa.artifacts import schema
from esa.statistics.validation import Criterion, compare_at_least, summarize


def table(target: list[float], random_: list[float], bottom: list[float]) -> pd.DataFrame:
    rows = []
    for set_name, values in (("target", target), ("random_k", random_), ("bottom_k", bottom)):
        for trial, d in enumerate(values):
            rows.append({"perturbation": "bit_flip", "scale": 1.0, "set": set_name, "trial": trial, "seed": 1, "k": 10,
                         "n_weights": 10, "ppl": 20.0 + d, "accuracy": 0.3, "delta_ppl": d, "delta_accuracy": 0.0,
                         "n_changed": 10, "n_nan": 0, "n_inf": 0, "bit_flips": {}})
    return pd.DataFrame(rows)


def by_name(entry: dict) -> dict[str, dict]:
    return {c["name"]: c for c in entry["criteria"]}


def test_inf_against_inf_is_not_a_pass():
    inf = math.inf
    entry = summarize(table([inf] * 3, [inf] * 5, [0.0] * 3), seed=1)[0]
    crit = by_name(entry)
    for name in (schema.SEPARATION_3X, schema.SEPARATION_5X):
        assert crit[name]["passed"] is None
        assert "both groups break the model" in crit[name]["reason"]
        assert "non-finite in 5 of 5 random_k trials" in crit[name]["reason"]
        assert schema.criterion_label(crit[name]) == "N/A"
    # the robust comparison: equal broken shares, medians inf vs inf -> undecidable too
    assert crit["robustness"]["passed"] is None


def test_robust_criterion_uses_broken_share():
    inf = math.inf
    entry = summarize(table([inf] * 3, [inf, 1.0, 2.0, 1.0, inf], [0.0] * 3), seed=1)[0]
    crit = by_name(entry)
    assert crit[schema.SEPARATION_3X]["passed"] is None
    assert crit["robustness"]["passed"] is True  # 3/3 broken vs 2/5


def test_nan_everywhere_is_na():
    nan = math.nan
    entry = summarize(table([nan] * 2, [nan] * 4, [nan] * 2), seed=1)[0]
    crit = by_name(entry)
    assert all(c["passed"] is None for n, c in crit.items() if n != "robustness"), crit
    assert entry["tests"]["p_target_gt_random"] is None


def test_inf_against_finite_is_an_ordinary_comparison():
    entry = summarize(table([math.inf], [1.0, 2.0, 3.0, 1.5], [0.0]), seed=1)[0]
    crit = by_name(entry)
    assert crit[schema.SEPARATION_5X]["passed"] is True and "robustness" not in crit


def test_finite_values_unchanged_rules():
    entry = summarize(table([10.0], [1.0, 2.0, 1.0], [0.1]), seed=1)[0]
    crit = by_name(entry)
    assert crit[schema.IMPACT]["passed"] is True
    assert crit[schema.SEPARATION_5X]["passed"] is True
    assert crit[schema.HIERARCHY_3X]["passed"] is True
    assert isinstance(Criterion(**entry["criteria"][0]), Criterion)


def test_compare_at_least():
    assert compare_at_least(math.inf, 2.0, 3) == (True, "")
    assert compare_at_least(2.0, math.inf, 3) == (False, "")
    assert compare_at_least(math.inf, math.inf, 3)[0] is None
    assert compare_at_least(math.nan, 1.0, 3)[0] is None
