"""Where sensitivity sits in the architecture: by component and role, by depth, attention vs MLP, early
layers, and experts. Works on score tensors alone (one sum per tensor), so it costs next to nothing.

"Mass" is the sum of scores; "top-k" counts the selected weights. Shares are of the total over all
scored tensors, except `early_layers`, which compares layers with each other (shares of the in-block total).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from esa.models.types import ParamInfo
from esa.ranking import WeightSet

N_DEPTH_BINS = 10
EARLY_FRACTIONS = (0.10, 0.25)
MLP_COMPONENTS = ("mlp", "expert", "router")  # the feed-forward sublayer, MoE parts included

DEFINITIONS = {
    "mass": "sum of the scores of a group's weights; mass_share = mass / total mass of all scored tensors",
    "topk": "number of the group's weights in the selection; topk_share = topk / selection size",
    "weight_share": "the group's share of all scored weights (a group with topk_share > weight_share is enriched)",
    "depth": "layer / (n_layers - 1), so 0 is the first block and 1 the last; "
    f"depth bins are {N_DEPTH_BINS} equal intervals of it (the last includes 1)",
    "attention_vs_mlp": f"attention vs the feed-forward sublayer (components {', '.join(MLP_COMPONENTS)})",
    "early_layers": "layers with index < fraction * n_layers, as shares of the in-block mass and top-k",
}


def architecture_analysis(
    scores: dict[str, torch.Tensor], weight_set: WeightSet, params: dict[str, ParamInfo], n_layers: int
) -> dict[str, Any]:
    """Sensitivity mass and top-k share by component, role, depth and expert (JSON-ready)."""
    topk = weight_set.by_param()
    k = len(weight_set)
    masses = {name: float(t.double().sum()) for name, t in scores.items()}
    groups = _Groups(total=sum(masses.values()), k=k, n_weights=sum(t.numel() for t in scores.values()))
    for name, tensor in scores.items():
        info = params[name]
        mass, count = masses[name], len(topk.get(name, ()))
        keys = [("component", info.component), ("role", f"{info.component}/{info.role}")]
        if info.layer is not None:
            keys += [("layer", info.layer), ("depth_bin", _bin_of(info.layer, n_layers))]
        else:
            keys.append(("outside_blocks", "all"))
        for key in keys:
            groups.add(key, mass, count, tensor.numel())
        for expert, e_mass, e_count, e_numel in _experts(info, tensor, mass, topk.get(name)):
            groups.add(("expert", (info.layer, expert)), e_mass, e_count, e_numel)

    out: dict[str, Any] = {
        "definitions": DEFINITIONS,
        "total_mass": groups.total,
        "k": k,
        "n_layers": n_layers,
        "by_component": groups.table("component"),
        "by_role": groups.table("role"),
        "by_layer": [{"layer": layer, "depth": _depth(layer, n_layers), **groups.get(("layer", layer))}
                     for layer in range(n_layers)],
        "by_depth_bin": [_depth_bin(b, n_layers, groups) for b in range(N_DEPTH_BINS)],
        "outside_blocks": groups.get(("outside_blocks", "all")),
        "attention_vs_mlp": _attention_vs_mlp(groups),
        "early_layers": _early_layers(groups, n_layers),
    }
    if any(info.component in ("expert", "router") for name, info in params.items() if name in scores):
        out["moe"] = _moe(groups)
    return out


class _Groups:
    """Running (mass, top-k count, number of weights) per group key."""

    def __init__(self, total: float, k: int, n_weights: int) -> None:
        self.total, self.k, self.n_weights = total, k, n_weights
        self.sums: dict[tuple[str, Any], list[float]] = {}

    def add(self, key: tuple[str, Any], mass: float, count: int, numel: int) -> None:
        acc = self.sums.setdefault(key, [0.0, 0, 0])
        acc[0] += mass
        acc[1] += count
        acc[2] += numel

    def get(self, key: tuple[str, Any]) -> dict[str, Any]:
        mass, count, numel = self.sums.get(key, [0.0, 0, 0])
        return {
            "mass": mass,
            "mass_share": _ratio(mass, self.total),
            "topk": int(count),
            "topk_share": _ratio(count, self.k),
            "n_weights": int(numel),
            "weight_share": _ratio(numel, self.n_weights),
        }

    def keys(self, kind: str) -> list[Any]:
        return [key for k, key in self.sums if k == kind]

    def table(self, kind: str) -> dict[str, dict[str, Any]]:
        return {str(key): self.get((kind, key)) for key in self.keys(kind)}


def _experts(
    info: ParamInfo, tensor: torch.Tensor, mass: float, selected: torch.Tensor | None
) -> list[tuple[int, float, int, int]]:
    """(expert, mass, top-k count, numel) of the expert a tensor belongs to, or of each one it holds (fused)."""
    if info.expert is not None:
        return [(info.expert, mass, 0 if selected is None else selected.numel(), tensor.numel())]
    if info.expert_axis is None:
        return []
    axis = info.expert_axis
    n_experts = tensor.shape[axis]
    mass = tensor.double().sum(dim=[d for d in range(tensor.dim()) if d != axis]).tolist()
    counts = [0] * n_experts
    if selected is not None:
        coords = torch.unravel_index(selected.cpu(), tuple(tensor.shape))[axis]
        counts = torch.bincount(coords, minlength=n_experts).tolist()
    per_expert = tensor.numel() // n_experts
    return [(e, mass[e], counts[e], per_expert) for e in range(n_experts)]


def _depth(layer: int, n_layers: int) -> float:
    return layer / (n_layers - 1) if n_layers > 1 else 0.0


def _bin_of(layer: int, n_layers: int) -> int:
    return min(int(_depth(layer, n_layers) * N_DEPTH_BINS), N_DEPTH_BINS - 1)


def _depth_bin(b: int, n_layers: int, groups: _Groups) -> dict[str, Any]:
    layers = [layer for layer in range(n_layers) if _bin_of(layer, n_layers) == b]
    return {"bin": b, "depth_from": b / N_DEPTH_BINS, "depth_to": (b + 1) / N_DEPTH_BINS, "layers": layers,
            **groups.get(("depth_bin", b))}


def _attention_vs_mlp(groups: _Groups) -> dict[str, Any]:
    attention = groups.get(("component", "attention"))
    mlp = [groups.get(("component", c)) for c in MLP_COMPONENTS]
    mlp_mass, mlp_topk = sum(g["mass"] for g in mlp), sum(g["topk"] for g in mlp)
    return {
        "attention_mass": attention["mass"],
        "mlp_mass": mlp_mass,
        "mass_ratio": _ratio(attention["mass"], mlp_mass),
        "attention_topk": attention["topk"],
        "mlp_topk": mlp_topk,
        "topk_ratio": _ratio(attention["topk"], mlp_topk),
    }


def _early_layers(groups: _Groups, n_layers: int) -> dict[str, Any]:
    block_mass = sum(groups.get(("layer", layer))["mass"] for layer in range(n_layers))
    block_topk = sum(groups.get(("layer", layer))["topk"] for layer in range(n_layers))
    out = {}
    for fraction in EARLY_FRACTIONS:
        layers = [layer for layer in range(n_layers) if layer < fraction * n_layers]
        mass = sum(groups.get(("layer", layer))["mass"] for layer in layers)
        topk = sum(groups.get(("layer", layer))["topk"] for layer in layers)
        out[f"first_{round(fraction * 100)}pct"] = {
            "layers": layers,
            "layer_share": len(layers) / n_layers,
            "mass_share_of_blocks": _ratio(mass, block_mass),
            "topk_share_of_blocks": _ratio(topk, block_topk),
        }
    return out


def _moe(groups: _Groups) -> dict[str, Any]:
    """Per-(layer, expert) and per-expert figures, the router, and how unevenly experts are hit."""
    cells = sorted(groups.keys("expert"), key=lambda le: (-1 if le[0] is None else le[0], le[1]))
    per_cell = [{"layer": layer, "expert": e, **groups.get(("expert", (layer, e)))} for layer, e in cells]
    per_expert: dict[int, dict[str, float]] = {}
    for cell in per_cell:
        acc = per_expert.setdefault(cell["expert"], {"mass": 0.0, "topk": 0})
        acc["mass"] += cell["mass"]
        acc["topk"] += cell["topk"]
    masses = [v["mass"] for v in per_expert.values()]
    mean = sum(masses) / len(masses) if masses else 0.0
    return {
        "per_layer_expert": per_cell,
        "per_expert": [
            {"expert": e, **v, "mass_share": _ratio(v["mass"], groups.total), "topk_share": _ratio(v["topk"], groups.k)}
            for e, v in sorted(per_expert.items())
        ],
        "router": groups.get(("component", "router")),
        "expert_mass_max_over_mean": _ratio(max(masses), mean) if masses else None,
    }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b and math.isfinite(b) else None
