"""hutchinson_diag says how much of its ranking is noise, and saves its signed mean and stderr (fix 5)."""

from __future__ import annotations

import json

from safetensors import safe_open


def test_signed_estimate_reported_and_saved(esa, tmp_path):
    out = tmp_path / "h"
    result = esa("run", "--model", "tiny-llama", "--metric", "hutchinson_diag", "--probes", "2", "--mode", "global",
                 "--topk", "20", "--max-samples", "2", "--seq-len", "16", "--eval-samples", "2", "--save-scores",
                 "--quiet", "--out-dir", str(out))
    assert result.code == 0, result.err
    stats = json.loads((out / "sensitivity_stats.json").read_text())
    check = stats["signed_estimate"]
    assert check["n_selected"] == 20 and 0.0 <= check["share_significant"] <= 1.0 and check["probes"] == 2
    assert check["selected"]["positive"] + check["selected"]["negative"] <= 20
    curvature = check["curvature"]
    assert curvature["positive"]["sum"] >= 0 >= curvature["negative"]["sum"]
    if check["share_significant"] < 0.5:
        assert any("standard errors" in n for n in stats["notes"]) and "raise --probes" in result.out
    with safe_open(str(out / "scores" / "scores_seed1337.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.mlp.down_proj.weight" in keys
    assert "signed/model.layers.0.mlp.down_proj.weight" in keys and "stderr/model.layers.0.mlp.down_proj.weight" in keys
