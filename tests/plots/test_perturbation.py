"""Perturbation figures: conditions and dose-response read from the pipeline's own summary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from esa.plots import plot_dose_response, plot_perturbation
from esa.plots.perturbation import _interval, conditions, dose_response


def test_conditions_exclude_the_dose_entry_and_intervals_bracket_the_mean(parts):
    pert = parts["dose_scale"]
    entries = conditions(pert)
    assert [e["scale"] for e in entries] == [0.01, 0.1, 1.0]
    assert dose_response(pert) is not None and dose_response(parts["perturbation"]) is None
    for e in entries:
        for set_name in ("target", "random_k", "bottom_k"):
            mean, lo, hi = _interval(e, set_name)
            trials = [r["delta_ppl"] for r in pert["rows"] if r["set"] == set_name and r["scale"] == e["scale"]]
            assert math.isclose(mean, float(np.mean(trials)))
            assert lo <= mean <= hi or len(trials) == 1


def test_perturbation_and_dose_figures_render(parts, render):
    render(plot_perturbation(parts["perturbation"], "ctx"), "single")
    render(plot_perturbation(parts["dose_k"], "ctx"), "three_conditions")
    render(plot_dose_response(parts["dose_scale"], "ctx"), "dose_scale")
    render(plot_dose_response(parts["dose_k"], "ctx"), "dose_k")


def test_nonfinite_means_are_drawn_not_dropped(parts, render):
    pert = {**parts["perturbation"], "summary": [dict(e) for e in parts["perturbation"]["summary"]]}
    target = dict(pert["summary"][0]["sets"]["target"])
    target["delta_ppl"] = {"n": 3, "n_nonfinite": 3, "mean": "inf", "ci95": None}  # as atomic_write_json saves inf
    pert["summary"][0]["sets"] = {**pert["summary"][0]["sets"], "target": target}
    assert _interval(pert["summary"][0], "target")[0] == math.inf
    render(plot_perturbation(pert, "ctx"))


@pytest.mark.parametrize("pert", [None, {}, {"summary": []}])
def test_perturbation_figures_skip_without_results(pert):
    assert plot_perturbation(pert) is None
    assert plot_dose_response(pert) is None


def test_dose_response_needs_two_levels(parts):
    assert plot_dose_response(parts["perturbation"]) is None
