"""Rank weights by score: the k best of every tensor, or the exact k best of the whole model.

Streaming: each tensor is read once, selected on its own device, and only its O(k) candidates
come to the CPU, so `scores` may be a lazy Mapping and tensors may sit on different devices.
Selection order and tie rule: see esa.ranking.select.
"""

from __future__ import annotations

from typing import Mapping

import torch

from esa.errors import EsaError
from esa.ranking.select import Order, best_of_tensor, check_scores
from esa.ranking.weight_set import WeightSet

MODES = ("per_layer", "global")


class _Picks:
    """Selected (score, param id, flat index) columns on the CPU."""

    def __init__(self) -> None:
        self.score: list[torch.Tensor] = []
        self.pid: list[torch.Tensor] = []
        self.flat: list[torch.Tensor] = []

    def add(self, pid: int, score: torch.Tensor, flat: torch.Tensor) -> None:
        """Append one tensor's candidates, in selection order; tensors must come in model order."""
        self.score.append(score.cpu())
        self.pid.append(torch.full((flat.numel(),), pid, dtype=torch.long))
        self.flat.append(flat.cpu())

    def settle(self, order: Order, keep: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Put everything in selection order and keep the best `keep`.

        The columns hold tensors in model order, each in selection order, so a stable sort by score
        alone applies the tie rule (earlier tensor, then lower flat index).
        """
        score, pid, flat = (torch.cat(c) if c else torch.empty(0) for c in (self.score, self.pid, self.flat))
        perm = order.arrange(score)[:keep]
        self.score, self.pid, self.flat = [score[perm]], [pid[perm].long()], [flat[perm].long()]
        return self.score[0], self.pid[0], self.flat[0]


def top_k(scores: Mapping[str, torch.Tensor], k: int, mode: str = "per_layer", largest: bool = True) -> WeightSet:
    """Select weights by score: `mode="per_layer"` takes the k best of EVERY tensor (all of a tensor
    with fewer than k elements), `"global"` the exact k best over all tensors together.

    `largest=False` selects the k lowest scores instead (the least sensitive weights, a control).
    Scores must be finite and >= 0 (EsaError naming the tensor otherwise).
    """
    if mode not in MODES:
        raise EsaError(f"unknown ranking mode {mode!r}; choose one of {', '.join(MODES)}")
    if k <= 0:
        raise EsaError(f"top-k needs k >= 1, got {k}")
    order = Order(largest)
    names: list[str] = []
    picks = _Picks()
    total = 0
    for pid, (name, tensor) in enumerate(scores.items()):
        names.append(name)
        x, _, _ = check_scores(name, tensor)
        if x.numel() == 0:
            continue
        total += x.numel()
        if mode == "per_layer":
            picks.add(pid, *best_of_tensor(x, k, order))
        else:
            held = picks.settle(order, keep=k)[0]
            bar = float(held[-1]) if held.numel() == k else None
            picks.add(pid, *best_of_tensor(x, k, order, bar))
    if not names:
        raise EsaError("no scores to rank: the metric scored no parameter")
    if mode == "global" and k > total:
        raise EsaError(f"--topk {k} exceeds the {total:,} scored weights; use a smaller k")
    score, pids, flat = picks.settle(order, keep=k if mode == "global" else None)
    return WeightSet(tuple(names), pids, flat, score, largest)
