"""benchmarks/gpu_check.py --tiny: the GPU check's code paths run on CPU and print one JSON line each."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


def test_gpu_check_tiny_prints_every_measurement(capsys) -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--tiny", "--samples", "2", "--seq-len", "16", "--topk", "20"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    kinds = [r["kind"] for r in rows]
    assert kinds == ["setup", "score", "score", "overhead", "sharded"]
    scores = {r["metric"]: r for r in rows if r["kind"] == "score"}
    assert set(scores) == {"grad_x_weight", "grad_squared"}
    for r in scores.values():
        assert r["wall_s"] > 0 and r["peak_gib"] > 0 and r["planned_peak_gib"] > 0 and r["mfu"] > 0
    assert rows[3]["esa_run_s"] > 0 and rows[3]["plain_fwd_bwd_s"] > 0
    assert rows[4]["equal"] is True and rows[4]["jaccard"] == 1.0
