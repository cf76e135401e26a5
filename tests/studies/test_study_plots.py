"""Study figures are drawn from the saved JSON (after a round trip), and are None when there is nothing to draw."""

from __future__ import annotations

import json

import numpy as np
from matplotlib.figure import Figure
from studies.study_runs import write_run

from esa.artifacts.io import _jsonable
from esa.plots import figure_bytes
from esa.plots.studies import plot_depth_profiles, plot_family_ratios, plot_scaling
from esa.studies import families, scaling


def saved(result) -> dict:
    return json.loads(json.dumps(_jsonable(result.to_dict()), allow_nan=False))


def test_figures_from_saved_results(tmp_path):
    rng = np.random.default_rng(0)
    runs = [write_run(tmp_path / f"r{i}", model_id=f"m{i}", n_params=int(n), family="ab"[i % 2], n_layers=3 + i,
                      layer_mass=list(rng.random(3 + i) + 0.1),
                      global_stats={"max_over_median": float(n ** 0.3), "gini": 0.5 + 0.01 * i})
            for i, n in enumerate(np.geomspace(1e4, 1e8, 6))]
    figures = [plot_scaling(saved(scaling(runs))), plot_depth_profiles(saved(families(runs))),
               plot_family_ratios(saved(families(runs)))]
    for fig in figures:
        assert isinstance(fig, Figure)
        assert figure_bytes(fig, "png").startswith(b"\x89PNG")
    scatter = figures[0].axes[0]
    assert len(scatter.lines[-1].get_xdata()) == 6  # one marker per run


def test_nothing_to_draw_gives_none():
    assert plot_scaling({"fits": [{"quantity": "gini", "alpha": None}]}) is None
    assert plot_depth_profiles({"groups": [], "grid": []}) is None
    assert plot_family_ratios({"groups": []}) is None
