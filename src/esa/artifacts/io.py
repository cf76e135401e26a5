"""Atomic file writes: a reader sees the old file or the complete new one, never half of one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from esa.errors import EsaError


def _umask_mode() -> int:
    """The mode a plainly created file gets (mkstemp's 0600 would hide results from co-workers)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        pq = csv_path.with_suffix(".parquet")
        fd, tmp = tempfile.mkstemp(dir=pq.parent, prefix=f".{pq.name}.", suffix=".tmp")
        os.close(fd)
        try:
            df.to_parquet(tmp, index=False)
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, pq)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
