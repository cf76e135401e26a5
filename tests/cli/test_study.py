"""`esa study scaling|families` end to end on synthetic run directories, and their one-line refusals."""

from __future__ import annotations

import json

import numpy as np
from studies.study_runs import write_run


def sized_runs(tmp_path, n=5):
    return [write_run(tmp_path / f"r{i}", model_id=f"m{i}", n_params=int(s), family="ab"[i % 2], n_layers=2 + i,
                      global_stats={"max_over_median": float(2 * s ** 0.25), "gini": 0.8})
            for i, s in enumerate(np.geomspace(1e4, 1e8, n))]


def test_scaling_writes_fits_and_figures(esa, tmp_path):
    out = tmp_path / "study"
    result = esa("study", "scaling", *sized_runs(tmp_path), "--quantity", "max_over_median", "-q", "-o", out)
    assert result.code == 0, result.err
    (fit,) = json.loads((out / "scaling.json").read_text())["fits"]
    assert fit["quantity"] == "max_over_median" and abs(fit["alpha"] - 0.25) < 1e-9
    assert (out / "plots" / "scaling.png").is_file()
    assert "alpha 0.25" in result.out and "PASS" in result.out


def test_families_writes_groups_and_figures(esa, tmp_path):
    out = tmp_path / "study"
    result = esa("study", "families", *sized_runs(tmp_path), "--group-by", "family", "-q", "-o", out)
    assert result.code == 0, result.err
    saved = json.loads((out / "families.json").read_text())
    assert [g["name"] for g in saved["groups"]] == ["a", "b"] and saved["group_by"] == ["family"]
    assert (out / "plots" / "families_depth_profiles.png").is_file()


def test_bad_input_is_one_line_and_leaves_no_output(esa, tmp_path):
    (tmp_path / "not_a_run").mkdir()
    one_model = [write_run(tmp_path / f"s{i}", model_id="same", n_params=10) for i in range(3)]
    for args in (("scaling", tmp_path / "not_a_run"), ("scaling", *one_model), ("families", tmp_path / "not_a_run")):
        out = tmp_path / "study"
        result = esa("study", *args, "-q", "-o", out)
        assert result.code == 2 and result.err.startswith("esa: error:") and result.err.count("\n") == 1
        assert not out.exists()
    study = tmp_path / "made"
    assert esa("study", "scaling", *sized_runs(tmp_path / "x"), "-q", "-o", study).code == 0
    assert "output of an esa study" in esa("study", "families", study, "-q", "-o", tmp_path / "again").err


def test_mixed_metrics_are_fitted_per_metric_and_said_so(esa, tmp_path):
    runs = sized_runs(tmp_path / "a") + [write_run(tmp_path / f"m{i}", model_id=f"mag{i}", n_params=10 ** (4 + i),
                                                   metric="magnitude", global_stats={"max_over_median": 3.0 + i})
                                         for i in range(3)]
    result = esa("study", "scaling", *runs, "--quantity", "max_over_median", "-q", "-o", tmp_path / "study")
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if "max_over_median" in line]
    assert [line.split()[1] for line in lines] == ["grad_x_weight", "magnitude"]
    assert "n=5" in lines[0] and "n=3" in lines[1]
    assert "runs of 2 metrics (grad_x_weight, magnitude) are split: one fit per metric" in result.out
