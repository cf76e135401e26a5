"""A run directory that appears complete or not at all, and never at the cost of the user's files.

The out-dir contract (README, "Output directories"):

- a run goes into a new or empty directory; a directory holding a previous ESA run (it has
  experiment_manifest.json) is refused unless `overwrite`, and then replaced whole, never merged;
- a directory holding anything else is refused, and so is any non-empty directory that is or contains
  `/`, HOME, the current directory or a protected path (the model's directory);
- everything is written into `.NAME.esa-tmp-PID/` beside the target (same parent, so the same
  filesystem) and renamed into place on success (into an empty existing target, entry by entry with
  the manifest last, so a current directory stays the same directory); whether that rename can work is probed before the
  caller computes anything (a mount point, an immutable or read-only directory fail at `__enter__`);
- an exclusive `fcntl.flock` on `.NAME.esa-lock` beside the target stops a second concurrent run; while
  holding it, staging directories of killed runs (`.NAME.esa-tmp-PID` whose process is gone) are removed;
- a failed or interrupted run removes its staging directory and the parent folders it created; a full
  disk or the file-size limit during writes becomes an EsaError naming the out-dir.

Cost: one rename per run (two with overwrite) and one `rmtree` of the replaced run.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import resource
import shutil
from pathlib import Path
from types import TracebackType
from typing import Iterable

from esa.artifacts.schema import MANIFEST
from esa.errors import EsaError

log = logging.getLogger("esa")

RUN_MARKER = MANIFEST
STAGE_TAG = ".esa-tmp-"
# OSErrors a user fixes by freeing space or choosing another path (not bugs): one line, exit 2.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.ELOOP, errno.ENAMETOOLONG, errno.EXDEV, errno.EBUSY, errno.ENOTDIR, errno.EISDIR})
_SPACE_MARGIN = 1.05  # filesystems round up to blocks; 5% over the planned size is the slack asked for


def is_run_dir(path: Path) -> bool:
    return (Path(path) / RUN_MARKER).is_file()


def write_error(exc: OSError, where: Path | str) -> EsaError:
    """The one-line EsaError for an OSError a user can act on (full disk, size limit, permissions)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "the disk (or quota) is full; free space or write elsewhere"
    elif exc.errno == errno.EFBIG:
        hint = "a file exceeds the file-size limit (ulimit -f) or the filesystem's maximum; raise it or write elsewhere"
    else:
        hint = f"{exc.strerror or exc}; choose another path"
    name = exc.filename or where
    return EsaError(f"cannot write {name}: {hint}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _resolve(path: Path | str, what: str) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # Python 3.11 reports a symlink loop as RuntimeError
        raise EsaError(f"{what} {path} cannot be resolved ({exc}); remove the symlink loop or choose another path") from None


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


class RunDir:
    """`with RunDir(out, overwrite=..., protect=(model_dir,)) as stage:` write into `stage`; committed on success."""

    def __init__(self, out_dir: Path | str, *, overwrite: bool = False, protect: Iterable[Path | str] = ()) -> None:
        if str(out_dir).strip() == "":
            raise EsaError("--out-dir is empty; give a directory for the results")
        self.out_dir = _resolve(out_dir, "--out-dir")
        self.overwrite = overwrite
        self.protect = tuple(_resolve(p, "protected path") for p in protect if str(p).strip())
        self.stage: Path | None = None
        self._lock_fd: int | None = None
        self._lock_path = self.out_dir.parent / f".{self.out_dir.name}.esa-lock"
        self._created: list[Path] = []  # parent folders this run made, deepest last

    # ---- entering: every refusal happens here, before the caller computes anything
    def __enter__(self) -> Path:
        try:
            self._refuse_unsafe_target()
            self._make_parents()
            self._lock()
            self._remove_leftovers()
            self.stage = self.out_dir.parent / f".{self.out_dir.name}{STAGE_TAG}{os.getpid()}"
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage.mkdir()
            self._probe_rename()
        except BaseException as exc:
            self._cleanup()
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
                raise EsaError(f"cannot write to --out-dir {self.out_dir}: {exc.strerror or exc}; choose a writable path") from None
            raise
        return self.stage

    def _refuse_unsafe_target(self) -> None:
        target = self.out_dir
        if target.exists() and not target.is_dir():
            raise EsaError(f"--out-dir {target} exists and is not a directory; choose another path")
        if not target.is_dir():
            return
        try:
            entries = [p.name for p in target.iterdir()]
        except OSError as exc:
            raise EsaError(f"cannot read --out-dir {target}: {exc.strerror}; choose another path") from None
        if entries:
            guarded = [(Path("/"), "the root directory"), (Path.home().resolve(), "your home directory"),
                       (Path.cwd().resolve(), "the current directory"),
                       *((p, "the model's directory") for p in self.protect)]
            for path, what in guarded:
                if _is_within(path, target):
                    where = "is" if path == target else "contains"
                    raise EsaError(f"--out-dir {target} {where} {what} and is not empty; choose a new directory for the results")
            if not is_run_dir(target):
                raise EsaError(f"--out-dir {target} holds files that are not an ESA run; choose a new or empty directory")
            if not self.overwrite:
                raise EsaError(f"--out-dir {target} holds a previous ESA run; pass --overwrite to replace it, or choose another directory")
        if os.path.ismount(target):
            raise EsaError(f"--out-dir {target} is a mount point, which cannot be replaced by a rename; use a directory inside it")

    def _make_parents(self) -> None:
        missing = [p for p in [self.out_dir.parent, *self.out_dir.parent.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            self._created.append(folder)

    def _lock(self) -> None:
        """flock on `.NAME.esa-lock`; the file is removed on exit, so re-check the path after locking."""
        path = self._lock_path
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise EsaError(f"another ESA run is writing to {self.out_dir}; wait for it or choose another --out-dir") from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)  # the previous holder removed it after we opened it: lock the new file

    def _remove_leftovers(self) -> None:
        """Staging folders of killed runs into the same target (we hold the lock, so none is live)."""
        prefix = f".{self.out_dir.name}{STAGE_TAG}"
        for path in self.out_dir.parent.glob(f"{prefix}*"):
            pid = path.name[len(prefix):]
            if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
                continue
            log.warning("removing %s, left by an interrupted ESA run (process %s is gone)", path, pid)
            shutil.rmtree(path, ignore_errors=True)
        for path in self.out_dir.parent.glob(f".{self.out_dir.name}.esa-old-*"):
            log.warning("removing %s, a replaced run an interrupted ESA run did not finish deleting", path)
            shutil.rmtree(path, ignore_errors=True)

    def _probe_rename(self) -> None:
        """Rename a small file the way the commit will: fails now on read-only, immutable, cross-device targets."""
        assert self.stage is not None
        probe = self.stage / ".esa-probe"
        probe.write_bytes(b"esa")
        moved = self.out_dir.parent / f".{self.out_dir.name}.esa-probe-{os.getpid()}"
        try:
            os.rename(probe, moved)
            os.rename(moved, probe)
            if self.out_dir.is_dir():  # it will be renamed away: its contents must be ours to move
                inner = self.out_dir / f".esa-probe-{os.getpid()}"
                os.rename(probe, inner)
                os.rename(inner, probe)
        except OSError as exc:
            moved.unlink(missing_ok=True)
            raise EsaError(f"cannot replace --out-dir {self.out_dir} by renaming ({exc.strerror or exc}); "
                           "choose a writable directory on the same filesystem as its parent") from None
        probe.unlink()

    def check_space(self, nbytes: int, largest_file: int | None = None) -> None:
        """Refuse before heavy work when the out-dir's filesystem (or the file-size limit) cannot take `nbytes`."""
        where = self.stage or self.out_dir.parent
        free = shutil.disk_usage(where).free
        if nbytes * _SPACE_MARGIN > free:
            raise EsaError(f"the results need about {nbytes / 2**30:.2f} GiB but {where} has {free / 2**30:.2f} GiB free; "
                           "free space or choose another --out-dir")
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        biggest = largest_file if largest_file is not None else nbytes
        if limit != resource.RLIM_INFINITY and biggest > limit:
            raise EsaError(f"a result file needs about {biggest} bytes, over the file-size limit of {limit} bytes "
                           "(ulimit -f); raise the limit or save less (e.g. without --save-scores)")

    # ---- leaving
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                try:
                    self._commit()
                except OSError as err:
                    if err.errno in WRITE_ERRNOS:
                        raise write_error(err, self.out_dir) from None
                    raise
                self._created.clear()  # the run exists now: its parents stay
        finally:
            self._cleanup()
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            raise write_error(exc, self.out_dir) from None

    def _commit(self) -> None:
        """Put the stage in place: renamed to a new target; moved into an empty one (it may be the current
        directory, which must survive), manifest last; an overwritten run is moved aside, then deleted."""
        assert self.stage is not None
        if not self.out_dir.exists():
            os.rename(self.stage, self.out_dir)
            return
        entries = list(self.out_dir.iterdir())
        if not entries:
            self._move_into_empty_target()
            return
        if not (self.overwrite and is_run_dir(self.out_dir)):
            raise EsaError(f"files appeared in --out-dir {self.out_dir} during the run; nothing was written, "
                           "choose a new directory and run again")
        old = self.out_dir.parent / f".{self.out_dir.name}.esa-old-{os.getpid()}"
        os.rename(self.out_dir, old)
        try:
            os.rename(self.stage, self.out_dir)
        except BaseException:
            os.rename(old, self.out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)

    def _move_into_empty_target(self) -> None:
        assert self.stage is not None
        names = sorted((p.name for p in self.stage.iterdir()), key=lambda n: n == RUN_MARKER)
        moved: list[str] = []
        try:
            for name in names:
                os.rename(self.stage / name, self.out_dir / name)
                moved.append(name)
        except BaseException:
            for name in moved:  # back to the stage, which cleanup removes: the target stays empty
                os.rename(self.out_dir / name, self.stage / name)
            raise

    def _cleanup(self) -> None:
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage = None
        if self._lock_fd is not None:
            self._lock_path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                break  # something else was put there: keep it and its parents
        self._created.clear()
