"""Attention heads: sensitivity mass per head and its correlation with the heads' attention features.

A head's sensitivity mass is the sum of the scores over its slices of the attention projections: the
rows h*d..(h+1)*d of q (d = head_dim), the columns of o that read head h, and the rows of k and v of
its key/value head g = h // (H / H_kv), divided by the H / H_kv query heads sharing g (so the mass of
a layer's heads sums to the score of its q/k/v/o weights). Fused qkv tensors are skipped (their row
layout differs between families). Across all L x H heads, Spearman's rho between the mass and each
attention feature (intact sink mass and entropy; their change with the selected weights zeroed, and
that change minus the random-k control's), with a 95% interval from Fisher's z, se = 1.06 / sqrt(n - 3)
(Fieller, Hartley & Pearson 1957). Memory: L x H floats per feature.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from scipy import stats

from esa.errors import EsaError
from esa.models.types import LoadedModel

Z95 = 1.959963984540054
INTERVAL_RULE = "95% interval: tanh(atanh(rho) -/+ 1.96 * 1.06 / sqrt(n - 3)) (Fisher z, Fieller et al. 1957)"


def head_geometry(lm: LoadedModel) -> tuple[int, int, int]:
    """(heads, head_dim, key/value heads) from the model config."""
    config = lm.model.config.get_text_config() if hasattr(lm.model.config, "get_text_config") else lm.model.config
    heads = getattr(config, "num_attention_heads", None)
    if not heads:
        raise EsaError(f"{lm.model_id}'s config has no num_attention_heads; the head analysis needs it")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return heads, head_dim, getattr(config, "num_key_value_heads", None) or heads


def head_mass(lm: LoadedModel, scores: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
    """[L, H] sensitivity mass of every head, and notes on tensors skipped."""
    heads, dim, kv = head_geometry(lm)
    mass = torch.zeros(lm.n_layers, heads, dtype=torch.float64)
    notes: list[str] = []
    for name, info in lm.params.items():
        if info.component != "attention" or info.layer is None or not info.linear or name not in scores:
            continue
        score = scores[name].detach().double().cpu().reshape(info.shape)
        if info.role in ("q", "o"):
            axis = 0 if info.role == "q" else 1
            if score.shape[axis] != heads * dim:
                notes.append(f"{name}: {score.shape[axis]} != heads x head_dim, skipped")
                continue
            per_head = score.reshape(heads, dim, -1) if axis == 0 else score.reshape(-1, heads, dim).transpose(0, 1)
            mass[info.layer] += per_head.sum(dim=(1, 2))
        elif info.role in ("k", "v"):
            if score.shape[0] != kv * dim:
                notes.append(f"{name}: {score.shape[0]} rows != kv heads x head_dim, skipped")
                continue
            per_kv = score.reshape(kv, -1).sum(dim=1)
            mass[info.layer] += per_kv.repeat_interleave(heads // kv) / (heads // kv)
        else:
            notes.append(f"{name}: role {info.role!r} (fused qkv?) has no per-head layout here, skipped")
    return mass, notes


def spearman(x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Spearman's rho of two flattened tensors with its Fisher-z 95% interval."""
    a, b = x.reshape(-1).double().numpy(), y.reshape(-1).double().numpy()
    n = a.size
    if n < 4 or a.std() == 0 or b.std() == 0:
        return {"rho": None, "ci95": None, "p_value": None, "n": n, "note": "fewer than 4 heads or a constant series"}
    rho, p = stats.spearmanr(a, b)
    rho = float(rho)
    half = Z95 * 1.06 / math.sqrt(n - 3)
    z = math.atanh(max(-0.999999, min(0.999999, rho)))
    return {"rho": rho, "ci95": [math.tanh(z - half), math.tanh(z + half)], "p_value": float(p), "n": n}
