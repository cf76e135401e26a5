"""How sensitivity is distributed: over all scored weights, and over the selected top-k.

Both break the numbers down per layer (key "none" outside the decoder blocks), per component and
per role (the component's name where a parameter has no role), so reports and plots never need the
score tensors themselves.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from esa.errors import EsaError
from esa.models.types import COMPONENTS, ParamInfo
from esa.ranking import WeightSet, check_scores
from esa.statistics.histogram import RESOLUTION, Summary, describe, display_bins, summarize

GROUPINGS: dict[str, Callable[[ParamInfo], str]] = {
    "by_layer": lambda p: "none" if p.layer is None else str(p.layer),
    "by_component": lambda p: p.component,
    "by_role": lambda p: p.role or p.component,
    "by_layer_component": lambda p: f"{'none' if p.layer is None else p.layer}/{p.component}",
}


def score_statistics(scores: Mapping[str, torch.Tensor], params: Mapping[str, ParamInfo]) -> dict[str, Any]:
    """Distribution statistics of every scored weight: "global", "by_layer", "by_component",
    "by_role" (each: count, n_zero, sum, mean, std, min, max, percentiles, max_over_mean,
    max_over_median, gini, gini_max_error, top_share), a compact global "histogram" and the
    "resolution" of the histogram-based fields. Reads each tensor once, on its own device.
    """
    whole = Summary()
    groups: dict[str, dict[str, Summary]] = {g: {} for g in GROUPINGS}
    for name, tensor in scores.items():
        x, lo, hi = check_scores(name, tensor)
        if x.numel() == 0:
            continue
        part = summarize(x, lo, hi)
        whole.add(part)
        info = _info(params, name)
        for grouping, key_of in GROUPINGS.items():
            groups[grouping].setdefault(key_of(info), Summary()).add(part)
    if whole.count == 0:
        raise EsaError("no scores to describe: the metric scored no weight")
    return {
        "resolution": dict(RESOLUTION),
        "global": describe(whole),
        **{g: {key: describe(s) for key, s in _ordered(g, found)} for g, found in groups.items()},
        "histogram": display_bins(whole),
    }


def topk_distribution(selection: WeightSet, params: Mapping[str, ParamInfo]) -> dict[str, Any]:
    """Where the selected weights sit: per layer/component/role, their count, their share of the
    selection, the group's share of all ranked weights, and enrichment = the ratio of the two
    (> 1: the group holds more of the selection than its size predicts). Also counts per tensor.
    """
    per_param = selection.counts()
    n_weights = sum(_info(params, name).numel for name in selection.param_names)
    out: dict[str, Any] = {"k": len(selection), "n_weights": n_weights}
    for grouping, key_of in GROUPINGS.items():
        sizes: dict[str, list[int]] = {}
        for name in selection.param_names:
            info = _info(params, name)
            size = sizes.setdefault(key_of(info), [0, 0])
            size[0] += per_param.get(name, 0)
            size[1] += info.numel
        out[grouping] = {
            key: _shares(count, numel, len(selection), n_weights) for key, (count, numel) in _ordered(grouping, sizes)}
    out["by_param"] = per_param
    return out


def _shares(count: int, numel: int, k: int, n_weights: int) -> dict[str, Any]:
    share = count / k if k else 0.0
    param_share = numel / n_weights if n_weights else 0.0
    return {"count": count, "share": share, "param_share": param_share,
            "enrichment": share / param_share if param_share else None}


def _info(params: Mapping[str, ParamInfo], name: str) -> ParamInfo:
    try:
        return params[name]
    except KeyError:
        raise ValueError(f"no ParamInfo for scored parameter {name!r}") from None


def _ordered(grouping: str, found: dict[str, Any]) -> list[tuple[str, Any]]:
    """Layers numerically ("none" last), components in COMPONENTS order, roles as first seen."""
    if grouping == "by_layer":
        return sorted(found.items(), key=lambda kv: (kv[0] == "none", int(kv[0]) if kv[0] != "none" else 0))
    if grouping == "by_component":
        return sorted(found.items(), key=lambda kv: COMPONENTS.index(kv[0]) if kv[0] in COMPONENTS else len(COMPONENTS))
    return list(found.items())
