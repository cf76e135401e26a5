"""run_baseline and the presets: fixed set, seeded draws, spread across seeds."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace

import pytest

from esa.data import load_corpus, make_windows
from esa.errors import EsaError
from esa.evaluation import PRESETS, evaluate, run_baseline
from esa.evaluation.baseline import EVAL_POOL_FACTOR
from esa.models.tiny import BOS, build_tiny_model, byte_tokenizer


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("builtin", byte_tokenizer(), max_chars=6000)


@pytest.fixture(scope="module")
def model():
    return build_tiny_model("tiny-llama")


def test_presets_resolve_documented_lengths():
    assert (PRESETS["smoke"].resolve_seq_len(256), PRESETS["smoke"].n_eval) == (128, 4)
    assert (PRESETS["standard"].resolve_seq_len(8192), PRESETS["standard"].n_eval) == (512, 32)
    extended = PRESETS["extended"]
    assert [extended.resolve_seq_len(c) for c in (2048, 8192, None)] == [2048, 4096, 4096]


@pytest.mark.parametrize("bos_id", [None, BOS])
def test_fixed_and_seed_results_equal_direct_evaluation(corpus, model, bos_id):
    report = run_baseline(model, corpus, "smoke", seq_len=64, seeds=[0, 1, 2], bos_id=bos_id, max_seq_len=256)
    ws = make_windows(corpus, 64, 0, 4, seed=0, bos_id=bos_id)
    direct = evaluate(model, ws)
    assert report["fixed"]["offsets"] == list(ws.eval_offsets)
    assert report["fixed"]["ppl"] == pytest.approx(direct.ppl, rel=1e-9)
    n = ws.protocol_info["n_aligned_windows"]
    pool = [ws.span * i for i in range(n - 4 * EVAL_POOL_FACTOR, n)]
    assert report["pool_offsets"] == pool
    for entry in report["seeds"]:
        offsets = entry["offsets"]
        assert len(offsets) == 4 and offsets == sorted(set(offsets)) and set(offsets) <= set(pool)
        alone = evaluate(model, replace(ws, eval_offsets=tuple(offsets)))
        assert entry["ppl"] == pytest.approx(alone.ppl, rel=1e-9)
        assert entry["accuracy"] == pytest.approx(alone.accuracy, abs=1e-12)
    json.dumps(report)


def test_seeds_are_deterministic_and_distinct(corpus, model):
    a = run_baseline(model, corpus, "smoke", seq_len=32, seeds=[0, 1])
    b = run_baseline(model, corpus, "smoke", seq_len=32, seeds=[0, 1])
    assert a == b
    assert a["seeds"][0]["offsets"] != a["seeds"][1]["offsets"]


def test_spread_statistics(corpus, model):
    report = run_baseline(model, corpus, "smoke", seq_len=32, n_eval=3, seeds=[4, 5, 6, 7])
    ppls = [r["ppl"] for r in report["seeds"]]
    spread = report["across_seeds"]["ppl"]
    assert report["across_seeds"]["n_seeds"] == 4
    assert spread["mean"] == pytest.approx(statistics.fmean(ppls))
    assert spread["std"] == pytest.approx(statistics.stdev(ppls))
    assert (spread["min"], spread["max"]) == (min(ppls), max(ppls))
    single = run_baseline(model, corpus, "smoke", seq_len=32, n_eval=3, seeds=[4])
    assert single["across_seeds"]["ppl"]["std"] is None
    assert run_baseline(model, corpus, "smoke", seq_len=32, seeds=[])["across_seeds"] is None


def test_small_corpus_caps_pool_and_eval(model):
    tiny = load_corpus("builtin", byte_tokenizer(), max_chars=200)
    report = run_baseline(model, tiny, "smoke", seq_len=64, n_eval=5, seeds=[0])
    assert report["n_eval_used"] == 3 and report["n_eval_requested"] == 5
    assert report["pool_offsets"] == [0, 64, 128] == report["seeds"][0]["offsets"]


def test_user_errors(corpus, model):
    with pytest.raises(EsaError, match="unknown preset 'huge'"):
        run_baseline(model, corpus, "huge")
    with pytest.raises(EsaError, match="--eval-samples must be at least 1"):
        run_baseline(model, corpus, "smoke", n_eval=0)
    with pytest.raises(EsaError, match="exceeds the model's context of 64"):
        run_baseline(model, corpus, "smoke", max_seq_len=64)
