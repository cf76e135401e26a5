"""A progressive bit search (BFA, Rakin, He and Fan, ICCV 2019) on the stored bits of a float model.

Each step: one forward/backward pass over the attack ("calib") windows gives g = dL/dw for every
weight. Flipping bit b of a stored weight w gives w_b, and to first order changes the loss by
    ΔL ≈ g · (w_b - w).
Per tensor the candidates are the `candidates_per_tensor` weights of largest |g| and of largest
|g·w| (exponent flips scale |w|, so both matter), with every bit position; flips to a non-finite
value are skipped (trivially detected), and with `max_abs_value` so are flips to a larger magnitude
(the stealthy setting: values a range check on the weights would not catch; without it one flip of
a high exponent bit usually turns the loss into NaN/inf). The `tries` flips with the largest estimates are each
applied and the attack loss measured exactly (one forward pass each); the best is kept (a bit
already flipped is never flipped back). The step
ends with one evaluation of the "eval" windows; the search stops when their perplexity exceeds
`target_ppl` (a non-finite loss counts, and is flagged) or after `max_flips` flips.

Defence: weights in `protect` (e.g. the top-K critical weights of a metric) can never be flipped;
`defended_attack` reports how many more flips the attack then needs.
Every flip is applied through esa.perturb.apply_perturbation and held until the search ends, so the
model is restored bit-exactly (checksummed) even when the search raises.
Memory: one gradient per parameter (model-sized, in the model's dtype) during each step; O(tries).
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch

from esa.artifacts.schema import ravel, unravel
from esa.data import WindowSet
from esa.errors import EsaError
from esa.evaluation import evaluate, next_token_nll
from esa.models import LoadedModel, input_device
from esa.perturb import apply_perturbation
from esa.perturb.base import bit_value, bit_width, int_view_dtype
from esa.ranking import WeightSet
from esa.security.sites import bit_class


@dataclass(frozen=True)
class Flip:
    step: int
    param: str
    layer: int | None
    component: str
    index: tuple[int, ...]
    bit: int
    bit_class: str
    old: float
    new: float
    estimated_dloss: float
    attack_loss: float  # loss on the attack windows after this flip
    ppl: float  # perplexity on the evaluation windows after this flip


@dataclass
class AttackResult:
    target_ppl: float
    max_flips: int
    reached: bool
    reached_nonfinite: bool  # the target was reached through a NaN/inf loss
    baseline_ppl: float
    final_ppl: float
    flips: list[Flip]
    n_protected: int
    overlap: dict[str, dict[str, Any]]  # metric -> flips among its critical weights
    max_abs_value: float | None = None
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def n_flips(self) -> int:
        return len(self.flips)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_flips": self.n_flips}


@dataclass
class DefenceResult:
    """The same attack without and with the protected weights; `extra_flips` is None when either missed the target."""

    open: AttackResult
    defended: AttackResult
    extra_flips: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"open": self.open.to_dict(), "defended": self.defended.to_dict(), "extra_flips": self.extra_flips}


def bit_flip_attack(
    lm: LoadedModel, windows: WindowSet, *, target_ppl: float = 1000.0, max_flips: int = 20,
    protect: WeightSet | None = None, critical: Mapping[str, WeightSet] | None = None,
    candidates_per_tensor: int = 8, tries: int = 4, batch_size: int = 4, max_abs_value: float | None = None,
) -> AttackResult:
    """Flip stored bits one at a time, greedily, until eval perplexity > `target_ppl` or `max_flips`."""
    if max_flips < 1 or tries < 1 or candidates_per_tensor < 1:
        raise EsaError("max_flips, tries and candidates_per_tensor must each be at least 1")
    if max_abs_value is not None and not max_abs_value > 0:
        raise EsaError(f"max_abs_value must be > 0, got {max_abs_value}")
    if not target_ppl > 0:
        raise EsaError(f"target perplexity must be > 0, got {target_ppl}")
    if not windows.calib_offsets or not windows.eval_offsets:
        raise EsaError("the attack needs calibration windows (to attack) and evaluation windows (to judge)")
    tensors = dict(lm.model.named_parameters(remove_duplicate=False))
    names = [n for n in lm.params if tensors[n].dtype in (torch.float32, torch.bfloat16, torch.float16)]
    protected = _protected(protect, tensors)
    start = time.perf_counter()
    baseline = evaluate(lm.model, windows, "eval", batch_size).ppl
    flips: list[Flip] = []
    ppl, loss = baseline, math.nan
    unused = torch.Generator()
    done: set[tuple[str, int, int]] = set()  # (param, flat, bit) already flipped: never flip it back
    with ExitStack() as held:
        while len(flips) < max_flips and not _reached(ppl, target_ppl):
            candidates = [c for c in _candidates(lm, windows, tensors, names, protected, candidates_per_tensor,
                                                 batch_size, math.inf if max_abs_value is None else max_abs_value)
                          if c[1:] not in done]
            best: tuple[float, tuple[float, str, int, int]] | None = None
            for cand in candidates[:tries]:
                _, name, flat, bit = cand
                with apply_perturbation(lm.model, {name: torch.tensor([flat])}, "bit_flip", unused, bit=bit):
                    actual = evaluate(lm.model, windows, "calib", batch_size, allow_nonfinite=True).mean_nll
                actual = math.inf if math.isnan(actual) else actual
                if best is None or actual > best[0]:
                    best = (actual, cand)
            if best is None:
                break  # nothing left to flip (everything protected)
            loss, (estimate, name, flat, bit) = best
            old = float(tensors[name].detach().reshape(-1)[flat].float())
            done.add((name, flat, bit))
            held.enter_context(apply_perturbation(lm.model, {name: torch.tensor([flat])}, "bit_flip", unused, bit=bit))
            new = float(tensors[name].detach().reshape(-1)[flat].float())
            ppl = evaluate(lm.model, windows, "eval", batch_size, allow_nonfinite=True).ppl
            info = lm.params[name]
            flips.append(Flip(len(flips) + 1, name, info.layer, info.component, unravel(flat, info.shape), bit,
                              bit_class(bit, tensors[name].dtype), old, new, estimate, loss, ppl))
    keys = {(f.param, ravel(f.index, lm.params[f.param].shape)) for f in flips}
    overlap = {metric: {"k": len(ws), "flips_in_top_k": len(keys & ws.keys())} for metric, ws in (critical or {}).items()}
    return AttackResult(target_ppl, max_flips, _reached(ppl, target_ppl), _reached(ppl, target_ppl) and not math.isfinite(ppl),
                        baseline, ppl, flips, len(protect) if protect is not None else 0, overlap,
                        max_abs_value, {"attack_s": time.perf_counter() - start})


def defended_attack(lm: LoadedModel, windows: WindowSet, protect: WeightSet, **kwargs: Any) -> DefenceResult:
    """Run the attack open, then with `protect` unflippable; compare the flips needed."""
    open_ = bit_flip_attack(lm, windows, **kwargs)
    defended = bit_flip_attack(lm, windows, protect=protect, **kwargs)
    extra = defended.n_flips - open_.n_flips if open_.reached and defended.reached else None
    return DefenceResult(open_, defended, extra)


def _reached(ppl: float, target: float) -> bool:
    return not math.isfinite(ppl) or ppl > target


def _protected(protect: WeightSet | None, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if protect is None:
        return {}
    out = {}
    for name, idx in protect.by_param().items():
        if name not in tensors:
            raise EsaError(f"the protected set names {name!r}, which is not a parameter of this model")
        out[name] = idx
    return out


def _candidates(
    lm: LoadedModel, windows: WindowSet, tensors: Mapping[str, torch.Tensor], names: list[str],
    protected: Mapping[str, torch.Tensor], per_tensor: int, batch_size: int, max_abs: float,
) -> list[tuple[float, str, int, int]]:
    """(estimated ΔL, param, flat, bit), best first, from one backward pass over the attack windows."""
    grads = _gradients(lm, windows, tensors, names, batch_size)
    out: list[tuple[float, str, int, int]] = []
    for name in names:
        tensor = tensors[name].detach()
        g = grads[name].reshape(-1)
        w = tensor.reshape(-1).float()
        mag, taylor = g.abs(), (g * w).abs()
        if name in protected:
            mag[protected[name].to(g.device)] = -1.0
            taylor[protected[name].to(g.device)] = -1.0
        m = min(per_tensor, g.numel())
        flat = torch.unique(torch.cat([mag.topk(m).indices, taylor.topk(m).indices]))
        if name in protected:
            flat = flat[~torch.isin(flat, protected[name].to(flat.device))]
        if not flat.numel():
            continue
        width, int_dtype = bit_width(tensor.dtype), int_view_dtype(tensor.dtype)
        stored = tensor.reshape(-1)[flat].view(int_dtype)
        for bit in range(width):
            new = (stored ^ bit_value(bit, width)).view(tensor.dtype).float()
            est = g[flat] * (new - w[flat])
            ok = torch.isfinite(new) & (new.abs() <= max_abs) & torch.isfinite(est) & (est > 0)
            out += [(float(e), name, int(f), bit) for e, f in zip(est[ok].tolist(), flat[ok].tolist())]
    out.sort(key=lambda c: (-c[0], c[1], c[2], c[3]))
    return out


def _gradients(lm: LoadedModel, windows: WindowSet, tensors: Mapping[str, torch.Tensor], names: list[str],
               batch_size: int) -> dict[str, torch.Tensor]:
    """dL/dw (float32) of the mean next-token NLL over the attack windows; the model's .grad is left empty."""
    model = lm.model
    params = list(dict(model.named_parameters()).values())
    for p in params:
        p.grad = None
    n_tokens = windows.n_predicted_tokens("calib")
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for batch in windows.batches("calib", batch_size, input_device(model)):
                nll, _ = next_token_nll(model, batch)
                (nll.sum() / n_tokens).backward()
        return {n: (torch.zeros_like(tensors[n], dtype=torch.float32) if tensors[n].grad is None
                    else tensors[n].grad.float()) for n in names}
    finally:
        for p in params:
            p.grad = None
        model.train(was_training)
