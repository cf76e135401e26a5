"""Synthetic run directories with known numbers, written in the layout the pipeline writes.

Only the fields studies read are filled in; every value is given by the test, so a fit or a test
statistic can be checked against what was planted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from esa.artifacts import schema as S


def write_run(
    path: Path,
    *,
    model_id: str,
    n_params: int,
    family: str = "llama",
    n_layers: int = 4,
    metric: str | None = "grad_x_weight",
    global_stats: dict[str, float] | None = None,
    component_mass: dict[str, float] | None = None,
    seed_component_mass: Sequence[dict[str, float]] = (),
    layer_mass: Sequence[float] | None = None,
    superweights: list[dict[str, Any]] | None = None,
    perturbation: dict[str, float] | None = None,
    top_experts: Sequence[int] = (),
    extra_summary: dict[str, Any] | None = None,
) -> Path:
    """A finished run directory at `path`; `global_stats` go into sensitivity_stats.json "global",
    `perturbation` ({"target": dppl, "random_k": dppl, "bottom_k": dppl}) into one sign_flip summary,
    `top_experts` (expert index per selected expert weight) into top_weights.csv."""
    path.mkdir(parents=True, exist_ok=True)
    components = dict(component_mass or {"embedding": 1.0, "attention": 2.0, "mlp": 1.0, "lm_head": 1.0})
    params_by_component = {c: n_params // (len(components) + 1) for c in components}
    summary = {"model_id": model_id, "source": "synthetic", "family": family, "n_params": n_params,
               "n_layers": n_layers, "params_by_component": params_by_component, **(extra_summary or {})}
    _json(path / S.MANIFEST, {"command": "run", "model": summary, "metric": metric})
    _json(path / S.CONFIG, {"model": {"model": model_id}, "metric": metric})
    if metric is not None:
        layers = list(layer_mass or [1.0] * n_layers)
        stats: dict[str, Any] = {
            "metric": metric,
            "global": {"percentiles": {"50": 1.0}, "top_share": {}, **(global_stats or {})},
            "by_component": {c: {"sum": m} for c, m in components.items()},
            "by_layer": {**{str(i): {"sum": m} for i, m in enumerate(layers)}, "none": {"sum": 1.0}},
            "by_seed": {str(i + 1): {"by_component": {c: {"sum": m} for c, m in seed.items()}}
                        for i, seed in enumerate(seed_component_mass)},
        }
        if "top_share_0.1%" in stats["global"]:
            stats["global"]["top_share"] = {"0.1%": stats["global"].pop("top_share_0.1%")}
        _json(path / S.SENSITIVITY_STATS, stats)
    if perturbation is not None:
        _json(path / S.PERTURBATION, {
            "protocol": {"perturbation": "sign_flip"}, "baseline": {"ppl": 10.0},
            "summary": [{"scale": 1.0, "k": 10, "sets": {name: {"delta_ppl": {"mean": v}}
                                                         for name, v in perturbation.items()}}]})
    if superweights is not None:
        _json(path / S.SUPERWEIGHTS, {"candidates": superweights})
    if top_experts:
        lines = ["seed,rank,tensor_rank,param,index,layer,component,role,expert,score,weight,token"]
        lines += [f'1,{i + 1},{i + 1},model.layers.0.mlp.experts.down_proj,"{e},0,{i}",0,expert,down,-1,1.0,1.0,'
                  for i, e in enumerate(top_experts)]
        (path / S.TOP_WEIGHTS).write_text("\n".join(lines) + "\n")
    return path


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj))
