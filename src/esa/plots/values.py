"""Numbers as ESA saves them (JSON has no inf/nan: esa.artifacts writes "inf") and as figures and reports print them."""

from __future__ import annotations

from typing import Any


def num(x: Any) -> float | None:
    """A saved number as float ("inf" -> inf); None for absent or non-numeric values."""
    if x is None or isinstance(x, bool):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def fmt(x: Any, digits: int = 4) -> str:
    """A number for people: ints with separators, floats to `digits` significant digits, "n/a" if absent."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    v = num(x)
    return "n/a" if v is None else f"{v:.{digits}g}"


def pct(x: Any, digits: int = 3) -> str:
    """A fraction as a percentage ("n/a" if absent)."""
    v = num(x)
    return "n/a" if v is None else f"{100 * v:.{digits}g}%"
