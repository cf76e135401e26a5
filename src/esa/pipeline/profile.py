"""Phase 2 for one seed: score every weight, rank, and describe the distribution.

`profile_seed` is the library entry point a notebook user calls; `esa run` loops it over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from esa.artifacts import schema
from esa.data import WindowSet
from esa.metrics import Metric, MetricResult, score_model
from esa.models import LoadedModel
from esa.ranking import WeightSet, top_k
from esa.statistics import score_statistics, topk_distribution


@dataclass
class SeedProfile:
    seed: int
    windows: WindowSet
    result: MetricResult
    selection: WeightSet
    stats: dict[str, Any]
    bottom: WeightSet | None = None
    timings: dict[str, float] = field(default_factory=dict)


def selection_table(lm: LoadedModel, selection: WeightSet, result: MetricResult, seed: int) -> pd.DataFrame:
    """One row per selected weight: where it is ([row, col] in the parameter's own order), its score and value."""
    named = dict(lm.model.named_parameters())
    params = [selection.param_names[i] for i in selection.param_ids.tolist()]
    flat = selection.flat_index.tolist()
    values: list[float] = [0.0] * len(flat)
    extras: dict[str, list[float]] = {name: [0.0] * len(flat) for name in result.extras}
    positions: dict[str, list[int]] = {}
    for pos, name in enumerate(params):
        positions.setdefault(name, []).append(pos)
    for name, pos in positions.items():
        idx = torch.tensor([flat[p] for p in pos], dtype=torch.long)
        vals = named[name].detach().reshape(-1)[idx.to(named[name].device)].float().cpu().tolist()
        for p, v in zip(pos, vals):
            values[p] = v
        for extra, tensors in result.extras.items():
            if name in tensors:
                ev = tensors[name].reshape(-1)[idx.to(tensors[name].device)].float().cpu().tolist()
                for p, v in zip(pos, ev):
                    extras[extra][p] = v
    vocab = getattr(lm.model.config, "vocab_size", None)
    rows = []
    tensor_rank: dict[str, int] = {}
    for pos, (name, f, score) in enumerate(zip(params, flat, selection.score.tolist())):
        info = lm.params[name]
        index = schema.unravel(f, info.shape)
        tensor_rank[name] = tensor_rank.get(name, 0) + 1
        token = ""
        if info.component in ("embedding", "lm_head") and len(info.shape) == 2 and info.shape[0] == vocab:
            token = lm.tokenizer.decode([index[0]])
        rows.append({
            "seed": seed,
            "rank": pos + 1,
            "tensor_rank": tensor_rank[name],
            "param": name,
            "index": schema.format_index(index),
            "layer": -1 if info.layer is None else info.layer,
            "component": info.component,
            "role": info.role or "",
            "expert": -1 if info.expert is None else info.expert,
            "score": score,
            "weight": values[pos],
            **{extra: extras[extra][pos] for extra in result.extras},
            "token": token,
        })
    return pd.DataFrame(rows)



def profile_seed(
    lm: LoadedModel, metric: Metric, windows: WindowSet, param_names: list[str], *, seed: int, k: int, mode: str,
    batch_size: int, probes: int = 8, accumulate_on: str = "param", progress: bool = False, bottom: bool = False,
    checkpointing: bool = False,
) -> SeedProfile:
    """Score, rank and summarise one seed's calibration windows (and rank the bottom-k when asked)."""
    import time

    timings: dict[str, float] = {}
    t = time.perf_counter()
    result = score_model(
        lm, metric, windows, param_names, seed=seed, batch_size=batch_size, probes=probes,
        accumulate_on=accumulate_on, progress=progress, checkpointing=checkpointing,
    )
    timings["score"] = time.perf_counter() - t
    t = time.perf_counter()
    selection = top_k(result.scores, k, mode)
    least = top_k(result.scores, k, mode, largest=False) if bottom else None
    timings["rank"] = time.perf_counter() - t
    t = time.perf_counter()
    scored = {n: lm.params[n] for n in result.scores}
    stats = score_statistics(result.scores, scored)
    stats["topk"] = topk_distribution(selection, scored)
    timings["statistics"] = time.perf_counter() - t
    return SeedProfile(seed=seed, windows=windows, result=result, selection=selection, stats=stats,
                       bottom=least, timings=timings)
