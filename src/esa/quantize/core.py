"""`esa.quantize`: quantize the linear layers of a model one way, evaluate it, and restore it.

One call is one configuration (method, bits or a bit budget, group size, protection). The steps, each
in its own module: find the targets (targets.py); choose the kept weights (protect.py, from scores of
the unmodified model, scores.py); choose bits per tensor (uniform, or allocate.py under a budget);
quantize-dequantize every target in place (rtn.py, or gptq.py block by block with calibrate.py's
Hessians); evaluate; put every original bit back and prove it by checksum (unless `keep_quantized`,
for saving with esa.quantize.export, after which `QuantResult.restore()` does it).
Memory: a copy of the target weights (to restore) plus, with GPTQ, one block's Hessians.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from esa.data import WindowSet
from esa.errors import EsaError
from esa.evaluation import EvalResult, evaluate
from esa.metrics import METRICS
from esa.models import LoadedModel, input_device
from esa.models.layout import find_decoder_blocks
from esa.perturb.checksum import tensor_checksum
from esa.quantize.allocate import OBJECTIVE, allocate, storage
from esa.quantize.calibrate import block_hessians
from esa.quantize.cost import kept_bits
from esa.quantize.gptq import gptq
from esa.quantize.protect import Protection, protect
from esa.quantize.rtn import SUPPORTED_BITS, QuantizedMatrix, rtn
from esa.quantize.scores import ScoreCache, metric_scores, superweights
from esa.quantize.targets import Target, find_targets

METHODS = ("rtn", "gptq")


@dataclass
class QuantResult:
    """One configuration, evaluated. `plan` maps each quantized tensor to {"bits", "group_size"}."""

    method: str
    bits: int | None  # None: mixed precision
    group_size: int
    symmetric: bool
    act_order: bool
    budget_bits: float | None
    allocate_by: str | None
    keep_metric: str | None
    keep_superweights: bool
    plan: dict[str, dict[str, int]]
    kept: list[dict[str, Any]]  # one row per weight kept in 16 bits (param, index, value, reason)
    n_weights: int  # weights in the quantized tensors
    effective_bits: float  # (codes + scales + zero points + kept weights) / n_weights
    eval: EvalResult
    zero_shot: dict[str, Any] | None = None  # what the `tasks` callable returned for the quantized model
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds; "layer.<i>" per GPTQ block
    notes: list[str] = field(default_factory=list)
    quantized: dict[str, QuantizedMatrix] | None = None  # with keep_quantized: codes and grids, for export
    _originals: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    _checksums: dict[str, tuple[int, ...]] | None = field(default=None, repr=False)
    _targets: list[Target] | None = field(default=None, repr=False)

    @property
    def n_kept(self) -> int:
        return len(self.kept)

    @property
    def ppl(self) -> float:
        return self.eval.ppl

    @property
    def label(self) -> str:
        """A short name: "gptq 4b g64 asym +sw +top-1000 grad_squared" or "rtn mixed 4.25b g64 ..."."""
        parts = [self.method, f"{self.bits}b" if self.bits else f"mixed {self.budget_bits:g}b by {self.allocate_by}",
                 f"g{self.group_size}" if self.group_size else "per-channel", "sym" if self.symmetric else "asym"]
        if self.act_order:
            parts.append("act-order")
        if self.keep_metric and self.n_kept:
            parts.append(f"+top {self.keep_metric}")
        if self.keep_superweights:
            parts.append("+super weights")
        return " ".join(parts)

    def row(self) -> dict[str, Any]:
        """One flat, JSON/CSV-ready row (the quant_results table)."""
        return {
            "label": self.label, "method": self.method, "bits": self.bits, "group_size": self.group_size,
            "symmetric": self.symmetric, "act_order": self.act_order, "budget_bits": self.budget_bits,
            "allocate_by": self.allocate_by, "keep_metric": self.keep_metric,
            "keep_superweights": self.keep_superweights, "n_kept": self.n_kept, "n_weights": self.n_weights,
            "effective_bits": self.effective_bits, "ppl": self.eval.ppl, "accuracy": self.eval.accuracy,
            "mean_nll": self.eval.mean_nll, "bits_per_byte": self.eval.bits_per_byte,
            "seconds": sum(v for k, v in self.seconds.items() if not k.startswith("layer.")),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the row, the plan, the kept weights, timings, notes, zero-shot scores (no tensors)."""
        evaluation = {k: v for k, v in asdict(self.eval).items() if k not in ("window_nll", "window_accuracy")}
        return {**self.row(), "plan": self.plan, "kept": self.kept, "seconds_by_stage": self.seconds,
                "notes": self.notes, "zero_shot": self.zero_shot, "eval": evaluation}

    def restore(self) -> None:
        """Put the original weights back (after `keep_quantized=True`), proven by checksum."""
        if self._originals is None or self._targets is None or self._checksums is None:
            return
        _restore(self._targets, self._originals, self._checksums)
        self._originals = None


def quantize(
    lm: LoadedModel, windows: WindowSet, *, bits: int | None, group_size: int, method: str = "rtn",
    symmetric: bool = False, act_order: bool = False, keep_topk: int = 0, keep_metric: str | None = None,
    keep_fraction: float | None = None, keep_superweights: bool = False, budget_bits: float | None = None,
    allocate_by: str | None = None, widths: tuple[int, ...] = SUPPORTED_BITS, seed: int = 0,
    batch_size: int = 4, damp: float = 0.01, keep_quantized: bool = False, cache: ScoreCache | None = None,
    tasks: Callable[[], dict[str, Any]] | None = None, progress: bool = False,
) -> QuantResult:
    """Quantize-dequantize the linear layers of `lm` in its dtype, evaluate on `windows`' eval split,
    and restore the model bit-exactly (unless `keep_quantized`).

    `bits` is the uniform width; with `budget_bits` (average effective bits, everything counted) and
    `allocate_by` (a metric), each tensor gets a width from `widths` instead (`bits` must then be None).
    `keep_topk` weights (or `keep_fraction` of the targets) with the highest `keep_metric` score, and
    with `keep_superweights` every validated super weight, stay unquantized. Pass one `cache` to
    several calls on the same model and windows to score once. `tasks`, if given, is called while the
    model is quantized (zero-shot scoring, say) and its answer kept as `zero_shot`.
    """
    targets = find_targets(lm)
    n_weights = sum(t.numel for t in targets)
    k = _check(targets, n_weights, bits, group_size, method, keep_topk, keep_metric, keep_fraction, budget_bits,
               allocate_by, widths, symmetric)
    cache = cache if cache is not None else ScoreCache()
    seconds: dict[str, float] = {}
    notes: list[str] = []
    names = [t.name for t in targets]
    opts = {"seed": seed, "batch_size": batch_size, "progress": progress}

    start = time.perf_counter()
    scores = metric_scores(lm, windows, keep_metric, names, cache, **opts) if k else None
    sw = superweights(lm, windows, cache, **opts) if keep_superweights else []
    if keep_superweights and not sw:
        notes.append("no super weight was detected, so none was kept")
    protection = protect(targets, scores, k, keep_metric, sw)
    seconds["protect"] = time.perf_counter() - start

    extra_bits = sum(kept_bits(int(m.sum()), m.numel()) for m in protection.masks.values())
    if budget_bits is not None:
        start = time.perf_counter()
        sens = metric_scores(lm, windows, allocate_by, names, cache, **opts)
        plan_bits = allocate(targets, sens, protection.masks, budget=math.floor(budget_bits * n_weights) - extra_bits,
                             widths=widths, group_size=group_size, symmetric=symmetric).bits
        notes.append(f"allocation objective: {OBJECTIVE}")
        seconds["allocate"] = time.perf_counter() - start
    else:
        plan_bits = {t.name: bits for t in targets}
    plan = {n: {"bits": b, "group_size": group_size} for n, b in plan_bits.items()}
    total_bits = sum(storage(t, plan_bits[t.name], group_size, symmetric) for t in targets) + extra_bits

    originals = {t.name: t.param.detach().clone() for t in targets}
    checksums = {t.name: tensor_checksum(t.param) for t in targets}
    try:
        start = time.perf_counter()
        quantized = _quantize_all(lm, windows, targets, plan_bits, group_size, symmetric, method, act_order,
                                  protection, damp, batch_size, seconds, notes)
        seconds["quantize"] = time.perf_counter() - start
        start = time.perf_counter()
        measured = windows if windows.text_measures is not None else windows.with_text_measures(lm.tokenizer)
        result = evaluate(lm.model, measured, "eval", batch_size, progress, allow_nonfinite=True)
        seconds["evaluate"] = time.perf_counter() - start
        zero_shot = tasks() if tasks is not None else None
    except BaseException:
        _restore(targets, originals, checksums)
        raise
    if not keep_quantized:
        _restore(targets, originals, checksums)
    return QuantResult(
        method=method, bits=bits, group_size=group_size, symmetric=symmetric, act_order=act_order,
        budget_bits=budget_bits, allocate_by=allocate_by, keep_metric=keep_metric if k else None,
        keep_superweights=keep_superweights, plan=plan, kept=protection.rows, n_weights=n_weights,
        effective_bits=total_bits / n_weights, eval=result, zero_shot=zero_shot, seconds=seconds, notes=notes, quantized=quantized if keep_quantized else None,
        _originals=originals if keep_quantized else None, _checksums=checksums, _targets=targets,
    )


def _quantize_all(
    lm: LoadedModel, windows: WindowSet, targets: list[Target], plan_bits: dict[str, int], group_size: int,
    symmetric: bool, method: str, act_order: bool, protection: Protection, damp: float, batch_size: int,
    seconds: dict[str, float], notes: list[str],
) -> dict[str, QuantizedMatrix]:
    """Quantize every target in place; GPTQ goes block by block, calibrated on the quantized blocks before."""
    out: dict[str, QuantizedMatrix] = {}

    def keep(t: Target) -> torch.Tensor | None:
        mask = protection.mask(t.name)
        return None if mask is None else t.to_matrix(mask)

    def by_rtn(t: Target) -> None:
        out[t.name] = rtn(t.matrix(), plan_bits[t.name], group_size, symmetric, keep(t))
        t.write(out[t.name].dequantized)

    if method == "rtn":
        for t in targets:
            by_rtn(t)
        return out
    _, blocks = find_decoder_blocks(lm.model)
    assert blocks is not None  # every target sits in a decoder block
    fused = [t for t in targets if t.fused_experts]
    if fused:
        notes.append(f"GPTQ needs each expert's own inputs: {len(fused)} fused expert tensors were rounded (RTN)")
    for layer in sorted({t.info.layer for t in targets}):
        start = time.perf_counter()
        mine = [t for t in targets if t.info.layer == layer]
        for t in (t for t in mine if t.fused_experts):
            by_rtn(t)
        linear = [t for t in mine if not t.fused_experts]
        device = input_device(lm.model)
        hessians = block_hessians(lm.model, blocks[layer], linear, windows.batches("calib", batch_size, device))
        for t in linear:
            out[t.name] = gptq(t.matrix(), hessians[t.name].to(t.param.device), plan_bits[t.name], group_size,
                               symmetric, act_order=act_order, keep=keep(t), damp=damp)
            t.write(out[t.name].dequantized)
        seconds[f"layer.{layer}"] = time.perf_counter() - start
    return out


def _restore(targets: list[Target], originals: dict[str, torch.Tensor], checksums: dict[str, tuple[int, ...]]) -> None:
    for t in targets:
        with torch.no_grad():
            t.param.copy_(originals[t.name])
        if tensor_checksum(t.param) != checksums[t.name]:
            raise RuntimeError(f"restoring {t.name} did not give back its original bits")


def check_configuration(
    lm: LoadedModel, *, bits: int | None, group_size: int, method: str = "rtn", symmetric: bool = False,
    act_order: bool = False, keep_topk: int = 0, keep_metric: str | None = None, keep_fraction: float | None = None,
    keep_superweights: bool = False, budget_bits: float | None = None, allocate_by: str | None = None,
    widths: tuple[int, ...] = SUPPORTED_BITS,
) -> int:
    """EsaError for any problem with one configuration (what `quantize` checks first); the number of
    top weights it keeps. Lets a caller check a whole grid before quantizing any of it."""
    targets = find_targets(lm)
    return _check(targets, sum(t.numel for t in targets), bits, group_size, method, keep_topk, keep_metric,
                  keep_fraction, budget_bits, allocate_by, widths, symmetric)


def _check(
    targets: list[Target], n_weights: int, bits: int | None, group_size: int, method: str, keep_topk: int,
    keep_metric: str | None, keep_fraction: float | None, budget_bits: float | None, allocate_by: str | None,
    widths: tuple[int, ...], symmetric: bool,
) -> int:
    """Every input problem as one EsaError before any work; returns the number of top weights to keep."""
    supported = ", ".join(map(str, SUPPORTED_BITS))
    if method not in METHODS:
        raise EsaError(f"unknown quantization method {method!r}; choose one of {', '.join(METHODS)}")
    if not targets:
        raise EsaError("the model has no linear layers inside decoder blocks to quantize")
    if budget_bits is None:
        if bits not in SUPPORTED_BITS:
            raise EsaError(f"--bits {bits} is not supported; choose from {supported}")
        if allocate_by is not None:
            raise EsaError("--allocate-by needs --budget-bits; give both, or neither for uniform bits")
    elif bits is not None:
        raise EsaError("give either uniform --bits or --budget-bits with --allocate-by, not both")
    if any(b not in SUPPORTED_BITS for b in widths):
        raise EsaError(f"allocation widths {widths} include an unsupported width; choose from {supported}")
    if group_size < 0:
        raise EsaError(f"--group-size must be 0 (per output channel) or positive, got {group_size}")
    for t in targets:
        if group_size and t.in_features % group_size:
            raise EsaError(f"--group-size {group_size} does not divide the input size {t.in_features} of {t.name}; "
                           "choose a divisor of every input size, or 0 for per channel")
    if keep_topk < 0 or (keep_fraction is not None and not 0 < keep_fraction < 1):
        raise EsaError("--keep-topk must be >= 0 and --keep-fraction in (0, 1)")
    if keep_topk and keep_fraction is not None:
        raise EsaError("give --keep-topk or --keep-fraction, not both")
    k = keep_topk if keep_fraction is None else max(1, round(keep_fraction * n_weights))
    if k > n_weights:
        raise EsaError(f"cannot keep {k} weights: the quantized tensors hold {n_weights}; lower --keep-topk")
    if k and keep_metric is None:
        raise EsaError("--keep-topk/--keep-fraction need --keep-metric METRIC to rank the weights")
    for name in (keep_metric, allocate_by):
        if name is not None and name not in METRICS:
            raise EsaError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    if budget_bits is not None:
        if allocate_by is None:
            raise EsaError("--budget-bits needs --allocate-by METRIC (the sensitivity that weights the error)")
        largest = max(t.numel for t in targets)
        lowest = (sum(storage(t, min(widths), group_size, symmetric) for t in targets)
                  + kept_bits(k, largest)) / n_weights
        if budget_bits < min(widths) or budget_bits < lowest:
            raise EsaError(f"--budget-bits {budget_bits:g} is below the smallest width: {min(widths)}-bit everywhere "
                           f"(with these groups and kept weights) already costs {lowest:.4f} bits per weight; "
                           "raise the budget")
    return k
