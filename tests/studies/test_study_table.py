"""The run table copies saved numbers, derives facts by its stated rules, and leaves NaN where a run holds nothing."""

from __future__ import annotations

import json
import math

import pytest
from studies.study_runs import write_run

from esa.errors import EsaError
from esa.studies import run_table


def test_saved_numbers_are_copied_and_missing_ones_are_nan(tmp_path):
    a = write_run(tmp_path / "a", model_id="m-a", n_params=1000,
                  global_stats={"max_over_median": 50.0, "gini": 0.7, "top_share_0.1%": 0.2},
                  component_mass={"embedding": 1.0, "attention": 3.0, "mlp": 1.0, "lm_head": 0.0},
                  perturbation={"target": 2.0, "random_k": 0.5, "bottom_k": 0.25})
    b = write_run(tmp_path / "b", model_id="m-b", n_params=2000, metric=None)
    t = run_table([a, b])
    ra, rb = t.iloc[0], t.iloc[1]
    assert (ra["max_over_median"], ra["gini"], ra["top_share_0.1%"]) == (50.0, 0.7, 0.2)
    assert ra["mass_share_attention"] == pytest.approx(3 / 5)
    assert ra["attention_vs_mlp"] == pytest.approx(3.0)
    assert ra["delta_ppl_rel:sign_flip@1:k10"] == pytest.approx(2.0 / 10.0)
    assert ra["ratio_target_random:sign_flip@1:k10"] == pytest.approx(4.0)
    assert ra["ratio_random_bottom:sign_flip@1:k10"] == pytest.approx(2.0)
    assert math.isnan(ra["max_over_mean"])  # not saved: NaN, never invented
    assert all(math.isnan(rb[q]) for q in ("max_over_median", "gini", "delta_ppl_rel:sign_flip@1:k10"))
    assert math.isnan(ra["n_superweights"]) and math.isnan(ra["width"])


def test_derived_model_facts_follow_their_rules(tmp_path):
    comps = {"embedding": 1.0, "attention": 1.0, "router": 1.0, "expert": 1.0, "lm_head": 1.0}
    moe = write_run(tmp_path / "moe", model_id="Org/Tiny-MoE-Instruct", n_params=600, component_mass=comps,
                    extra_summary={"n_experts": 4, "experts_per_token": 2})
    t = run_table([moe]).iloc[0]
    # params_by_component: n_params // 6 = 100 each for embedding, attention, router, expert, lm_head
    assert t["n_nonembedding"] == 600 - 200
    assert t["n_active"] == 600 - 100 + 100 * 2 / 4
    assert bool(t["moe"]) and bool(t["instruction_tuned"]) and t["kind"] == "moe/instruct"


def test_superweights_are_counted_with_strength_and_placement(tmp_path):
    sw = [{"layer": 3, "expert": None, "param": "p", "index": "1,2", "delta_ppl": 90.0, "ppl_baseline": 10.0,
           "is_super_weight": True},
          {"layer": 1, "expert": None, "param": "q", "index": "0,0", "delta_ppl": 0.0, "ppl_baseline": 10.0,
           "is_super_weight": False}]
    t = run_table([write_run(tmp_path / "r", model_id="m", n_params=10, n_layers=4, superweights=sw)]).iloc[0]
    assert t["n_superweights"] == 1 and t["superweight_strength_max"] == pytest.approx(9.0)
    assert json.loads(t["superweights"])[0]["relative_depth"] == pytest.approx(1.0)


def test_a_directory_that_is_not_a_run_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EsaError, match="not an ESA run directory") as err:
        run_table([tmp_path / "empty"])
    assert "\n" not in str(err.value)


def test_real_tiny_run_manifest_carries_the_model_facts(tiny_mixtral_run):
    summary = json.loads((tiny_mixtral_run / "experiment_manifest.json").read_text())["model"]
    assert {k: summary[k] for k in ("hidden_size", "vocab_size", "n_experts", "experts_per_token",
                                    "instruction_tuned")} == {"hidden_size": 32, "vocab_size": 259, "n_experts": 4,
                                                              "experts_per_token": 2, "instruction_tuned": False}
    assert max(summary["n_nonembedding"], summary["n_active"]) < summary["n_params"]
    t = run_table([tiny_mixtral_run]).iloc[0]
    assert (t["width"], t["vocab_size"], t["kind"], t["n_experts"], t["experts_per_token"]) == (32, 259, "moe/base", 4, 2)
    assert (t["n_active"], t["n_nonembedding"]) == (summary["n_active"], summary["n_nonembedding"])
    assert t["instruction_tuned_source"] == summary["instruction_tuned_source"]
    assert t["metric"] == "magnitude" and t["max_over_median"] > 1


def test_recorded_facts_win_over_the_model_config_and_the_name(tmp_path):
    facts = {"n_nonembedding": 7, "n_active": 9, "hidden_size": 999, "vocab_size": 5, "n_experts": None,
             "experts_per_token": None, "instruction_tuned": True, "instruction_tuned_source": "chat template"}
    # "tiny-llama" as a tiny alias would give width 32 and base from its config and name
    run = write_run(tmp_path / "r", model_id="tiny-llama", n_params=100, extra_summary={"source": "tiny", **facts})
    t = run_table([run]).iloc[0]
    assert (t["width"], t["vocab_size"], t["n_nonembedding"], t["n_active"]) == (999, 5, 7, 9)
    assert t["kind"] == "dense/instruct" and t["instruction_tuned_source"] == "chat template"
