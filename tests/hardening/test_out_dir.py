"""The out-dir contract (esa.artifacts.rundir.RunDir): refusals before any work, whole replacement, the
lock, the rename probe, write failures and leftovers of killed runs; never a partial or merged result."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import resource
from pathlib import Path

import pytest

from esa.artifacts import RunDir, atomic_write_json
from esa.artifacts.schema import MANIFEST
from esa.errors import EsaError


def finished_run(path: Path, *files: str) -> Path:
    """A directory as a finished ESA run leaves it."""
    path.mkdir(parents=True)
    (path / MANIFEST).write_text("{}")
    for name in files:
        (path / name).write_text(name)
    return path


def write_run(out: Path, *files: str, **kwargs) -> None:
    with RunDir(out, **kwargs) as stage:
        finished_run(stage / "x", *files)  # build in a subfolder, then move its files up
        for p in (stage / "x").iterdir():
            p.rename(stage / p.name)
        (stage / "x").rmdir()


def refused(out: Path, *needles: str, **kwargs) -> str:
    with pytest.raises(EsaError) as info:
        with RunDir(out, **kwargs):
            pytest.fail("the body must not run for a refused out-dir")
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_new_directory_and_its_parents(tmp_path, leftovers):
    out = tmp_path / "a" / "b" / "run"
    write_run(out, "top_weights.csv")
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "top_weights.csv"])
    assert leftovers(out.parent) == []


def test_empty_directory_is_used(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    write_run(out, "a.json")
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "a.json"])


def test_previous_run_refused_without_overwrite(tmp_path, leftovers):
    out = finished_run(tmp_path / "run", "perturbation_results.json")
    refused(out, "previous ESA run", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "perturbation_results.json"])
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_whole_never_merges(tmp_path, leftovers):
    out = finished_run(tmp_path / "run", "perturbation_results.json")
    (out / "plots").mkdir()
    (out / "plots" / "old.png").write_text("old")
    write_run(out, "top_weights.csv", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "top_weights.csv"])
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_foreign_files_refused(tmp_path, overwrite):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text("the user's own")
    refused(out, "not an ESA run", overwrite=overwrite)
    assert (out / "config.json").read_text() == "the user's own"


def test_file_as_out_dir_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    refused(tmp_path / "f", "not a directory")


def test_model_directory_refused(tmp_path):
    model = finished_run(tmp_path / "model", "config.json", "model.safetensors")  # even one that looks like a run
    refused(model, "model's directory", overwrite=True, protect=(model,))
    refused(tmp_path, "contains the model's directory", overwrite=True, protect=(model,))
    assert (model / "config.json").is_file()


def test_root_and_home_refused(tmp_path, monkeypatch):
    refused(Path("/"), "root directory", overwrite=True)
    home = finished_run(tmp_path / "home", ".bashrc")
    monkeypatch.setenv("HOME", str(home))
    refused(home, "home directory", overwrite=True)


def test_current_directory(tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    write_run(Path("."), "a.json")  # empty: fine
    refused(Path("."), "current directory", overwrite=True)  # now it holds files, even ESA's own


def test_symlink_loop_refused(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    refused(loop, "symlink loop")
    refused(loop / "sub", "symlink loop")


def test_symlink_to_directory_replaces_the_target(tmp_path):
    real = finished_run(tmp_path / "real", "old.json")
    link = tmp_path / "link"
    link.symlink_to(real)
    write_run(link, "new.json", overwrite=True)
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == sorted([MANIFEST, "new.json"])


def test_concurrent_run_is_locked_out(tmp_path):
    out = tmp_path / "run"
    with RunDir(out):
        message = refused(out, "another ESA run is writing")
        assert str(out) in message
    with RunDir(out, overwrite=True):  # released on exit
        pass


def test_lock_held_by_another_process_description(tmp_path):
    out = tmp_path / "run"
    fd = os.open(tmp_path / ".run.esa-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        refused(out, "another ESA run")
    finally:
        os.close(fd)


def test_failure_leaves_nothing_and_keeps_the_old_run(tmp_path, leftovers):
    out = finished_run(tmp_path / "deep" / "run", "old.json")
    with pytest.raises(ValueError):
        with RunDir(out, overwrite=True) as stage:
            (stage / "half.safetensors").write_bytes(b"x" * 1000)
            raise ValueError("boom")
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "old.json"])
    assert leftovers(out.parent) == []


def test_failed_run_removes_the_parents_it_created(tmp_path):
    (tmp_path / "kept").mkdir()
    out = tmp_path / "kept" / "new1" / "new2" / "run"
    with pytest.raises(KeyboardInterrupt):
        with RunDir(out):
            raise KeyboardInterrupt
    assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT])
def test_write_errors_become_one_line(tmp_path, code):
    out = tmp_path / "new" / "run"
    with pytest.raises(EsaError, match="cannot write") as info:
        with RunDir(out) as stage:
            (stage / "scores.safetensors").write_bytes(b"x")
            raise OSError(code, os.strerror(code), str(stage / "scores.safetensors"))
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_real_file_size_limit(tmp_path):
    """A write over RLIMIT_FSIZE (Python ignores SIGXFSZ, so write() fails with EFBIG) during the run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    out = tmp_path / "run"
    try:
        with pytest.raises(EsaError, match="file-size limit"):
            with RunDir(out) as stage:
                resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
                atomic_write_json(stage / "big.json", {"x": "y" * 10_000})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list(tmp_path.iterdir()) == []


def test_check_space(tmp_path, monkeypatch):
    out = tmp_path / "run"
    rd = RunDir(out)
    with rd:
        rd.check_space(1024)
        with pytest.raises(EsaError, match="GiB free"):
            rd.check_space(2**62)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        monkeypatch.setattr(resource, "getrlimit", lambda which: (1000, hard))
        with pytest.raises(EsaError, match="file-size limit"):
            rd.check_space(10_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("failing", ["EXDEV", "EPERM", "EROFS"])
def test_rename_probe_fails_before_any_work(tmp_path, monkeypatch, failing):
    """Where the final rename cannot work (cross-device, immutable, read-only), __enter__ says so."""
    real = os.rename

    def rename(src, dst):
        if ".esa-probe" in str(src) or ".esa-probe" in str(dst):
            code = getattr(errno, failing)
            raise OSError(code, os.strerror(code))
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    out = tmp_path / "new" / "run"
    refused(out, "cannot replace --out-dir", "same filesystem")
    assert list(tmp_path.iterdir()) == []


def test_mount_point_refused(tmp_path, monkeypatch):
    out = finished_run(tmp_path / "mnt", "old.json")
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == out)
    refused(out, "mount point", overwrite=True)


def test_killed_run_leftovers_are_removed_with_a_note(tmp_path, caplog):
    dead = tmp_path / ".run.esa-tmp-999999999"
    (dead / "scores").mkdir(parents=True)
    (dead / "scores" / "scores_seed1.safetensors").write_bytes(b"x" * 100)
    alive = tmp_path / f".run.esa-tmp-{os.getppid()}"  # a live process: not ours to remove
    alive.mkdir()
    other = tmp_path / ".other.esa-tmp-999999999"  # another target's: not ours either
    other.mkdir()
    with caplog.at_level(logging.WARNING, logger="esa"):
        write_run(tmp_path / "run", "a.json")
    assert not dead.exists() and alive.exists() and other.exists()
    assert any("999999999" in r.getMessage() and "interrupted" in r.getMessage() for r in caplog.records)


def test_empty_out_dir_name_refused():
    with pytest.raises(EsaError, match="--out-dir is empty"):
        RunDir("")
