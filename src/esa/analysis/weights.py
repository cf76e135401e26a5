"""What the selected weights look like: how extreme they are in their tensor, whether they cluster in a
few rows or columns (channels), and, for embedding/output rows, which token they belong to."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from esa.models.types import LoadedModel, ParamInfo
from esa.ranking import WeightSet

TOP_SHARED = 5
SPECIAL_TOKENS = ("bos", "eos", "pad", "unk")
VOCAB_COMPONENTS = ("embedding", "lm_head")

DEFINITIONS = {
    "abs_z": "(|w| - mean |W|) / std |W| over the weight's tensor W (population std)",
    "z": "(w - mean W) / std W over the weight's tensor",
    "abs_percentile": "100 * (number of entries of W with |entry| <= |w|) / numel(W)",
    "rows/cols": "Hugging Face index order: [row, col] of the stored tensor, [expert, row, col] keyed (expert, row) "
    "for fused experts; for nn.Linear a row is an output channel and a column an input channel",
    "hhi": "Herfindahl index of the tensor's selected weights over rows (or cols): sum of squared shares; "
    "1/n_selected when every weight has its own row, 1 when all share one",
    "shared_fraction": "fraction of the tensor's selected weights whose row (or col) holds another selected weight",
    "calib_count": "occurrences of the token id in the calibration windows",
    "special": "which of the tokenizer's bos/eos/pad/unk token ids equal this id ('other' for other special tokens)",
}


def weight_analysis(weight_set: WeightSet, lm: LoadedModel, calib_token_counts: torch.Tensor | None) -> dict[str, Any]:
    """Per-weight magnitude statistics, per-tensor row/column concentration and per-token facts (JSON-ready)."""
    named = dict(lm.model.named_parameters())
    indices = weight_set.unravel(lm.params)
    names = [weight_set.param_names[i] for i in weight_set.param_ids.tolist()]
    stats = {name: _magnitude_stats(named[name].detach(), flat) for name, flat in weight_set.by_param().items()}
    rows: list[dict[str, Any]] = []
    for rank, (name, flat, index) in enumerate(zip(names, weight_set.flat_index.tolist(), indices), start=1):
        info = lm.params[name]
        row = {
            "rank": rank,
            "param": name,
            "index": ",".join(map(str, index)),
            "layer": info.layer,
            "component": info.component,
            "role": info.role,
            "expert": _expert_of(info, index),
            **stats[name][flat],
        }
        if _is_vocab_matrix(info):
            row.update(_token_facts(lm.tokenizer, index[0], calib_token_counts))
        rows.append(row)
    tensors = [_concentration(name, [indices[i] for i, n in enumerate(names) if n == name], lm, calib_token_counts)
               for name in weight_set.by_param()]
    return {
        "definitions": DEFINITIONS,
        "n_weights": len(rows),
        "weights": rows,
        "tensors": [t for t in tensors if t is not None],
        "tokens": _token_summary(rows),
        "shared_row_fraction": _overall_shared(tensors, "rows", len(rows)),
        "shared_col_fraction": _overall_shared(tensors, "cols", len(rows)),
    }


def _magnitude_stats(weight: torch.Tensor, flat: torch.Tensor) -> dict[int, dict[str, float]]:
    """z-scores and |w| percentile of the entries `flat` of one tensor, in one pass over it."""
    w = weight.reshape(-1).double()
    mag = w.abs()
    values = w[flat.to(w.device)]
    picked = values.abs()
    # count(|W| <= v) for every picked v at once: bucket |W| by the sorted picked magnitudes
    order = picked.argsort()
    below = torch.bincount(torch.bucketize(mag, picked[order]), minlength=picked.numel() + 1).cumsum(0)[:-1]
    at_most = torch.empty_like(below)
    at_most[order] = below
    n = w.numel()
    mean, std = w.mean(), w.std(correction=0)
    mag_mean, mag_std = mag.mean(), mag.std(correction=0)
    out = {}
    for f, v, count in zip(flat.tolist(), values.tolist(), at_most.tolist()):
        out[f] = {
            "value": v,
            "abs_z": _safe_div(abs(v) - float(mag_mean), float(mag_std)),
            "z": _safe_div(v - float(mean), float(std)),
            "abs_percentile": 100.0 * count / n,
        }
    return out


def _concentration(
    name: str, indices: list[tuple[int, ...]], lm: LoadedModel, counts: torch.Tensor | None
) -> dict[str, Any] | None:
    """How the tensor's selected weights spread over rows and columns (None for 1-D tensors)."""
    info = lm.params[name]
    if len(info.shape) < 2:
        return None
    rows = Counter(tuple(i[:-1]) for i in indices)
    cols = Counter(tuple(i[:-2]) + (i[-1],) for i in indices)
    out: dict[str, Any] = {"param": name, "layer": info.layer, "component": info.component, "role": info.role,
                           "n_selected": len(indices)}
    for side, counter in (("rows", rows), ("cols", cols)):
        n = len(indices)
        top = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SHARED]
        shared = [{"index": ",".join(map(str, key)), "count": c} for key, c in top]
        if side == "rows" and _is_vocab_matrix(info):
            for entry, (key, _) in zip(shared, top):
                entry.update(_token_facts(lm.tokenizer, key[0], counts))
        out[side] = {
            "n_distinct": len(counter),
            "most_shared": shared,
            "max_share": top[0][1] / n,
            "hhi": sum((c / n) ** 2 for c in counter.values()),
            "shared_fraction": sum(c for c in counter.values() if c > 1) / n,
        }
    return out


def _token_facts(tokenizer: Any, token_id: int, counts: torch.Tensor | None) -> dict[str, Any]:
    """The token of an embedding/output row: its text, calibration frequency and special-token role."""
    special = [kind for kind in SPECIAL_TOKENS if getattr(tokenizer, f"{kind}_token_id", None) == token_id]
    if not special and token_id in set(getattr(tokenizer, "all_special_ids", []) or []):
        special = ["other"]
    count = int(counts[token_id]) if counts is not None and token_id < counts.numel() else None
    return {
        "token_id": token_id,
        "token": tokenizer.convert_ids_to_tokens(token_id),
        "text": tokenizer.decode([token_id]),
        "calib_count": count,
        "special": special,
    }


def _token_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Distinct tokens among the selected embedding/output rows, most selected weights first."""
    per_token: dict[int, dict[str, Any]] = {}
    for row in rows:
        if "token_id" not in row:
            continue
        facts = {k: row[k] for k in ("token_id", "token", "text", "calib_count", "special")}
        entry = per_token.setdefault(row["token_id"], {**facts, "n_weights": 0, "params": []})
        entry["n_weights"] += 1
        if row["param"] not in entry["params"]:
            entry["params"].append(row["param"])
    return sorted(per_token.values(), key=lambda e: (-e["n_weights"], e["token_id"]))


def _overall_shared(tensors: list[dict[str, Any] | None], side: str, n: int) -> float | None:
    """Fraction of all selected weights whose row (col) holds another selected weight of the same tensor."""
    if n == 0:
        return None
    return sum(t[side]["shared_fraction"] * t["n_selected"] for t in tensors if t is not None) / n


def _is_vocab_matrix(info: ParamInfo) -> bool:
    """Embedding and output matrices: their rows are token ids."""
    return info.component in VOCAB_COMPONENTS and len(info.shape) == 2


def _expert_of(info: ParamInfo, index: tuple[int, ...]) -> int | None:
    if info.expert_axis is not None:
        return index[info.expert_axis]
    return info.expert


def _safe_div(a: float, b: float) -> float | None:
    return a / b if b > 0 else None
