"""Family comparison: depth profiles on one grid, permutation tests only where groups have >= 2 runs."""

from __future__ import annotations

import numpy as np
import pytest
from studies.study_runs import write_run

from esa.errors import EsaError
from esa.studies import families
from esa.studies.families import GRID, depth_profile


def test_depth_profile_maps_layers_to_one_grid():
    flat = depth_profile({0: 1.0, 1: 1.0, 2: 1.0})
    assert np.allclose(flat, 1.0)
    ramp = depth_profile({0: 0.0, 1: 1.0})  # densities 0 and 2 at depths 0 and 1
    assert np.allclose(ramp, 2.0 * GRID)
    assert np.isnan(depth_profile({})).all()


def test_groups_differ_significantly_only_with_enough_runs(tmp_path):
    runs = []
    for i in range(4):  # attention-heavy family a vs MLP-heavy family b, 4 runs each
        runs.append(write_run(tmp_path / f"a{i}", model_id=f"a{i}", n_params=100 + i, family="fam_a",
                              component_mass={"attention": 4.0 + 0.1 * i, "mlp": 1.0}, layer_mass=[3.0, 1.0, 1.0, 1.0]))
        runs.append(write_run(tmp_path / f"b{i}", model_id=f"b{i}", n_params=200 + i, family="fam_b",
                              component_mass={"attention": 1.0 + 0.1 * i, "mlp": 1.0}, layer_mass=[1.0, 1.0, 1.0, 3.0]))
    result = families(runs)
    assert [g.name for g in result.groups] == ["fam_a · dense/base", "fam_b · dense/base"]
    test = next(t for t in result.tests if t["quantity"] == "attention_vs_mlp")
    assert (test["n_a"], test["n_b"]) == (4, 4)
    assert test["p_value"] == pytest.approx(2 / 70)  # exact: the observed split is the most extreme of C(8,4)
    early = next(t for t in result.tests if t["quantity"] == "early_concentration")
    assert early["mean_a"] == pytest.approx(0.5) and early["mean_b"] == pytest.approx(1 / 6)
    a = result.groups[0]
    assert a.profile["mean"][0] == pytest.approx(2.0) and a.profile["mean"][-1] == pytest.approx(2 / 3)


def test_one_run_per_group_is_described_not_tested(tmp_path):
    runs = [write_run(tmp_path / "a", model_id="a", n_params=1, family="x"),
            write_run(tmp_path / "b", model_id="b", n_params=2, family="y")]
    result = families(runs)
    assert result.tests and all(t["p_value"] is None and "described, not tested" in t["note"] for t in result.tests)


def test_seed_spread_and_group_by_override(tmp_path):
    run = write_run(tmp_path / "a", model_id="a", n_params=1, component_mass={"attention": 2.0, "mlp": 1.0},
                    seed_component_mass=[{"attention": 4.0, "mlp": 1.0}])
    other = write_run(tmp_path / "b", model_id="b", n_params=2, family="other")
    result = families([run, other], group_by=["kind"])
    (group,) = result.groups
    assert group.n_runs == 2 and group.keys == {"kind": "dense/base"}
    assert group.seed_spread[str(run)] == pytest.approx({"n_seeds": 2, "mean": 3.0, "std": np.sqrt(2), "min": 2.0, "max": 4.0})
    with pytest.raises(EsaError, match="cannot group by"):
        families([run], group_by=["colour"])


def test_moe_run_reports_router_and_per_expert_shares(tiny_mixtral_run, tmp_path):
    dense = write_run(tmp_path / "dense", model_id="dense", n_params=10, top_experts=())
    result = families([tiny_mixtral_run, dense])
    moe = next(g for g in result.groups if g.keys["kind"] == "moe/base")
    shares = moe.experts["selected_share_by_expert"]
    assert set(shares) <= {"0", "1", "2", "3"} and sum(shares.values()) == pytest.approx(1.0)
    assert 0 < moe.quantities["mass_share_router"]["mean"] < 1
    dense = next(g for g in result.groups if g.keys["kind"] == "dense/base")
    assert dense.experts is None and "mass_share_router" not in dense.quantities


def test_runs_of_different_metrics_are_split_not_pooled(tmp_path):
    runs = [write_run(tmp_path / f"{m}{i}", model_id=f"{m}{i}", n_params=10 + i, metric=m)
            for m in ("grad_x_weight", "magnitude") for i in range(2)]
    result = families(runs)
    assert result.group_by == ["family", "kind", "metric"]
    assert [(g.keys["metric"], g.n_runs) for g in result.groups] == [("grad_x_weight", 2), ("magnitude", 2)]
    assert result.tests == []  # groups of different metrics are never compared
    assert families(runs[:2]).group_by == ["family", "kind"]
