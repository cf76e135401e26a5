"""Read a run directory's files with their schema checked, so a damaged file is named, never a traceback.

compare, plot and report all read through here. A check covers what the readers rely on: JSON files
are UTF-8 objects whose known fields have the right types; CSV tables have a header and at least one
row, the columns readers use, numbers where numbers belong and weight indices in "row,col" form.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd

from esa.artifacts import schema
from esa.errors import EsaError

_FIX = "re-run the command that wrote it"
# Fields a reader uses, with their JSON types; a missing field is fine, a wrongly typed one is not.
JSON_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    schema.MANIFEST: {"command": str, "model": dict, "argv": list, "timings_s": dict},
    schema.CONFIG: {"metric": str, "mode": str, "topk": int, "seeds": list, "model": dict, "data": dict},
    schema.SENSITIVITY_STATS: {"metric": str, "mode": str, "k": int},
    schema.PERTURBATION: {},
    schema.SUPERWEIGHTS: {},
    schema.BASELINE: {},
}
# Columns of top_weights.csv the readers need, by kind, and the kinds of the others it may have.
TOP_WEIGHTS_COLUMNS = {"seed": "int", "param": "str", "index": "index", "score": "float"}
TOP_WEIGHTS_OPTIONAL = {"rank": "int", "tensor_rank": "int", "layer": "int", "expert": "int", "weight": "float",
                        "component": "str", "role": "str", "token": "str"}


class RunFileError(EsaError):
    """A run directory's file that exists but cannot be used."""


def bad_file(path: Path, why: str) -> RunFileError:
    return RunFileError(f"{path} {why}; {_FIX}")


def read_run_json(path: Path | str, required: bool = False) -> dict[str, Any] | None:
    """A run file's JSON object (None when absent and not `required`), its known fields type-checked."""
    path = Path(path)
    if not path.is_file():
        if required or path.exists():
            raise bad_file(path, "is missing" if not path.exists() else "is not a file")
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_file(path, "is not text (binary data)") from None
    except json.JSONDecodeError as exc:
        raise bad_file(path, "is empty" if not path.stat().st_size else f"is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except OSError as exc:
        raise bad_file(path, f"cannot be read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise bad_file(path, f"holds a JSON {type(data).__name__}, not an object")
    for key, kind in JSON_FIELDS.get(path.name, {}).items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int):
            raise bad_file(path, f"has {key} = {value!r}, not a {getattr(kind, '__name__', kind)}")
    return data


def read_run_table(
    path: Path | str, columns: dict[str, str] | None = None, optional: dict[str, str] | None = None,
    required: bool = False,
) -> pd.DataFrame | None:
    """A run's CSV table (None when absent and not `required`), with `columns` present and of their kind.

    Kinds: "int", "float", "str", "index" (a "row,col" weight position); `optional` columns are checked
    when present; any other column is numeric when all its values are. Both default to the
    top_weights.csv schema when the file is named so.
    """
    path = Path(path)
    if not path.is_file():
        if required or path.exists():
            raise bad_file(path, "is missing" if not path.exists() else "is not a file")
        return None
    top = path.name == schema.TOP_WEIGHTS
    columns = columns if columns is not None else (TOP_WEIGHTS_COLUMNS if top else {})
    kinds = {**(optional if optional is not None else (TOP_WEIGHTS_OPTIONAL if top else {})), **columns}
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise bad_file(path, "is not text (binary data)") from None
    if not text.strip():
        raise bad_file(path, "is empty")
    if "\0" in text:
        raise bad_file(path, "is not text (binary data)")
    try:
        table = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        raise bad_file(path, f"is not a readable CSV table ({str(exc).splitlines()[0]})") from None
    if table.empty:
        raise bad_file(path, "has a header but no rows")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise bad_file(path, f"lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for column in table.columns:
        kind = kinds.get(column, "auto")
        table[column] = _typed(path, column, table[column], kind)
    return table


def _typed(path: Path, column: str, values: pd.Series, kind: str) -> pd.Series:
    if kind == "str":
        return values
    if kind == "index":
        for i, value in enumerate(values):
            try:
                if not schema.parse_index(value):
                    raise ValueError
            except ValueError:
                raise bad_file(path, f"row {i + 1}: {column} {value!r} is not a weight index like '12,34'") from None
        return values
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & ~values.str.lower().isin(["nan", "-nan"])
    if kind == "auto":  # a column readers do not rely on: numeric when every value is, else text
        return values if bad.any() or values.eq("").any() else _as_int(numbers)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise bad_file(path, f"row {row + 1}: {column} {values.iloc[row]!r} is not a number")
    if kind == "int":
        if numbers.isna().any() or (numbers != numbers.round()).any():
            raise bad_file(path, f"column {column} holds non-integers")
        return numbers.astype("int64")
    return numbers.astype("float64")


def _as_int(numbers: pd.Series) -> pd.Series:
    whole = not numbers.isna().any() and (numbers == numbers.round()).all()
    return numbers.astype("int64") if whole else numbers.astype("float64")
