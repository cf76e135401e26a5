"""Signals: a real `esa run` killed mid-computation leaves nothing behind and exits 130 / 143; SIGKILL's
leftovers are removed by the next run into the same place. Plus run_cli's exit codes, in-process."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from esa.artifacts import RunDir
from esa.cli.errors import EXIT_SIGINT, EXIT_SIGTERM, run_cli
from esa.errors import EsaError

ESA = Path(sys.executable).with_name("esa")
# Long enough that the signal lands while scoring (hundreds of windows through hutchinson's double backward).
LONG_RUN = ["run", "--model", "tiny-llama", "--metric", "hutchinson_diag", "--probes", "64", "--seq-len", "64",
            "--max-samples", "400", "--eval-samples", "2", "--seeds", "1,2,3", "--save-scores", "--quiet"]


def start_run(out: Path) -> tuple[subprocess.Popen, Path]:
    """Start `esa run` into `out` and wait until its staging directory exists (the computation has begun)."""
    proc = subprocess.Popen([str(ESA), *LONG_RUN, "--out-dir", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stage = out.parent / f".{out.name}.esa-tmp-{proc.pid}"
    while not stage.exists():
        if proc.poll() is not None:
            pytest.fail(f"esa run ended before its staging directory appeared: {proc.communicate()}")
        time.sleep(0.05)
    time.sleep(0.5)  # into the model load / scoring
    return proc, stage


@pytest.mark.skipif(not ESA.exists(), reason="needs the installed console script")
def test_sigterm_mid_run_cleans_up(tmp_path):
    """SIGTERM goes the way of Ctrl-C (same handler; SIGINT's exit code is checked in-process below)."""
    out = tmp_path / "new" / "run"
    proc, stage = start_run(out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_SIGTERM, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()][-1].startswith("esa: interrupted by")
    assert list(tmp_path.iterdir()) == []  # no stage, lock, or parent folder it created


@pytest.mark.skipif(not ESA.exists(), reason="needs the installed console script")
def test_sigkill_leftovers_removed_by_the_next_run(tmp_path, caplog):
    out = tmp_path / "run"
    proc, stage = start_run(out)
    proc.kill()
    proc.communicate(timeout=60)
    assert stage.exists()  # SIGKILL cannot clean up...
    with caplog.at_level("WARNING", logger="esa"):
        with RunDir(out):  # ...the next run into the same place does, with a note
            pass
    assert not stage.exists()
    assert any(str(proc.pid) in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# run_cli in-process: every way a command can end
demo = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
OUT: list[Path] = []


@demo.command()
def boom(kind: str) -> None:
    if kind == "esa":
        raise EsaError("the input is wrong; fix it")
    if kind == "nospace":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/scores.safetensors")
    if kind == "raise":
        raise KeyboardInterrupt
    if kind in ("int", "term"):
        with RunDir(OUT[0]) as stage:
            (stage / "scores.safetensors").write_bytes(b"x" * 100)
            os.kill(os.getpid(), signal.SIGINT if kind == "int" else signal.SIGTERM)
            time.sleep(5)
    if kind == "bug":
        raise ZeroDivisionError


@demo.command()
def ok() -> None:
    typer.echo("fine")


def call(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        run_cli(demo, list(args))
    return info.value.code


@pytest.mark.parametrize("args, code, needle", [
    (["boom", "esa"], 2, "esa: error: the input is wrong; fix it"),
    (["boom", "nospace"], 2, "esa: error: cannot write /out/scores.safetensors: the disk"),
    (["boom", "int"], EXIT_SIGINT, "interrupted by SIGINT"),
    (["boom", "raise"], EXIT_SIGINT, "interrupted by SIGINT"),
    (["boom", "term"], EXIT_SIGTERM, "interrupted by SIGTERM"),
    (["nope"], 2, "No such command"),
    (["ok"], 0, ""),
])
def test_run_cli_exit_codes(capsys, tmp_path, args, code, needle):
    OUT[:] = [tmp_path / "new" / "run"]
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert call(*args) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
    assert list(tmp_path.iterdir()) == []  # the interrupted RunDir cleaned up


def test_run_cli_keeps_tracebacks_of_bugs():
    with pytest.raises(ZeroDivisionError):
        run_cli(demo, ["boom", "bug"])
