"""Run directories given to compare / plot / report: a damaged file is named in one line (exit 2, no
traceback, nothing written); runs of different models are compared with a one-line warning, no Spearman."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from esa.artifacts.reader import read_run_json, read_run_table
from esa.errors import EsaError

HEADER = "seed,rank,param,index,layer,component,score,weight,token\n"
ROWS = "".join(f"1,{i + 1},model.layers.0.mlp.up_proj.weight,{i},3,0,mlp,{1.0 / (i + 1)},0.5,\n".replace(f",{i},3,", f",\"{i},3\",")
               for i in range(5))


def make_run(path: Path, model: str = "tiny-llama", metric: str = "magnitude", rows: str = ROWS) -> Path:
    """A finished `esa run` directory, as small as the readers accept."""
    path.mkdir(parents=True)
    (path / "experiment_manifest.json").write_text(json.dumps({"command": "run", "model": {"model_id": model}}))
    (path / "config.json").write_text(json.dumps({"model": {"model": model}, "metric": metric, "mode": "per_layer", "topk": 5}))
    (path / "sensitivity_stats.json").write_text(json.dumps({"metric": metric, "mode": "per_layer", "k": 5}))
    (path / "top_weights.csv").write_text(HEADER + rows)
    return path


DAMAGE = {
    "empty csv": ("top_weights.csv", b"", "is empty"),
    "header-only csv": ("top_weights.csv", HEADER.encode(), "header but no rows"),
    "binary csv": ("top_weights.csv", bytes(range(256)), "binary"),
    "csv without score": ("top_weights.csv", b"seed,param,index\n1,a,\"1,2\"\n", "lacks the column score"),
    "csv with a text score": ("top_weights.csv", (HEADER + ROWS.replace("0.5,", "0.5,", 1).replace(",1.0,", ",high,", 1)).encode(), "not a number"),
    "csv with a bad index": ("top_weights.csv", (HEADER + ROWS.replace('"0,3"', '"zero,3"', 1)).encode(), "not a weight index"),
    "binary json": ("config.json", b"\x89PNG\r\n\x1a\n\x00\xff", "binary"),
    "empty json": ("config.json", b"", "is empty"),
    "json list": ("config.json", b"[1, 2, 3]", "JSON list, not an object"),
    "wrongly typed field": ("config.json", b'{"metric": "magnitude", "topk": "five"}', "topk"),
    "manifest a number": ("experiment_manifest.json", b"42", "JSON int"),
}


@pytest.mark.parametrize("command", ["compare", "report", "plot"])
@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_run_directory(esa, tmp_path, command, case):
    name, content, needle = DAMAGE[case]
    good = make_run(tmp_path / "good")
    bad = make_run(tmp_path / "bad")
    (bad / name).write_bytes(content)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    args = {"compare": ["compare", good, bad, "--out", tmp_path / "cmp.json"], "report": ["report", bad],
            "plot": ["plot", bad]}[command]
    esa(*args).assert_clean_failure(str(bad / name), needle)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing changed


def test_not_a_run_directory(esa, tmp_path):
    (tmp_path / "empty").mkdir()
    esa("compare", tmp_path / "empty", tmp_path / "empty").assert_clean_failure("not an ESA run directory")


def test_compare_out_is_a_directory(esa, tmp_path):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    (tmp_path / "outdir").mkdir()
    esa("compare", a, b, "--out", tmp_path / "outdir").assert_clean_failure("is a directory")
    assert list((tmp_path / "outdir").iterdir()) == []


def test_compare_of_different_models_warns_in_one_line(esa, tmp_path, caplog):
    a = make_run(tmp_path / "a", model="tiny-llama")
    b = make_run(tmp_path / "b", model="tiny-mistral", metric="grad_x_weight")
    with caplog.at_level("WARNING", logger="esa"):
        result = esa("compare", a, b, "--out", tmp_path / "cmp.json")
    assert result.code == 0, result.err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "different models" in warnings[0] and "tiny-mistral" in warnings[0]
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert report["models"] == ["tiny-llama", "tiny-mistral"]
    assert all(p["spearman"] is None for p in report["pairs"])


def test_compare_of_the_same_model_and_other_metrics_is_quiet(esa, tmp_path, caplog):
    a = make_run(tmp_path / "a", metric="magnitude")
    b = make_run(tmp_path / "b", metric="grad_x_weight")
    with caplog.at_level("WARNING", logger="esa"):
        result = esa("compare", a, b)
    assert result.code == 0 and result.err.strip() == "", result.err
    assert not caplog.records
    assert "1.000" in result.out


def test_reader_types_columns(tmp_path):
    run = make_run(tmp_path / "run")
    table = read_run_table(run / "top_weights.csv")
    assert table["seed"].dtype == "int64" and table["score"].dtype == "float64"
    assert table["index"].tolist()[0] == "0,3" and table["token"].tolist()[0] == ""
    assert read_run_json(run / "baseline.json") is None
    with pytest.raises(EsaError, match="is missing"):
        read_run_json(run / "baseline.json", required=True)
    pd.testing.assert_frame_equal(table, read_run_table(run / "top_weights.csv"))
