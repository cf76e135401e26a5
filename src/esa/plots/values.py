"""Numbers as ESA saves them: JSON has no inf/nan, so esa.artifacts writes them as strings ("inf")."""

from __future__ import annotations

import math
from typing import Any


def num(x: Any) -> float | None:
    """A saved number as float ("inf" -> inf); None for absent or non-numeric values."""
    if x is None or isinstance(x, bool):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def finite(x: Any) -> bool:
    v = num(x)
    return v is not None and math.isfinite(v)
