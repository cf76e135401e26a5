"""The README's "Use from Python" example runs exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Use from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_use_from_python_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = readme_example()
    assert "esa.validate(" in code and len(code.strip().splitlines()) <= 20
    exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "target" in out and "random_k" in out and re.search(r"k=10\s+(PASS|FAIL|N/A)", out)
    assert (tmp_path / "validation.png").stat().st_size > 1000
