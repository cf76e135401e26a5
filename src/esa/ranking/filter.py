"""Choose which parameters to score with --include / --exclude regexes."""

from __future__ import annotations

import re
from typing import Iterable

from esa.errors import EsaError


def filter_params(
    names: Iterable[str], include: list[str] | None = None, exclude: list[str] | None = None,
) -> list[str]:
    """Names (in their given order) matching any `include` regex, minus those matching any `exclude`.

    Regexes use re.search, so 'mlp' matches 'model.layers.0.mlp.up_proj.weight'; no include keeps all.
    """
    names = list(names)
    if not names:
        raise EsaError("the model has no parameters to select from")
    inc, exc = _compile(include, "--include"), _compile(exclude, "--exclude")
    kept = [n for n in names if not inc or any(p.search(n) for p in inc)]
    if not kept:
        raise EsaError(
            f"--include {_show(include)} matches no parameter; parameter names look like {_example(names)!r}")
    kept = [n for n in kept if not any(p.search(n) for p in exc)]
    if not kept:
        raise EsaError(f"--exclude {_show(exclude)} removes every selected parameter; nothing is left to score")
    return kept


def _compile(patterns: list[str] | None, flag: str) -> list[re.Pattern[str]]:
    out = []
    for p in patterns or []:
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise EsaError(f"{flag} {p!r} is not a valid regular expression: {exc}") from None
    return out


def _show(patterns: list[str] | None) -> str:
    return ", ".join(repr(p) for p in patterns or [])


def _example(names: list[str]) -> str:
    """A block parameter if there is one: the most typical name."""
    return next((n for n in names if re.search(r"\.0\.", n)), names[0])
