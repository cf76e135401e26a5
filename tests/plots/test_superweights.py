"""Super-weight figure: per-layer maxima over experts, against a brute-force max."""

from __future__ import annotations

import numpy as np

from esa.plots import plot_superweights
from esa.plots.superweights import _per_layer


def test_per_layer_takes_the_largest_expert_and_keeps_missing_layers_as_nan():
    series = [{"layer": 0, "expert": 0, "input_max": 1.0}, {"layer": 0, "expert": 1, "input_max": 7.0},
              {"layer": 1, "expert": 0, "input_max": None}, {"layer": 2, "expert": 0, "input_max": "inf"}]
    layers, values = _per_layer(series, "input_max")
    assert layers.tolist() == [0, 1, 2]
    assert values[0] == 7.0 and np.isnan(values[1]) and values[2] == np.inf


def test_superweights_render_and_skip(parts, render):
    render(plot_superweights(parts["superweights"], "ctx"))
    no_candidates = {**parts["superweights"], "candidates": []}
    render(plot_superweights(no_candidates, "ctx"), "none_found")
    assert plot_superweights(None) is None
    assert plot_superweights({"series": []}) is None
