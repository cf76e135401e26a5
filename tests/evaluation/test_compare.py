"""compare_baselines: one row per model under one protocol, with the phase-1 verdicts."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from esa.data import load_corpus
from esa.errors import EsaError
from esa.evaluation import run_baseline
from esa.evaluation.compare import FAIL, NA, PASS, compare_baselines, phase1_criteria
from esa.models import load_model

MC = str(Path(__file__).resolve().parents[1] / "tasks" / "facts_mc.yaml")
OPTIONS = dict(dataset="builtin", max_chars=3000, preset="smoke", seq_len=48, n_eval=3)


def test_rows_equal_one_baseline_per_model():
    loaded = []
    rows = compare_baselines(["tiny-llama", "tiny-gptneox"], lambda s: loaded.append(s) or load_model(s),
                             seeds=[0, 1, 2], **OPTIONS)
    assert loaded == ["tiny-llama", "tiny-gptneox"] and [r.model for r in rows] == loaded
    for row in rows:
        lm = load_model(row.model)
        corpus = load_corpus("builtin", lm.tokenizer, max_chars=3000)
        direct = run_baseline(lm.model, corpus, "smoke", seq_len=48, n_eval=3, seeds=[0, 1, 2], tokenizer=lm.tokenizer)
        assert row.ppl == direct["fixed"]["ppl"] and row.bits_per_byte == direct["fixed"]["bits_per_byte"]
        assert (row.family, row.n_params) == (lm.family, lm.n_params)
        ppls = [s["ppl"] for s in direct["seeds"]]
        assert row.ppl_seed_cv == pytest.approx(statistics.stdev(ppls) / statistics.fmean(ppls), rel=1e-12)
        assert row.criteria["accuracy_above_99pct_production"] == FAIL  # random weights predict nothing
        assert row.criteria["finite_loss"] == PASS and row.tasks is None
    json.dumps([r.to_dict() for r in rows])


def test_tasks_and_single_seed():
    pytest.importorskip("lm_eval")
    (row,) = compare_baselines(["tiny-llama"], load_model, seeds=[0], tasks=[MC], limit=4, batch_size=4, **OPTIONS)
    assert row.criteria["ppl_seed_cv_below_5pct"] == NA and row.ppl_seed_cv is None
    assert set(row.task_scores) == {"esa_facts_mc"} and row.tasks["n_items"] == {"esa_facts_mc": 4}


def fake_baseline(accuracy, seed_ppls, nll=1.0):
    std = statistics.stdev(seed_ppls) if len(seed_ppls) > 1 else None
    return {"fixed": {"accuracy": accuracy, "mean_nll": nll},
            "across_seeds": {"ppl": {"mean": statistics.fmean(seed_ppls), "std": std}}}


def test_phase1_thresholds():
    good = phase1_criteria(fake_baseline(0.995, [10.0, 10.1, 9.9]))
    assert set(good.values()) == {PASS}
    middling = phase1_criteria(fake_baseline(0.97, [10.0, 12.0, 8.0]))
    assert middling == {"ppl_seed_cv_below_5pct": FAIL, "accuracy_above_99pct_production": FAIL,
                        "accuracy_above_96pct_research": PASS, "finite_loss": PASS}
    assert phase1_criteria(fake_baseline(0.5, [10.0], nll=float("nan")))["finite_loss"] == FAIL


def test_bad_model_lists():
    with pytest.raises(EsaError, match="no models given"):
        compare_baselines([], load_model)
    with pytest.raises(EsaError, match="lists a model twice"):
        compare_baselines(["tiny-llama", "tiny-llama"], load_model)
