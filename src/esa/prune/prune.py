"""`prune`: score, choose masks, write them into the model, evaluate, and give the model back bit-exactly.

One-shot (default): every target is scored on the dense model (or its inputs' Hessians taken, for
sparsegpt) and pruned at once. Sequential (`sequential=True`, what Wanda and SparseGPT do): decoder
blocks are pruned in order, each scored (or its Hessians taken) on the model whose earlier blocks are
already pruned; a block's sublayers share one pass in which the block itself is still dense.

Mask-only pruning zeroes weights through esa.perturb.apply_perturbation (the `zero` perturbation:
original bits saved, checksummed, restored on exit). SparseGPT also rewrites the weights it keeps, so
each rewritten tensor is copied whole before the write and restored from the copy, proven by the
same checksum. With `keep=True` the pruned model stays in memory (to save it); the copies that would
undo it are then held only until the condition has finished, so a failure still restores the model.
Memory: a score tensor per target (float32), the masks, and the saved bits (mask-only) or tensors.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from esa.data import WindowSet
from esa.errors import EsaError
from esa.evaluation.perplexity import evaluate as evaluate_ppl
from esa.models.types import LoadedModel
from esa.perturb import apply_perturbation, tensor_checksum
from esa.prune.allocate import DEFAULT_SPREAD, allocate_sparsity
from esa.prune.calibration import input_hessians
from esa.prune.patterns import (
    Pattern, check_group, check_shape, check_sparsity, guard_scores, n_pruned, parse_pattern, prune_masks,
)
from esa.prune.scores import CURVATURE, ESA, ESA_ALLOCATE_BY, ESA_RANK, SPARSEGPT, check_score, weight_scores
from esa.prune.sparsegpt import sparsegpt_layer
from esa.prune.targets import Target, find_targets
from esa.ranking import top_k


@dataclass
class PruneResult:
    """One pruning condition: what was asked, what the weights show, and how the pruned model scores.

    `achieved_sparsity` and `per_tensor` count zeros in the pruned weights (pre-existing zeros
    included), over the targets. `ppl`/`accuracy`/`bits_per_byte` are on the evaluation windows
    (None when `evaluate=False`); `zero_shot` is what the `tasks` callable returned for the pruned
    model. `obs_loss` is SparseGPT's Σ e² per tensor.
    """

    score: str
    pattern: str
    group: str
    sparsity: float
    mode: str  # "one-shot" | "sequential"
    seed: int
    achieved_sparsity: float
    per_tensor: dict[str, float]
    n_weights: int
    n_zero: int
    n_protected: int
    ppl: float | None
    accuracy: float | None
    bits_per_byte: float | None
    kept: bool
    targets: list[str]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    obs_loss: dict[str, float] = field(default_factory=dict)
    zero_shot: dict[str, Any] | None = None
    allocation: dict[str, Any] | None = None  # {"by", "spread", "sparsity": {tensor: fraction of each row}}

    def row(self) -> dict[str, Any]:
        """The flat table row (prune_results.csv)."""
        return {
            "score": self.score, "pattern": self.pattern, "group": self.group, "sparsity": self.sparsity,
            "mode": self.mode, "seed": self.seed, "achieved_sparsity": self.achieved_sparsity,
            "n_protected": self.n_protected, "ppl": self.ppl, "accuracy": self.accuracy,
            "bits_per_byte": self.bits_per_byte, "time_s": self.timings.get("total_s"),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune(
    lm: LoadedModel,
    windows: WindowSet,
    *,
    score: str,
    sparsity: float | None = None,
    pattern: str = "unstructured",
    group: str = "row",
    protect_topk: int = 0,
    protect_metric: str | None = None,
    protect_superweights: Sequence[tuple[str, int]] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    sequential: bool = False,
    seed: int = 0,
    batch_size: int = 1,
    evaluate: bool = True,
    keep: bool = False,
    scores: dict[str, torch.Tensor] | None = None,
    allocate_by: str | None = None,
    spread: float = DEFAULT_SPREAD,
    allocation_scores: dict[str, torch.Tensor] | None = None,
    tasks: Callable[[], dict[str, Any]] | None = None,
) -> PruneResult:
    """Prune `lm` under one condition and evaluate it; see the module docstring.

    `protect_superweights` lists (parameter, flat index) positions never to prune (e.g. from
    `superweight_positions`); `scores` passes precomputed one-shot scores of `score` (reuse across
    sparsities). `allocate_by` (a curvature metric: grad_squared, hutchinson_diag) gives each tensor
    its own sparsity within s ± `spread` by esa.prune.allocate (unstructured, group row; the `esa`
    score does this with ESA_ALLOCATE_BY and DEFAULT_SPREAD); `allocation_scores` are its precomputed
    scores. The model comes back bit-exactly unless `keep`.
    """
    start = time.perf_counter()
    pat = parse_pattern(pattern)
    frac = check_sparsity(sparsity, pat)
    check_group(group, pat)
    check_score(score)
    allocate_by, spread = resolve_allocation(score, allocate_by, spread, pat, group)
    if sequential and group == "global":
        raise EsaError("sequential pruning goes block by block, so it cannot compare weights globally; use row or tensor")
    if score == SPARSEGPT and group == "global":
        raise EsaError("sparsegpt chooses masks per block of columns; use group 'row' or 'tensor'")
    if protect_topk < 0:
        raise EsaError(f"protect_topk must be >= 0, got {protect_topk}")
    if protect_topk and protect_metric is None and score == SPARSEGPT:
        raise EsaError("protect_topk with sparsegpt needs protect_metric (a registered metric)")
    if protect_metric is not None:
        check_score(protect_metric)
    if scores is not None and (sequential or score == SPARSEGPT):
        raise EsaError("precomputed scores apply to one-shot mask pruning only")
    if not windows.calib_offsets or (evaluate and not windows.eval_offsets):
        raise EsaError("pruning needs calibration windows (and evaluation windows to evaluate); raise n_calib/n_eval")
    targets = find_targets(lm, include, exclude)
    for t in targets:
        check_shape(t.name, t.n_in, pat)
    protect_positions = _check_positions(lm, targets, protect_superweights)
    n_weights = sum(t.info.numel for t in targets)
    if protect_topk + len(protect_positions) > n_weights - n_pruned(n_weights, frac):
        raise EsaError(
            f"protecting {protect_topk + len(protect_positions)} weights leaves too few to prune {frac:g} of "
            f"{n_weights}; protect fewer (--protect-topk) or lower the sparsity"
        )
    notes: list[str] = []
    timings: dict[str, float] = {}
    protected = _protected(lm, windows, targets, protect_topk, protect_metric or score, protect_positions,
                           seed, batch_size, notes)
    named = dict(lm.model.named_parameters(remove_duplicate=False))
    writes = _Writes(named, keep, seed)
    obs_loss: dict[str, float] = {}
    allocation: dict[str, float] = {}
    try:
        stages = _stages(targets) if sequential else [targets]
        for stage in stages:
            if score == SPARSEGPT:
                obs_loss.update(_sparsegpt_stage(lm, windows, stage, frac, pat, group, protected, writes,
                                                 batch_size, notes, sequential, (allocate_by, spread, allocation_scores),
                                                 allocation, seed))
            else:
                _mask_stage(lm, windows, stage, score, frac, pat, group, protected, writes, seed, batch_size,
                            notes, scores, (allocate_by, spread, allocation_scores), allocation)
        timings["prune_s"] = time.perf_counter() - start
        per_tensor, n_zero = _count_zeros(named, targets)
        ppl = accuracy = bpb = None
        if evaluate:
            t0 = time.perf_counter()
            measured = windows if windows.text_measures is not None else windows.with_text_measures(lm.tokenizer)
            result = evaluate_ppl(lm.model, measured, "eval", batch_size, allow_nonfinite=True)
            ppl, accuracy, bpb = result.ppl, result.accuracy, result.bits_per_byte
            timings["eval_s"] = time.perf_counter() - t0
        zero_shot = tasks() if tasks is not None else None
    except BaseException:
        writes.restore()  # a failed condition never leaves a half-pruned model, kept or not
        raise
    writes.commit() if keep else writes.restore()
    timings["total_s"] = time.perf_counter() - start
    return PruneResult(
        score=score if isinstance(score, str) else getattr(score, "name", str(score)),
        pattern=pat.label, group=group, sparsity=frac, mode="sequential" if sequential else "one-shot",
        seed=seed, achieved_sparsity=n_zero / n_weights, per_tensor=per_tensor, n_weights=n_weights,
        n_zero=n_zero, n_protected=sum(int(m.sum()) for m in protected.values()), ppl=ppl, accuracy=accuracy,
        bits_per_byte=bpb, kept=keep, targets=[t.name for t in targets], notes=list(dict.fromkeys(notes)),
        timings=timings, obs_loss=obs_loss, zero_shot=zero_shot,
        allocation={"by": allocate_by, "spread": spread, "sparsity": allocation} if allocate_by else None,
    )


def resolve_allocation(score: str, allocate_by: str | None, spread: float, pat: Pattern, group: str) -> tuple[str | None, float]:
    """The allocation a condition uses (the `esa` score's own where it applies, else what was asked), or EsaError."""
    if not 0 <= spread < 1:
        raise EsaError(f"--spread must be in [0, 1), got {spread}")
    if score == ESA and allocate_by is None and not pat.structured and group == "row":
        allocate_by = ESA_ALLOCATE_BY
    if allocate_by is None:
        return None, spread
    if allocate_by not in CURVATURE:
        raise EsaError(f"--allocate-by needs a curvature metric ({', '.join(CURVATURE)}), got {allocate_by!r}")
    if pat.structured or group != "row":
        raise EsaError("per-tensor sparsity allocation applies to unstructured pruning within rows (--group row)")
    return allocate_by, spread


def _stages(targets: list[Target]) -> list[list[Target]]:
    """Decoder blocks in order, then every target outside the blocks."""
    layers = sorted({t.info.layer for t in targets if t.info.layer is not None})
    stages = [[t for t in targets if t.info.layer == layer] for layer in layers]
    rest = [t for t in targets if t.info.layer is None]
    return stages + ([rest] if rest else [])


def _mask_stage(
    lm: LoadedModel, windows: WindowSet, stage: list[Target], score: str, frac: float, pat: Pattern, group: str,
    protected: dict[str, torch.Tensor], writes: _Writes, seed: int, batch_size: int, notes: list[str],
    scores: dict[str, torch.Tensor] | None, allocate: tuple[str | None, float, dict[str, torch.Tensor] | None],
    allocation: dict[str, float],
) -> None:
    names = [t.name for t in stage]
    if scores is None:
        scores, more = weight_scores(lm, windows, score, names, seed=seed, batch_size=batch_size)
        notes += more
    usable = _scored(stage, scores, score, notes)
    mats = {t.name: t.matrix(scores[t.name]) for t in usable}
    guard = {t.name: t.matrix(protected[t.name]) for t in usable if t.name in protected}
    shares = None
    if allocate[0] is not None:
        usable, shares = _allocate(lm, windows, usable, mats, guard, allocate, frac, writes, seed, batch_size, notes)
        mats = {t.name: mats[t.name] for t in usable}
        allocation.update(shares)
    masks = prune_masks(mats, frac, pat, group, guard, shares)
    for t in usable:
        writes.zero(t.name, t.unmatrix(masks[t.name]).reshape(-1).nonzero().squeeze(1))


def _allocate(
    lm: LoadedModel, windows: WindowSet, usable: list[Target], mats: dict[str, torch.Tensor],
    guard: dict[str, torch.Tensor], allocate: tuple[str | None, float, dict[str, torch.Tensor] | None], frac: float,
    writes: _Writes, seed: int, batch_size: int, notes: list[str],
) -> tuple[list[Target], dict[str, float]]:
    """Per-tensor shares from the curvature metric (esa.prune.allocate), `mats` ordering each row."""
    by, spread, curvature = allocate
    if curvature is None:
        curvature, more = weight_scores(lm, windows, by, [t.name for t in usable], seed=seed, batch_size=batch_size)
        notes += more
    usable = _scored(usable, curvature, by, notes)
    saliency = {t.name: t.matrix(curvature[t.name]) * t.matrix(writes.tensor(t.name)).float().square() for t in usable}
    order = {t.name: guard_scores(mats[t.name], guard.get(t.name)) for t in usable}
    return usable, allocate_sparsity(order, saliency, frac, spread)


def _sparsegpt_stage(
    lm: LoadedModel, windows: WindowSet, stage: list[Target], frac: float, pat: Pattern, group: str,
    protected: dict[str, torch.Tensor], writes: _Writes, batch_size: int, notes: list[str], sequential: bool,
    allocate: tuple[str | None, float, dict[str, torch.Tensor] | None], allocation: dict[str, float], seed: int,
) -> dict[str, float]:
    usable = [t for t in stage if t.module is not None]
    skipped = [t.name for t in stage if t.module is None]
    if skipped:
        notes.append(f"sparsegpt prunes weights applied by Linear/Conv1D modules only; left dense: {', '.join(skipped)}")
    shares = None
    if allocate[0] is not None:  # the cost curves follow Wanda's order, SparseGPT's own masks at each share
        order, more = weight_scores(lm, windows, ESA_RANK, [t.name for t in usable], seed=seed, batch_size=batch_size)
        notes += more
        usable = _scored(usable, order, ESA_RANK, notes)
        guard = {t.name: t.matrix(protected[t.name]) for t in usable if t.name in protected}
        usable, shares = _allocate(lm, windows, usable, {t.name: t.matrix(order[t.name]) for t in usable}, guard,
                                   allocate, frac, writes, seed, batch_size, notes)
        allocation.update(shares)
    layer = stage[0].info.layer if sequential else None
    hessians = input_hessians(lm.model, windows, usable, batch_size, upto=layer)
    losses = {}
    for t in usable:
        weight = writes.tensor(t.name)
        keep = t.matrix(protected[t.name]) if t.name in protected else None
        out = sparsegpt_layer(t.matrix(weight), hessians.pop(t.name), sparsity=shares[t.name] if shares else frac,
                              pattern=pat, group=group, protected=keep)
        writes.replace(t.name, t.unmatrix(out.weight))
        losses[t.name] = out.obs_loss
    return losses


def _scored(stage: list[Target], scores: dict[str, torch.Tensor], score: str, notes: list[str]) -> list[Target]:
    left = [t.name for t in stage if t.name not in scores]
    if left:
        notes.append(f"{score} does not score {len(left)} target tensor(s), left dense: {', '.join(left)}")
    usable = [t for t in stage if t.name in scores]
    if not usable:
        raise EsaError(f"{score} scores none of the targets; choose another score or other --include targets")
    return usable


def _check_positions(lm: LoadedModel, targets: list[Target], positions: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    names = {t.name: t for t in targets}
    out = []
    for name, flat in positions:
        if name not in lm.params:
            raise EsaError(f"protected weight {name}[{flat}] names no parameter of this model")
        if name in names and not 0 <= flat < names[name].info.numel:
            raise EsaError(f"protected weight {name}[{flat}] is outside the tensor ({names[name].info.numel} weights)")
        if name in names:
            out.append((name, int(flat)))
    return list(dict.fromkeys(out))


def _protected(
    lm: LoadedModel, windows: WindowSet, targets: list[Target], k: int, metric: str,
    positions: list[tuple[str, int]], seed: int, batch_size: int, notes: list[str],
) -> dict[str, torch.Tensor]:
    """Bool masks (parameter-shaped) of the weights never to prune: the global top-k under `metric`
    over the targets, and the given positions."""
    masks: dict[str, torch.Tensor] = {}

    def mark(name: str, flat: torch.Tensor) -> None:
        shape = lm.params[name].shape
        mask = masks.setdefault(name, torch.zeros(shape, dtype=torch.bool))
        mask.view(-1)[flat] = True

    if k:
        scores, more = weight_scores(lm, windows, metric, [t.name for t in targets], seed=seed, batch_size=batch_size)
        notes += more
        for name, flat in top_k({t.name: scores[t.name] for t in targets if t.name in scores}, k, "global").by_param().items():
            mark(name, flat.cpu())
    for name, flat in positions:
        mark(name, torch.tensor([flat]))
    return masks


def _count_zeros(named: dict[str, torch.Tensor], targets: list[Target]) -> tuple[dict[str, float], int]:
    per_tensor, total = {}, 0
    for t in targets:
        zeros = int((named[t.name].detach() == 0).sum())
        per_tensor[t.name] = zeros / t.info.numel
        total += zeros
    return per_tensor, total


class _Writes:
    """Every write into the model, and how to undo it exactly (see the module docstring)."""

    def __init__(self, named: dict[str, torch.Tensor], keep: bool, seed: int) -> None:
        self.named, self.keep = named, keep
        self.stack = ExitStack()
        self.generator = torch.Generator().manual_seed(seed)  # the zero perturbation draws nothing
        self.saved: list[tuple[str, torch.Tensor, tuple[int, ...]]] = []

    def tensor(self, name: str) -> torch.Tensor:
        return self.named[name].detach()

    def zero(self, name: str, flat: torch.Tensor) -> None:
        if self.keep:  # the perturbation context would restore on exit; a kept model needs a plain write
            tensor = self.tensor(name)
            self.replace(name, tensor.clone().view(-1).index_fill_(0, flat.to(tensor.device), 0).view(tensor.shape))
        else:
            self.stack.enter_context(apply_perturbation(self.named, {name: flat}, "zero", self.generator))

    def replace(self, name: str, values: torch.Tensor) -> None:
        tensor = self.tensor(name)
        self.saved.append((name, tensor.clone(), tensor_checksum(tensor)))
        with torch.no_grad():
            tensor.copy_(values)

    def commit(self) -> None:
        """Keep every write: drop the copies that would undo them."""
        self.saved.clear()
        self.stack.close()

    def restore(self) -> None:
        """Undo every write, last first; a tensor whose checksum differs afterwards is a bug."""
        for name, original, _ in reversed(self.saved):
            with torch.no_grad():
                self.tensor(name).copy_(original)
        broken = [name for name, _, checksum in self.saved if tensor_checksum(self.tensor(name)) != checksum]
        self.saved.clear()
        self.stack.close()
        if broken:
            raise RuntimeError(f"restoring after pruning left {', '.join(broken)} different from before; reload the model")
