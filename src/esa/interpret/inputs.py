"""Input side: when does a weight's input channel fire?

For a weight W[row, col] of a linear map y = W x the input channel is x_col (x_row for GPT-2's
transposed Conv1D, the expert's slice for fused experts); for a norm gain g[i] it is the norm's input
x_i. One pass records, with the recorders of esa.analysis.projections, every token's value of each
selected channel and the module's median |x| over all (token, channel) entries (esa.analysis.activations'
histogram). The channel *fires* at a token when |x_c(t)| >= FIRE_RATIO x that median. Reported: the
signed percentiles of x_c, the firing tokens (decoded, counted), their positions, the share of firings
at position 0 and at the BOS token, and the 10 largest |x_c| occurrences.
Embedding rows have no input channel (the row is a token): see `token_facts`.
Memory: N values per selected channel plus one log-histogram per watched module.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.pytorch_utils import Conv1D

from esa.analysis.activations import SideStats
from esa.analysis.projections import OutputProjection, attach_recorders
from esa.interpret.selection import SelectedWeight
from esa.models.types import LoadedModel

FIRE_RATIO = 10.0
TOP = 10
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
FIRE_RULE = f"the input channel fires at a token when |x_c| >= {FIRE_RATIO:g} x the module's median |x| (all channels)"


@dataclass
class ChannelTrace:
    """Every token's value of one channel (stream order) and the module median."""

    rows: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)


def channels(lm: LoadedModel, weight: SelectedWeight) -> tuple[OutputProjection, int, int] | None:
    """(module view, input channel, output channel) of a weight, or None for embedding-like tensors."""
    info = lm.params[weight.param]
    path = weight.param.rpartition(".")[0]
    if info.component == "norm" and len(info.shape) == 1:
        return OutputProjection(weight.param, path, info.layer, None, False, False), weight.index[0], weight.index[0]
    if not info.linear:
        return None
    fused = info.expert_axis is not None and len(info.shape) == 3
    owner = lm.model.get_submodule(path)
    transposed = isinstance(owner, Conv1D) or (fused and bool(getattr(owner, "is_transposed", False)))
    expert = weight.index[0] if fused else info.expert
    first, second = weight.index[1:] if fused else weight.index
    in_ch, out_ch = (first, second) if transposed else (second, first)
    return OutputProjection(weight.param, path, info.layer, expert, fused, transposed), in_ch, out_ch


@torch.no_grad()
def trace_inputs(
    lm: LoadedModel, weights: list[SelectedWeight], batches: list[torch.Tensor]
) -> tuple[dict[SelectedWeight, ChannelTrace], dict[OutputProjection, float | None]]:
    """One pass recording each weight's input channel and each watched module's median |x|."""
    wanted: dict[OutputProjection, list[tuple[SelectedWeight, int]]] = {}
    for w in weights:
        found = channels(lm, w)
        if found is not None:
            wanted.setdefault(found[0], []).append((w, found[1]))
    traces = {w: ChannelTrace() for group in wanted.values() for w, _ in group}
    stats = {p: SideStats() for p in wanted}
    offset = 0

    def sink(proj: OutputProjection, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor) -> None:
        stats[proj].add(x, rows)
        for w, ch in wanted[proj]:
            traces[w].rows.append((rows + offset).cpu())
            traces[w].values.append(x[:, ch].float().cpu())

    with ExitStack() as stack:
        for handle in attach_recorders(lm.model, list(wanted), sink):
            stack.callback(handle.remove)
        for batch in batches:
            lm.model(input_ids=batch, use_cache=False)
            offset += batch.numel()
    return traces, {p: s.median() for p, s in stats.items()}


def input_side(
    trace: ChannelTrace, median: float | None, token_ids: torch.Tensor, positions: torch.Tensor,
    bos_id: int | None, tokenizer: Any,
) -> dict[str, Any]:
    """The firing summary of one channel (see the module docstring)."""
    if not trace.values:
        return {"n_tokens": 0, "note": "the channel saw no token (an expert never routed to?)"}
    rows, x = torch.cat(trace.rows), torch.cat(trace.values)
    mag = x.abs()
    fires = mag >= FIRE_RATIO * median if median else torch.zeros_like(mag, dtype=torch.bool)
    hit = rows[fires]
    ids, pos = token_ids[hit], positions[hit]
    n_fire = int(hit.numel())
    top = torch.argsort(mag, descending=True, stable=True)[:TOP]
    q = torch.quantile(x.double(), torch.tensor([p / 100 for p in PERCENTILES], dtype=torch.float64))
    return {
        "n_tokens": int(x.numel()),
        "module_median_abs": median,
        "percentiles": {f"p{p}": float(v) for p, v in zip(PERCENTILES, q)},
        "max_abs": float(mag.max()),
        "max_ratio_to_median": float(mag.max()) / median if median else None,
        "n_fire": n_fire,
        "fire_share": n_fire / x.numel(),
        "share_fire_at_position0": float((pos == 0).sum()) / n_fire if n_fire else None,
        "share_fire_at_bos": float((ids == bos_id).sum()) / n_fire if n_fire and bos_id is not None else None,
        "fire_tokens": [{**decode(tokenizer, t), "count": n} for t, n in _most_common(ids)],
        "fire_positions": [{"position": p, "count": n} for p, n in _most_common(pos)],
        "top_activations": [
            {**decode(tokenizer, int(token_ids[rows[i]])), "position": int(positions[rows[i]]), "value": float(x[i])}
            for i in top.tolist()
        ],
    }


def token_facts(token: int, token_ids: torch.Tensor, tokenizer: Any) -> dict[str, Any]:
    """An embedding or lm_head row's token: text, count and frequency in the calibration data, special or not."""
    count = int((token_ids == token).sum())
    special = token in set(getattr(tokenizer, "all_special_ids", []) or [])
    names = {getattr(tokenizer, f"{k}_token_id", None): k for k in ("bos", "eos", "pad", "unk")}
    return {
        **decode(tokenizer, token), "calib_count": count, "calib_frequency": count / max(1, token_ids.numel()),
        "special": special, "special_kind": names.get(token) if special else None,
    }


def decode(tokenizer: Any, token: int) -> dict[str, Any]:
    return {"id": int(token), "token": tokenizer.convert_ids_to_tokens(int(token)), "text": tokenizer.decode([int(token)])}


def _most_common(values: torch.Tensor) -> list[tuple[int, int]]:
    return sorted(Counter(values.tolist()).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
