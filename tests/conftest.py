"""Run the `esa` console entry point in-process and capture what a user would see."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from esa.cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def esa(capsys, monkeypatch):
    def run(*args: str) -> Result:
        capsys.readouterr()  # drop what the test itself printed while setting up
        monkeypatch.setattr(sys, "argv", ["esa", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
