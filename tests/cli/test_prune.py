"""`esa prune` end to end on tiny-llama: result files, criterion lines, saved model, one-line errors."""

from __future__ import annotations

import json

import pytest


def test_prune_end_to_end(esa, tmp_path) -> None:
    out = tmp_path / "out"
    result = esa("prune", "--model", "tiny-llama", "--score", "magnitude,act_mag,sparsegpt", "--sparsity", "0.7",
                 "--pattern", "unstructured,2:4", "--max-samples", "4", "--eval-samples", "2", "--seq-len", "32",
                 "--save-plots", "--out-dir", str(out))
    assert result.code == 0, result.err
    data = json.loads((out / "prune_results.json").read_text())
    assert len(data["rows"]) == 6 and data["mode"] == "one-shot"
    assert {r["score"] for r in data["rows"]} == {"magnitude", "act_mag", "sparsegpt"}
    assert all(abs(r["achieved_sparsity"] - r["sparsity"]) < 0.02 for r in data["rows"])  # floor(s·32) per row
    assert len(data["criterion"]) == 4 and ("PASS" in result.out or "FAIL" in result.out)
    assert (out / "prune_results.csv").exists() and (out / "plots" / "prune_ppl.png").exists()
    assert "one-shot" in result.out


def test_save_model_is_loadable(esa, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    result = esa("prune", "--model", "tiny-llama", "--score", "act_mag", "--pattern", "2:4", "--sequential",
                 "--max-samples", "4", "--eval-samples", "2", "--seq-len", "32", "--save-model", "pruned",
                 "--out-dir", str(out))
    assert result.code == 0, result.err
    assert "sequential" in result.out
    model = AutoModelForCausalLM.from_pretrained(out / "pruned")
    weight = model.get_parameter("model.layers.0.mlp.down_proj.weight")
    assert ((weight == 0).view(weight.shape[0], -1, 4).sum(-1) == 2).all()
    provenance = json.loads((out / "pruned" / "pruning.json").read_text())
    assert provenance["score"] == "act_mag" and provenance["mode"] == "sequential" and provenance["calibration"]


@pytest.mark.parametrize("args,match", [
    (["--sparsity", "1.0"], "strictly between"),
    (["--sparsity", "0"], "strictly between"),
    (["--pattern", "4:2"], "0 < N < M"),
    (["--pattern", "3:5"], "multiple of M=5"),
    (["--protect-topk", "100000000"], "protecting"),
    (["--score", "nope"], "unknown score"),
    (["--save-model", "/abs/path"], "inside the run directory"),
])
def test_bad_input_one_line_no_output(esa, tmp_path, args, match) -> None:
    out = tmp_path / "out"
    result = esa("prune", "--model", "tiny-llama", "--max-samples", "2", "--eval-samples", "1", "--seq-len", "16",
                 *args, "--out-dir", str(out))
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("esa: error:") and match in lines[0], result.err
    assert not out.exists()
