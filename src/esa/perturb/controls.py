"""Control sets: random weights matched to the target tensor by tensor (hence layer by layer).

A perturbation of the target means little alone: perturbing as many random weights of the same
tensors tells how much of the damage any weights there would cause. Both samplers return, for each
parameter of the target, as many distinct flat indices as the target has there (duplicates in the
target count once), drawn uniformly without replacement and by default never from the target,
sorted, int64 on the CPU. The draw depends only on the target, the tensor sizes (and, for the
magnitude-matched control, the weights) and `generator` (CPU; consumed in the target's parameter
order). bottom-k controls come from esa.ranking.top_k(scores, k, mode, largest=False).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from esa.errors import EsaError
from esa.perturb.selection import IndexSets, index_sets, unique_flat_index

log = logging.getLogger("esa")

QUANTILE_SAMPLE = 1 << 20  # larger tensors get their bin edges from a sample this size (sorting all is slow)
SHORTAGE = ("nearest", "error")


def random_matched(
    target: IndexSets | Any,
    shapes: Mapping[str, Any],
    generator: torch.Generator,
    exclude_target: bool = True,
) -> dict[str, torch.Tensor]:
    """Uniformly random weights, per parameter as many as the target has there.

    `shapes` maps each target parameter to its shape (or to anything with `.shape`: tensors, ParamInfo).
    EsaError when a parameter has fewer non-target weights than the target has.
    """
    controls: dict[str, torch.Tensor] = {}
    for name, raw in index_sets(target).items():
        numel = _numel(shapes, name)
        chosen = unique_flat_index(name, raw, numel).cpu()
        excluded = chosen if exclude_target else chosen[:0]
        _check_room(name, chosen.numel(), numel - excluded.numel(), exclude_target)
        controls[name] = _draw(numel, chosen.numel(), excluded, generator)
    return controls


@dataclass
class BorrowedControl:
    """A random control in which tensors too small for a disjoint draw got their share elsewhere."""

    indices: dict[str, torch.Tensor]
    borrowed: list[dict[str, Any]] = field(default_factory=list)  # per short tensor: how it was matched


# Where a short tensor's share comes from, in order: the same role in the nearest layers (e.g. another
# layer's input_layernorm), then the same component (any norm), then any tensor at the nearest depth.
BORROW_LEVELS = ("role", "component", "any")


def random_matched_nearest(target: IndexSets | Any, params: Mapping[str, Any], generator: torch.Generator) -> BorrowedControl:
    """Like `random_matched`, but a tensor without room for a disjoint draw borrows from its neighbours.

    `params` maps every parameter name to its ParamInfo (shape, layer, component, role). A tensor's
    share is drawn from its own non-target weights first; what is missing comes from non-target weights
    of other tensors, nearest first by BORROW_LEVELS and then by depth |layer - layer0| (then by name).
    No weight is drawn twice and none from the target. Without shortage the draw equals
    `random_matched`'s exactly. EsaError only when the whole model has no room left.
    """
    sets = index_sets(target)
    chosen = {n: unique_flat_index(n, raw, _numel(params, n)).cpu() for n, raw in sets.items()}
    counts: dict[str, int] = {}
    borrowed: list[dict[str, Any]] = []
    for name in sets:
        need = chosen[name].numel()
        own = min(need, _numel(params, name) - need)
        counts[name] = counts.get(name, 0) + own
        short = need - own
        if short:
            record = {"param": name, "needed": need, "own": own, "from": []}
            for level, other in _borrow_candidates(name, params):
                room = _numel(params, other) - (chosen[other].numel() if other in chosen else 0) - counts.get(other, 0)
                got = min(short, room)
                if got > 0:
                    counts[other] = counts.get(other, 0) + got
                    record["from"].append({"param": other, "n": got, "level": level})
                    short -= got
                if not short:
                    break
            if short:
                _check_room(name, need, own, True)
            borrowed.append(record)
    indices = {}
    for name, k in counts.items():
        excluded = chosen.get(name, torch.empty(0, dtype=torch.long))
        indices[name] = _draw(_numel(params, name), k, excluded, generator)
    return BorrowedControl(indices, borrowed)


def _borrow_candidates(name: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    me = params[name]
    depth = me.layer if me.layer is not None else -1

    def distance(other: Any) -> int:
        return abs((other.layer if other.layer is not None else -1) - depth)

    out, seen = [], {name}
    for level in BORROW_LEVELS:
        same = [n for n, p in params.items() if n not in seen and (
            level == "any" or (level == "role" and p.role == me.role and p.component == me.component)
            or (level == "component" and p.component == me.component))]
        for n in sorted(same, key=lambda n: (distance(params[n]), n)):
            out.append((level, n))
            seen.add(n)
    return out


def random_matched_magnitude(
    target: IndexSets | Any,
    weights: Mapping[str, torch.Tensor],
    generator: torch.Generator,
    bins: int = 10,
    exclude_target: bool = True,
    on_shortage: str = "nearest",
) -> dict[str, torch.Tensor]:
    """Random weights with the target's magnitude profile, tensor by tensor.

    Matching rule: each tensor W is cut into `bins` magnitude bins at the quantiles of |W| (see
    magnitude_edges; equal-count bins up to ties), and for every target weight in bin b one control
    is drawn from the other weights of bin b. When bin b has fewer other weights than targets (a
    top-k by magnitude fills the top bin), `on_shortage="nearest"` takes the rest from the nearest
    bins with room (distance 1 first, the lower bin before the higher) and logs how many;
    `"error"` raises EsaError instead. `weights` must hold the unperturbed weights.
    Memory: O(numel) for the largest tensor (its magnitudes and bin numbers).
    """
    if not (isinstance(bins, int) and bins >= 1):
        raise EsaError(f"magnitude matching needs a whole number of bins >= 1, got {bins!r}")
    if on_shortage not in SHORTAGE:
        raise EsaError(f"on_shortage must be one of {', '.join(SHORTAGE)}, got {on_shortage!r}")
    controls: dict[str, torch.Tensor] = {}
    for name, raw in index_sets(target).items():
        if name not in weights:
            raise EsaError(f"no weights given for {name}, which the target selects from")
        weight = weights[name].detach()
        chosen = unique_flat_index(name, raw, weight.numel()).cpu()
        excluded = chosen if exclude_target else chosen[:0]
        _check_room(name, chosen.numel(), weight.numel() - excluded.numel(), exclude_target)
        bin_of = magnitude_bins(weight, magnitude_edges(weight, bins))
        excluded = excluded.to(bin_of.device)
        need = _histogram(bin_of[chosen.to(bin_of.device)], bins)
        room = [a - b for a, b in zip(_histogram(bin_of, bins), _histogram(bin_of[excluded], bins))]
        take = _allocate(name, need, room, on_shortage)
        controls[name] = _draw_from_bins(bin_of, take, excluded, generator)
    return controls


def magnitude_edges(weight: torch.Tensor, bins: int) -> torch.Tensor:
    """The bins-1 inner bin edges of |weight|: its quantiles at 1/bins, 2/bins, ... (float32, on the CPU).

    For tensors over 2^20 values the quantiles are those of 2^20 values drawn with a fixed seed
    (torch.quantile sorts its input and refuses over 2^24): bins then hold equal counts to within ~1%
    (one bin's count fraction has a relative spread of ~0.3%); membership and counts are exact for these edges.
    """
    magnitude = weight.detach().reshape(-1).abs().float()
    if magnitude.numel() > QUANTILE_SAMPLE:
        sample = torch.randint(magnitude.numel(), (QUANTILE_SAMPLE,), generator=torch.Generator().manual_seed(0))
        magnitude = magnitude[sample.to(magnitude.device)]
    levels = torch.arange(1, bins, dtype=torch.float32, device=magnitude.device) / bins
    return torch.quantile(magnitude, levels).cpu()


def magnitude_bins(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Bin number of every value of `values` (flattened): b holds edges[b-1] <= |w| < edges[b]."""
    magnitude = values.detach().reshape(-1).abs().float()
    return torch.bucketize(magnitude, edges.to(magnitude.device), right=True)


def _allocate(name: str, need: list[int], room: list[int], on_shortage: str) -> list[int]:
    """How many controls to draw from each bin: the target's own bin first, then the nearest with room."""
    take = [min(n, r) for n, r in zip(need, room)]
    spare = [r - t for r, t in zip(room, take)]
    moved = 0
    for b, n in enumerate(need):
        short = n - take[b]
        if short and on_shortage == "error":
            raise EsaError(
                f"magnitude bin {b} of {name} holds {n} target weights but only {room[b]} others; "
                "use fewer bins or on_shortage='nearest'"
            )
        for d in range(1, len(need)):
            for c in (b - d, b + d):
                if short and 0 <= c < len(need):
                    got = min(short, spare[c])
                    take[c] += got
                    spare[c] -= got
                    short -= got
                    moved += got
    if moved:
        log.warning(
            "magnitude-matched control for %s: %d of %d weights come from a neighbouring magnitude bin "
            "(the target fills its own)", name, moved, sum(need)
        )
    return take


def _draw_from_bins(
    bin_of: torch.Tensor, take: list[int], excluded: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """take[b] random flat indices from each bin b, none in `excluded`; sorted, on the CPU."""
    excluded_bins = bin_of[excluded]
    picks = [excluded.new_empty(0).cpu()]
    for b, k in enumerate(take):
        if k:
            pool = (bin_of == b).nonzero().squeeze(1)  # the flat indices in bin b, ascending
            skip = torch.searchsorted(pool, excluded[excluded_bins == b]).cpu()
            picks.append(pool[_draw(pool.numel(), k, skip, generator).to(pool.device)].cpu())
    return torch.cat(picks).sort().values


def _histogram(bin_numbers: torch.Tensor, bins: int) -> list[int]:
    return torch.bincount(bin_numbers, minlength=bins).tolist()


def _check_room(name: str, k: int, room: int, exclude_target: bool) -> None:
    if room < k:
        others = "other weights" if exclude_target else "weights"
        raise EsaError(
            f"the target has {k} weights in {name}, so a matched control needs {k} more, but {name} has only "
            f"{room} {others}: lower --topk or leave {name} out (--exclude)"
        )


def _draw(n: int, k: int, excluded: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`k` distinct integers from [0, n) outside `excluded` (sorted, distinct), uniform, sorted."""
    if k == 0:
        return excluded[:0]
    if n <= 4 * (k + excluded.numel()):  # dense: list the candidates, O(n) = O(k) here
        keep = torch.ones(n, dtype=torch.bool)
        keep[excluded] = False
        pool = keep.nonzero().squeeze(1)
        return pool[torch.randperm(pool.numel(), generator=generator)[:k]].sort().values
    # sparse: sequential draws with rejection; each is accepted with probability >= 3/4
    chosen = torch.empty(0, dtype=torch.long)
    while chosen.numel() < k:
        draw = torch.randint(n, (2 * (k - chosen.numel()) + 16,), generator=generator)
        chosen = _first_occurrences(torch.cat([chosen, draw[~torch.isin(draw, excluded)]]))
    return chosen[:k].sort().values


def _first_occurrences(x: torch.Tensor) -> torch.Tensor:
    """The distinct values of `x` in order of first appearance (what sequential rejection would keep)."""
    values, inverse = torch.unique(x, return_inverse=True)
    first = torch.full((values.numel(),), x.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(x.numel()), "amin")
    return x[first.sort().values]


def _numel(shapes: Mapping[str, Any], name: str) -> int:
    if name not in shapes:
        raise EsaError(f"no shape given for {name}, which the target selects from")
    shape = shapes[name].shape if hasattr(shapes[name], "shape") else shapes[name]
    numel = 1
    for size in shape:
        numel *= int(size)
    return numel

