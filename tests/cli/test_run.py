"""`esa run` end to end on a tiny model: outputs, determinism, and what the files promise."""

from __future__ import annotations

import json

import pandas as pd
import pytest

ARGS = ["--model", "tiny-llama", "--seq-len", "32", "--max-samples", "4", "--eval-samples", "4", "--quiet"]


@pytest.mark.parametrize("metric", ["grad_x_weight", "act_mag"])
def test_same_seed_same_bytes(esa, tmp_path, metric):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        result = esa("run", *ARGS, "--metric", metric, "--mode", "global", "--topk", "25", "--seeds", "7,8",
                     "--out-dir", out)
        assert result.code == 0, result.err
    for name in ("top_weights.csv", "sensitivity_stats.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_top_weights_columns_and_order(esa, tmp_path):
    out = tmp_path / "run"
    assert esa("run", *ARGS, "--metric", "grad_x_weight", "--mode", "per_layer", "--topk", "3", "--out-dir", out).code == 0
    table = pd.read_csv(out / "top_weights.csv", keep_default_na=False)
    for column in ("rank", "param", "index", "layer", "component", "score", "weight", "seed", "token"):
        assert column in table.columns
    assert (table["score"].diff().dropna() <= 0).all()  # sorted by score
    assert table.groupby("param").size().max() == 3  # per-layer: k per tensor
    emb = table[table["component"] == "embedding"]
    assert (emb["token"] != "").all()  # embedding rows name their token
    parquet = pd.read_parquet(out / "top_weights.parquet")
    assert len(parquet) == len(table)
    # index is [row, col] in the parameter's own order: check against the model's weights
    from esa.models import load_model

    lm = load_model("tiny-llama")
    named = dict(lm.model.named_parameters())
    for row in table.itertuples():
        idx = tuple(int(i) for i in row.index.split(","))
        assert named[row.param][idx].item() == pytest.approx(row.weight, rel=1e-6, abs=1e-12)


def test_manifest_records_protocol(esa, tmp_path):
    out = tmp_path / "run"
    assert esa("run", *ARGS, "--metric", "magnitude", "--topk", "2", "--seeds", "1,2", "--out-dir", out).code == 0
    manifest = json.loads((out / "experiment_manifest.json").read_text())
    for key in ("started_at", "finished_at", "timings_s", "environment", "model", "data"):
        assert key in manifest
    for seed in ("1", "2"):
        windows = manifest["data"][seed]
        assert windows["calib_offsets"] and windows["eval_offsets"]
        assert not set(windows["calib_offsets"]) & set(windows["eval_offsets"])
    assert manifest["environment"]["torch"]
    config = json.loads((out / "config.json").read_text())
    assert config["metric"] == "magnitude" and config["data"]["seeds"] == [1, 2]


def test_baseline_prints_ppl(esa, tmp_path):
    out = tmp_path / "bl"
    result = esa("baseline", "--model", "tiny-llama", "--preset", "smoke", "--seeds", "1,2", "--quiet", "--out-dir", out)
    assert result.code == 0, result.err
    assert "PPL" in result.out and "accuracy" in result.out
    baseline = json.loads((out / "baseline.json").read_text())
    assert baseline["fixed"]["ppl"] > 1 and len(baseline["seeds"]) == 2


def test_help_reads_well(esa):
    result = esa("--help")
    assert result.code == 0
    for command in ("baseline", "run", "compare", "superweights", "plot", "report", "plan", "models"):
        assert command in result.out
    run_help = esa("run", "--help").out
    for flag in ("--metric", "--mode", "--topk", "--max-samples", "--seeds", "--stability-check", "--dtype",
                 "--save-plots", "--out-dir", "--verbose", "--weight-analysis", "--architecture-analysis",
                 "--seq-len", "--batch-size", "--probes", "--dataset", "--perturb", "--controls"):
        assert flag in run_help, flag
