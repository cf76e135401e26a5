"""The out-dir contract through a real command: replace whole with --overwrite, never the user's files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAST = ["--model", "tiny-llama", "--metric", "magnitude", "--topk", "3", "--max-samples", "2", "--seq-len", "16",
        "--eval-samples", "2", "--quiet"]


def test_overwrite_replaces_whole(esa, tmp_path):
    out = tmp_path / "run"
    assert esa("run", *FAST, "--perturb", "zero", "--trials", "2", "--out-dir", str(out)).code == 0
    assert (out / "perturbation_results.json").is_file()
    refused = esa("run", *FAST, "--out-dir", str(out))
    assert refused.code == 2 and "--overwrite" in refused.err and len(refused.err.strip().splitlines()) == 1
    assert esa("run", *FAST, "--out-dir", str(out), "--overwrite").code == 0
    assert not (out / "perturbation_results.json").exists(), "an old file must not survive a new run"


def test_cwd_with_user_files_is_refused(esa, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text('{"mine": true}')
    result = esa("run", *FAST, "--out-dir", ".")
    assert result.code == 2 and "Traceback" not in result.err
    assert json.loads((tmp_path / "config.json").read_text()) == {"mine": True}


def test_model_directory_is_refused(esa, tmp_path):
    from esa.models.tiny import build_tiny_model, byte_tokenizer

    model_dir = tmp_path / "model"
    build_tiny_model("tiny-llama").save_pretrained(model_dir)
    byte_tokenizer().save_pretrained(model_dir)
    before = (model_dir / "config.json").read_bytes()
    result = esa("run", *[a if a != "tiny-llama" else str(model_dir) for a in FAST], "--out-dir", str(model_dir),
                 "--overwrite")
    assert result.code == 2 and (model_dir / "config.json").read_bytes() == before


def test_root_is_refused(esa):
    result = esa("run", *FAST, "--out-dir", "/")
    assert result.code == 2 and not Path("/top_weights.csv").exists()


def test_seed_out_of_range(esa, tmp_path):
    result = esa("run", *FAST, "--seeds", str(2**64), "--out-dir", str(tmp_path / "x"))
    assert result.code == 2 and "--seeds" in result.err and not (tmp_path / "x").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="flock semantics")
def test_concurrent_runs_into_one_dir(tmp_path):
    out = tmp_path / "run"
    slow = [a if a != "magnitude" else "grad_x_weight" for a in FAST]
    cmd = [sys.executable, "-m", "esa.cli.main", "run", *slow, "--max-samples", "32", "--out-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = out.parent / f".{out.name}.esa-lock"
        for _ in range(600):
            if lock.exists() or first.poll() is not None:
                break
            import time

            time.sleep(0.1)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    finally:
        first.wait(timeout=600)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 2 and "Traceback" not in second.stderr
    if "previous ESA run" in second.stderr:
        pytest.skip("the first run finished before the second started (machine too fast to overlap)")
    assert "another ESA run is writing" in second.stderr
