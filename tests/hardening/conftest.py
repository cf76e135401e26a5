"""Run `esa` the way the console entry point does (through `run_cli`) and check a clean failure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

TINY_RUN = ["--seq-len", "16", "--max-samples", "2", "--eval-samples", "2", "--topk", "3", "--quiet"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def assert_clean_failure(self, *needles: str) -> str:
        """Exit 2, one `esa: error:` line naming `needles`, no traceback; returns the line."""
        assert self.code == 2, (self.code, self.out, self.err)
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, self.err
        assert lines[0].startswith("esa: error: "), lines[0]
        assert "Traceback" not in self.err
        for needle in needles:
            assert needle in lines[0], lines[0]
        return lines[0]


@pytest.fixture
def esa(capsys):
    from esa.cli.errors import run_cli
    from esa.cli.main import app

    def run(*args: object) -> Result:
        capsys.readouterr()
        try:
            run_cli(app, [str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".esa-" in p.name)


@pytest.fixture
def leftovers():
    """ESA's hidden staging, lock and probe files in a folder (a clean exit leaves none)."""
    return _leftovers
