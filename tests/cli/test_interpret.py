"""`esa interpret` end to end on tiny-llama: from a run directory and from --weight; one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

TINY = ["--max-samples", "2", "--seq-len", "16", "--batch-size", "2", "--control-trials", "1"]
DOWN = "model.layers.0.mlp.down_proj.weight"


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"model": "tiny-llama"}}))
    pd.DataFrame([{"seed": 1, "rank": 1, "param": DOWN, "index": "3,9", "score": 2.0},
                  {"seed": 1, "rank": 2, "param": "model.embed_tokens.weight", "index": "101,3", "score": 1.0}]
                 ).to_csv(run / "top_weights.csv", index=False)
    return run


@pytest.fixture
def probes(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": p, "answer": a}) for p, a in
                              [("Snow is", " white"), ("Two plus two is", " four"), ("The sky is", " blue")]))
    return path


def test_interpret_run_dir(esa, tmp_path, run_dir, probes) -> None:
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    result = esa("interpret", str(run_dir), "--probes", str(probes), *TINY, "--out-dir", str(out))
    assert result.code == 0, result.err
    data = json.loads((out / "interpret.json").read_text())
    assert data["model_id"] == "tiny-llama" and len(data["weights"]) == 2
    assert [w["source"] for w in data["weights"]] == ["top-k", "top-k"]
    assert data["knowledge"]["by_layer"]["facts"][0]["prompt"] == "Snow is"
    assert (out / "experiment_manifest.json").exists()
    assert "PASS" in result.out or "FAIL" in result.out
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # the run is only read


def test_interpret_weight_flag(esa, tmp_path) -> None:
    out = tmp_path / "out"
    result = esa("interpret", "--model", "tiny-llama", "--weight", f"{DOWN}[5,7]", "--no-knowledge", *TINY,
                 "--out-dir", str(out))
    assert result.code == 0, result.err
    data = json.loads((out / "interpret.json").read_text())
    assert [w["label"] for w in data["weights"]] == [f"{DOWN}[5,7]"] and data["knowledge"] is None


def _one_line_error(result, out, match):
    assert result.code == 2, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("esa: error:") and match in lines[0], result.err
    assert not out.exists()


def test_run_without_selected_weights(esa, tmp_path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"model": "tiny-llama"}}))
    out = tmp_path / "out"
    _one_line_error(esa("interpret", str(run), *TINY, "--out-dir", str(out)), out, "has no selected weights")


@pytest.mark.parametrize("args, match", [
    (["--weight", "model.layers.0.mlp.down_proj.weight"], "is not 'param[row,col]'"),
    (["--weight", f"{DOWN}[99,0]"], "outside"),
    ([], "nothing to interpret"),
])
def test_bad_input_one_line_no_output(esa, tmp_path, args, match) -> None:
    out = tmp_path / "out"
    _one_line_error(esa("interpret", "--model", "tiny-llama", *args, *TINY, "--out-dir", str(out)), out, match)


def test_malformed_probe_file(esa, tmp_path, run_dir) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Snow is", "answer": " white"}\n{oops\n')
    out = tmp_path / "out"
    _one_line_error(esa("interpret", str(run_dir), "--probes", str(bad), *TINY, "--out-dir", str(out)), out,
                    "line 2 is not JSON")


def test_empty_answer(esa, tmp_path, run_dir) -> None:
    bad = tmp_path / "empty.jsonl"
    bad.write_text('{"prompt": "Snow is", "answer": ""}\n')
    out = tmp_path / "out"
    _one_line_error(esa("interpret", str(run_dir), "--probes", str(bad), *TINY, "--out-dir", str(out)), out,
                    "tokenises to nothing")
