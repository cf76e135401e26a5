"""Dense-and-sparse protection (SqueezeLLM, SpQR; the super weight of Yu et al. 2024).

The K weights with the highest score under a registered metric (the global top-K over the quantized
tensors, esa.ranking.top_k), and optionally every detected super weight, are kept at their original
16-bit-or-wider value beside the quantized tensor: they are excluded from their group's min/max (so an
outlier no longer stretches the scale of its 63 neighbours) and written back after quantization. Their
storage (value + position bits, esa.quantize.cost) is charged to the effective bits.
Memory: one bool mask per tensor holding a kept weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from esa.artifacts.schema import format_index, unravel
from esa.quantize.targets import Target
from esa.ranking import top_k


@dataclass
class Protection:
    """Kept weights: a mask per tensor that holds any, and one JSON-ready row per weight."""

    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_kept(self) -> int:
        return len(self.rows)

    def mask(self, name: str) -> torch.Tensor | None:
        return self.masks.get(name)


def protect(
    targets: list[Target], scores: dict[str, torch.Tensor] | None, k: int, metric: str | None,
    superweights: list[tuple[str, int]],
) -> Protection:
    """Keep the top-`k` weights by `scores` (over the targets) and the given super weights."""
    by_name = {t.name: t for t in targets}
    reasons: dict[tuple[str, int], str] = {}
    if k > 0 and scores is not None:
        chosen = top_k({t.name: scores[t.name] for t in targets}, k, mode="global")
        for param, flat in zip(chosen.param_ids.tolist(), chosen.flat_index.tolist()):
            reasons[(chosen.param_names[param], flat)] = f"top-{k} {metric}"
    for param, flat in superweights:
        if param in by_name:
            reasons[(param, flat)] = "super weight" if (param, flat) not in reasons else f"{reasons[param, flat]}; super weight"
    out = Protection()
    for (param, flat), reason in sorted(reasons.items()):
        target = by_name[param]
        mask = out.masks.setdefault(param, torch.zeros(target.info.shape, dtype=torch.bool))
        mask.view(-1)[flat] = True
        out.rows.append({
            "param": param, "index": format_index(unravel(flat, target.info.shape)), "flat_index": flat,
            "value": float(target.param.detach().reshape(-1)[flat]), "reason": reason,
        })
    return out
