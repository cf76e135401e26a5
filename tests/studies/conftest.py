"""A real (tiny MoE) run directory shared by the study tests, made through the `esa` command itself so the
studies read exactly what the pipeline writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ESA = [sys.executable, "-c", "from esa.cli.main import main; main()"]
SMALL = ["--metric", "magnitude", "--max-samples", "2", "--eval-samples", "2", "--seq-len", "32", "--topk", "10", "-q"]


def esa_run(model: str, out: Path, *extra: str) -> Path:
    subprocess.run([*ESA, "run", "-m", model, *SMALL, *extra, "-o", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def tiny_mixtral_run(tmp_path_factory) -> Path:
    return esa_run("tiny-mixtral", tmp_path_factory.mktemp("study") / "tiny-mixtral")
