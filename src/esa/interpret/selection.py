"""The weights to interpret: parameter name + index in Hugging Face order, checked against the model.

A selection comes from the caller (a list of `SelectedWeight`, `(param, index)` pairs or dicts with
"param" and "index"); reading it from a run directory lives in esa.interpret.from_run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from esa.artifacts.schema import format_index, parse_index, ravel, unravel
from esa.errors import EsaError
from esa.models.types import LoadedModel
from esa.ranking import WeightSet


@dataclass(frozen=True)
class SelectedWeight:
    """One weight: `param[index]`; `score` is its sensitivity score when known, `source` why it was chosen."""

    param: str
    index: tuple[int, ...]
    score: float | None = None
    source: str = "user"

    @property
    def label(self) -> str:
        return f"{self.param}[{format_index(self.index)}]"


def check_selection(lm: LoadedModel, selection: Iterable[Any]) -> list[SelectedWeight]:
    """The selection as SelectedWeight, duplicates dropped (first kept), every index inside its parameter."""
    out: dict[tuple[str, tuple[int, ...]], SelectedWeight] = {}
    for item in selection:
        weight = _as_weight(item)
        info = lm.params.get(weight.param)
        if info is None:
            raise EsaError(f"the selection names {weight.param!r}, which is not a parameter of {lm.model_id}; "
                           "select weights of this model")
        try:
            ravel(weight.index, info.shape)
        except ValueError as exc:
            raise EsaError(f"{weight.label}: {exc}; give an index inside the parameter") from None
        out.setdefault((weight.param, weight.index), weight)
    if not out:
        raise EsaError("the selection is empty; give at least one weight (param name + [row, col])")
    return list(out.values())


def from_weight_set(lm: LoadedModel, selection: WeightSet, source: str = "top-k") -> list[SelectedWeight]:
    """A WeightSet (esa.ranking.top_k) as SelectedWeight rows in selection order, scores kept."""
    return [
        SelectedWeight(name, unravel(flat, lm.params[name].shape), score, source)
        for name, flat, score in zip((selection.param_names[i] for i in selection.param_ids.tolist()),
                                     selection.flat_index.tolist(), selection.score.tolist())
    ]


def flat_index(lm: LoadedModel, weight: SelectedWeight) -> int:
    return ravel(weight.index, lm.params[weight.param].shape)


def _as_weight(item: Any) -> SelectedWeight:
    if isinstance(item, SelectedWeight):
        return item
    if isinstance(item, dict):
        param, index = item.get("param"), item.get("index")
        score, source = item.get("score"), item.get("source", "user")
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        (param, index), score, source = item, None, "user"
    else:
        raise EsaError(f"cannot read {item!r} as a weight; give (param, [row, col]) or a SelectedWeight")
    if not isinstance(param, str) or index is None:
        raise EsaError(f"cannot read {item!r} as a weight; give a parameter name and an index")
    idx = parse_index(index) if isinstance(index, str) else tuple(int(i) for i in index)
    return SelectedWeight(param, idx, None if score is None else float(score), str(source))
