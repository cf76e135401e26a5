"""Which weights a score prunes: sparsity patterns and comparison groups, on [out, in] matrices.

Every target is seen as a matrix whose rows are output rows and whose columns are input features
(see esa.prune.targets), so one rule serves nn.Linear, Conv1D and fused experts:

- unstructured, group "row": in every row the floor(s·in) lowest-scoring weights go (Wanda's rule:
  a stable ascending sort, so ties go to the lower column; found by linear-time selection, same mask);
- unstructured, group "tensor": the floor(s·numel) lowest of each tensor; "global": the floor(s·N)
  lowest of all targets together (N = their total size), so tensors end up with different sparsities;
- N:M: in every row, in every group of M consecutive input weights, the N lowest go (sparsity N/M).

Protected weights (score +inf here) are never chosen; a group holding more protected weights than it
can keep is an error. Memory: one bool mask per target, plus a few bool/int64 temporaries of the
scores being compared (the largest tensor, or every target at once for "global").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from esa.errors import EsaError

GROUPS = ("row", "tensor", "global")


@dataclass(frozen=True)
class Pattern:
    """`n` of every `m` consecutive input weights pruned (N:M), or unstructured (n = m = 0)."""

    n: int = 0
    m: int = 0

    @property
    def structured(self) -> bool:
        return self.m > 0

    @property
    def label(self) -> str:
        return f"{self.n}:{self.m}" if self.structured else "unstructured"


def parse_pattern(text: str) -> Pattern:
    """'unstructured' or 'N:M' (N < M, both positive integers)."""
    if text == "unstructured":
        return Pattern()
    match = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not match:
        raise EsaError(f"pattern {text!r} is neither 'unstructured' nor N:M; write e.g. --pattern 2:4")
    n, m = int(match[1]), int(match[2])
    if not 0 < n < m:
        raise EsaError(f"pattern {text!r} needs 0 < N < M (N of every M weights pruned); write e.g. 2:4 or 4:8")
    return Pattern(n, m)


def check_sparsity(sparsity: float | None, pattern: Pattern) -> float:
    """The fraction to prune: `sparsity` in (0, 1) for unstructured, N/M (or a matching value) for N:M."""
    if pattern.structured:
        implied = pattern.n / pattern.m
        if sparsity is not None and not math.isclose(sparsity, implied):
            raise EsaError(f"pattern {pattern.label} prunes exactly {implied:g}; drop the sparsity or set it to {implied:g}")
        return implied
    if sparsity is None or not 0.0 < sparsity < 1.0 or not math.isfinite(sparsity):
        raise EsaError(f"sparsity must be a fraction strictly between 0 and 1, got {sparsity}; write e.g. 0.5")
    return float(sparsity)


def check_group(group: str, pattern: Pattern) -> None:
    if group not in GROUPS:
        raise EsaError(f"group {group!r} is not one of {', '.join(GROUPS)}")
    if pattern.structured and group != "row":
        raise EsaError(f"an N:M pattern prunes within each row's groups of M inputs; use group 'row', not {group!r}")


def check_shape(name: str, n_in: int, pattern: Pattern) -> None:
    """An N:M pattern needs every row to split into whole groups of M."""
    if pattern.structured and n_in % pattern.m:
        raise EsaError(
            f"{name} has {n_in} inputs per row, not a multiple of M={pattern.m}, so it cannot hold {pattern.label}; "
            "exclude it (--exclude) or choose another M"
        )


def n_pruned(numel: int, sparsity: float) -> int:
    """floor(s·numel), Wanda's count (int(W.shape[1] * sparsity_ratio))."""
    return int(numel * sparsity)


def prune_masks(
    scores: dict[str, torch.Tensor], sparsity: float, pattern: Pattern, group: str,
    protected: dict[str, torch.Tensor] | None = None, allocation: dict[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Bool masks (True = prune) shaped like each [out, in] score matrix; see the module docstring.

    `allocation` (group "row" only) gives each tensor its own fraction of every row to prune, as
    k/in from esa.prune.allocate (so k is recovered by rounding)."""
    protected = protected or {}
    guarded = {n: guard_scores(s, protected.get(n)) for n, s in scores.items()}
    if allocation is not None and (pattern.structured or group != "row"):
        raise EsaError("a per-tensor sparsity allocation applies to unstructured pruning within rows (group row)")
    if pattern.structured:
        masks = {n: _n_of_m(n, s, pattern) for n, s in guarded.items()}
    elif allocation is not None:
        masks = {n: _lowest(s, round(s.shape[1] * allocation[n])) for n, s in guarded.items()}
    elif group == "row":
        masks = {n: _lowest(s, n_pruned(s.shape[1], sparsity)) for n, s in guarded.items()}
    elif group == "tensor":
        masks = {n: _lowest(s.reshape(1, -1), n_pruned(s.numel(), sparsity)).view(s.shape) for n, s in guarded.items()}
    else:
        flat = torch.cat([s.reshape(1, -1) for s in guarded.values()], dim=1)
        mask = _lowest(flat, n_pruned(flat.shape[1], sparsity))[0]
        sizes = [s.numel() for s in guarded.values()]
        masks = {n: m.view(s.shape) for (n, s), m in zip(guarded.items(), mask.split(sizes))}
    for name in protected:  # only a protected weight carries an infinite score: nothing to check elsewhere
        if name in masks:
            _check_room(name, guarded[name], masks[name])
    return masks


def guard_scores(score: torch.Tensor, protect: torch.Tensor | None) -> torch.Tensor:
    """float32 scores with protected weights at +inf: chosen last, and never without an error."""
    score = score.float()
    return score if protect is None else score.masked_fill(protect, math.inf)


def _lowest(score: torch.Tensor, k: int) -> torch.Tensor:
    """Per row of `score`, the k lowest as a bool mask: exactly the first k of a stable ascending sort
    (ties to the lower column), found by a linear-time selection instead of the sort: the k-th smallest
    value per row, everything below it, and as many of the ties at it as are still needed, leftmost first."""
    if k == 0:
        return torch.zeros_like(score, dtype=torch.bool)
    if bool(score.isnan().any()):  # a NaN has no place in a selection by value; the sort puts it last
        order = torch.sort(score, dim=-1, stable=True).indices[:, :k]
        return torch.zeros_like(score, dtype=torch.bool).scatter_(1, order, True)
    kth = score.kthvalue(k, dim=-1, keepdim=True).values
    below, tied = score < kth, score == kth
    need = k - below.sum(-1, keepdim=True)
    if bool((tied.sum(-1, keepdim=True) == need).all()):  # the usual case: no tie beyond the k-th itself
        return below | tied
    return below | (tied & (tied.cumsum(-1) <= need))


def _n_of_m(name: str, score: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    out, n_in = score.shape
    check_shape(name, n_in, pattern)
    groups = score.reshape(out, n_in // pattern.m, pattern.m)
    order = torch.sort(groups, dim=-1, stable=True).indices[..., : pattern.n]
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(2, order, True).view(out, n_in)


def _check_room(name: str, score: torch.Tensor, mask: torch.Tensor) -> None:
    if torch.isinf(score[mask]).any():
        raise EsaError(
            f"{name}: some comparison group holds more protected weights than the sparsity target lets it keep; "
            "protect fewer weights (--protect-topk) or lower the sparsity"
        )
