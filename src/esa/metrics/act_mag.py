"""act_mag: the Wanda score |W_ij| · ‖X_j‖₂ (Sun et al. 2023), forward passes only.

X_j is input feature j of the layer, over every position of every calibration window; ‖X_j‖₂ is exact
(sum of squares accumulated in float32 across batches). Only weights that multiply an activation have an
input to measure: nn.Linear and Conv1D weights, plus any weight `ParamInfo.linear` marks (MoE routers)
whose owning module receives the activation as its first argument. A tied embedding counts with the
lm_head's inputs; a weight shared by several such modules sums the squared norms of all their inputs.
Everything else (norms, embeddings, biases, fused 3-D experts) gets no score and a note says so.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import nn

from esa.evaluation.nll import next_token_nll
from esa.metrics._accumulate import (
    accumulator_device, calibration, check_finite, progress, scoring_session, with_aliases,
)
from esa.metrics.base import MetricCost, MetricResult, ScoringContext
from esa.models.types import ParamInfo

try:  # GPT-2-style projections store their weight transposed, [in, out]
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = ()  # type: ignore[assignment,misc]


@dataclass
class _Input:
    """Sum of squares of the inputs a weight has seen, per input feature."""

    sum_sq: torch.Tensor
    in_axis: int  # the weight axis input features run along: 1 for [out, in], 0 for Conv1D's [in, out]
    modules: int = 0  # how many modules apply this weight
    calls: int = 0

    def hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else next(iter(kwargs.values()))
        self.sum_sq += x.detach().reshape(-1, x.shape[-1]).float().square().sum(0).to(self.sum_sq.device)
        self.calls += 1


class ActMag:
    name = "act_mag"
    needs_backward = False
    cost = MetricCost(data=True, backward=False, accumulators=0, results=1, passes=1, linear_only=True)

    def __call__(self, ctx: ScoringContext) -> MetricResult:
        with scoring_session(ctx, grad=False) as params, ExitStack() as hooks:
            inputs = _attach(ctx, params, hooks)
            with progress(ctx, self.name) as bar:
                for ids in calibration(ctx, bar):
                    next_token_nll(ctx.model, ids)
        check_finite({n: i.sum_sq for n, i in inputs.items()}, "activations")
        scores = {}
        for name, inp in inputs.items():
            w = params[name].detach().to(inp.sum_sq.device, torch.float32).abs()
            norm = inp.sum_sq.sqrt()
            scores[name] = w.mul_(norm.unsqueeze(0) if inp.in_axis == 1 else norm.unsqueeze(1))
        return MetricResult(scores=with_aliases(ctx, scores), notes=_notes(ctx, params, inputs))


def _attach(ctx: ScoringContext, params: dict[str, nn.Parameter], hooks: ExitStack) -> dict[str, _Input]:
    """Hook every module that applies a scored weight to an activation; return the inputs they will collect."""
    names = {id(p): n for n, p in params.items()}
    inputs: dict[str, _Input] = {}
    for module in ctx.model.modules():
        weight = module._parameters.get("weight")
        name = names.get(id(weight)) if weight is not None else None
        if name is None or weight.dim() != 2:
            continue
        in_axis = _in_axis(module, ctx.params[name])
        if in_axis is None:
            continue
        inp = inputs.get(name)
        if inp is None:
            device = accumulator_device(weight, ctx.accumulate_on)
            inp = inputs[name] = _Input(torch.zeros(weight.shape[in_axis], device=device), in_axis)
        inp.modules += 1
        hooks.callback(module.register_forward_pre_hook(inp.hook, with_kwargs=True).remove)
    return inputs


def _in_axis(module: nn.Module, info: ParamInfo) -> int | None:
    """Axis of `module.weight` its input features run along, or None if it does not multiply an activation."""
    if isinstance(module, Conv1D):
        return 0
    if isinstance(module, nn.Linear) or (info.linear and not isinstance(module, nn.Embedding)):
        return 1
    return None


def _notes(ctx: ScoringContext, params: dict[str, nn.Parameter], inputs: dict[str, _Input]) -> list[str]:
    notes = []
    skipped = [n for n in params if n not in inputs]
    if skipped:
        kinds = Counter(ctx.params[n].component for n in skipped)
        detail = ", ".join(f"{k}: {v}" for k, v in kinds.most_common())
        notes.append(
            f"act_mag scores linear weights only; {len(skipped)} of {len(params)} tensors were not scored ({detail})"
        )
    shared = [n for n, i in inputs.items() if i.modules > 1]
    if shared:
        notes.append(
            f"act_mag: {len(shared)} weights are applied by several linear modules ({', '.join(shared)}); "
            "their input norms sum the squared inputs of all of them"
        )
    unused = [n for n, i in inputs.items() if i.calls == 0]
    if unused:
        notes.append(
            f"act_mag: {len(unused)} linear weights saw no input during calibration and score 0 ({', '.join(unused)})"
        )
    return notes
