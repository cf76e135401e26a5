"""Atomic file writes: a reader sees the old file or the complete new one, never half of one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from esa.artifacts.rundir import WRITE_ERRNOS, write_error
from esa.errors import EsaError


def _umask_mode() -> int:
    """The mode a plainly created file gets (mkstemp's 0600 would hide results from co-workers)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """`write(tmp)` a temp file in the same folder, then rename it over `path`.

    A directory in the way, a full disk or the file-size limit is an EsaError naming the file, and no
    temp file is left behind.
    """
    path = Path(path)
    if path.is_dir():
        raise EsaError(f"{path} is a directory; give a file path to write to")
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            raise write_error(exc, path) from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    """Plain JSON: non-finite floats become strings, since JSON has no NaN/inf."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _jsonable(obj.item())
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EsaError(f"{path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise EsaError(f"cannot read {path}: {exc}") from None


def write_table(df: pd.DataFrame, csv_path: Path, parquet: bool = True) -> None:
    """CSV for people and spreadsheets, Parquet (same rows) for pandas/polars users."""
    atomic_write_text(csv_path, df.to_csv(index=False, lineterminator="\n"))
    if parquet:
        _atomic(Path(csv_path).with_suffix(".parquet"), lambda tmp: df.to_parquet(tmp, index=False))
