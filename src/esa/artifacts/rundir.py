"""A run directory that appears complete or not at all.

Everything a command writes goes to a hidden staging directory beside `--out-dir`; only when the
command succeeds are the files moved into place. A failed or interrupted run leaves no partial results.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

from esa.errors import EsaError

RUN_MARKER = "experiment_manifest.json"


def is_run_dir(path: Path) -> bool:
    return (Path(path) / RUN_MARKER).is_file()


class RunDir:
    """Context manager: `with RunDir(out) as stage:` write into `stage`, committed on success."""

    def __init__(self, out_dir: Path | str) -> None:
        self.out_dir = Path(out_dir).expanduser().resolve()
        self.stage: Path | None = None

    def __enter__(self) -> Path:
        parent = self.out_dir.parent
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise EsaError(f"--out-dir {self.out_dir} exists and is not a directory; choose another path")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.stage = parent / f".{self.out_dir.name}.esa-tmp-{os.getpid()}"
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage.mkdir()
        except OSError as exc:
            raise EsaError(f"cannot write to --out-dir {self.out_dir}: {exc.strerror or exc}; choose a writable path") from None
        return self.stage

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.stage is not None
        if exc_type is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            return
        try:
            self._commit()
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)

    def _commit(self) -> None:
        assert self.stage is not None
        if not self.out_dir.exists():
            os.replace(self.stage, self.out_dir)
            return
        for src in sorted(self.stage.rglob("*")):
            if src.is_dir():
                continue
            dst = self.out_dir / src.relative_to(self.stage)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
