"""Machinery every metric shares: a scoring session, gradient folding, and passes over the calibration data.

A metric must leave the model exactly as it found it, must never hold full-model gradients beside its
float32 accumulators, and must fail with one clear line when fp16 overflows. Doing these once here keeps
each metric module down to its own arithmetic.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator

import torch
import torch.utils.checkpoint
from torch import nn
from tqdm import tqdm

from esa.errors import EsaError
from esa.evaluation.nll import next_token_nll
from esa.metrics.base import ScoringContext

# (accumulator or None on a parameter's first gradient, fresh float32 gradient) -> accumulator.
# The gradient tensor is the fold's to keep or overwrite: autograd hands it over and the hook drops `.grad`.
Fold = Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]

ACCUMULATE_ON = ("param", "cpu")


def add(acc: torch.Tensor | None, grad: torch.Tensor) -> torch.Tensor:
    """The fold for sums of gradients (the gradient of a mean loss over the whole calibration set)."""
    return grad if acc is None else acc.add_(grad)


def add_square(scale: float) -> Fold:
    """The fold for means of squared gradients: acc += grad² · scale."""

    def fold(acc: torch.Tensor | None, grad: torch.Tensor) -> torch.Tensor:
        return grad.square_().mul_(scale) if acc is None else acc.addcmul_(grad, grad, value=scale)

    return fold


def scored_parameters(ctx: ScoringContext) -> dict[str, nn.Parameter]:
    """The distinct tensors to score, keyed by their first name in `ctx.params`.

    Names are resolved with `remove_duplicate=False`, so either name of a tied weight works; a tensor listed
    twice is scored once (two folding hooks on one tensor would see its gradient once between them).
    """
    named = dict(ctx.model.named_parameters(remove_duplicate=False))
    unknown = [n for n in ctx.params if n not in named]
    if unknown:
        raise EsaError(f"parameter {unknown[0]!r} is not in the model; check --include/--exclude")
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name in ctx.params:
        param = named[name]
        if id(param) not in seen:
            seen.add(id(param))
            out[name] = param
    return out


def with_aliases(ctx: ScoringContext, per_name: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Re-key results by every name in `ctx.params`, in its order (a tied tensor listed twice gets one result twice)."""
    named = dict(ctx.model.named_parameters(remove_duplicate=False))
    by_tensor = {id(named[n]): t for n, t in per_name.items()}
    return {n: by_tensor[id(named[n])] for n in ctx.params if id(named[n]) in by_tensor}


def accumulator_device(param: torch.Tensor, accumulate_on: str) -> torch.device:
    return param.device if accumulate_on == "param" else torch.device("cpu")


def zeros_like_float(params: dict[str, nn.Parameter], accumulate_on: str) -> dict[str, torch.Tensor]:
    """One float32 zero accumulator per parameter, where `accumulate_on` says."""
    return {
        n: torch.zeros(p.shape, dtype=torch.float32, device=accumulator_device(p, accumulate_on))
        for n, p in params.items()
    }


@contextmanager
def scoring_session(ctx: ScoringContext, *, grad: bool) -> Iterator[dict[str, nn.Parameter]]:
    """Run a metric on `ctx.model` in eval mode and give the model back exactly as it came.

    With `grad`, autograd is on and only the scored parameters require grad (others are left out of
    backward, which saves their gradient work); existing `.grad` tensors are set aside so they neither leak
    into the scores nor get lost. Modes, flags and `.grad` are restored even when scoring raises.
    Yields the distinct parameters to score (see `scored_parameters`).
    """
    if ctx.accumulate_on not in ACCUMULATE_ON:
        raise EsaError(f"accumulate_on must be one of {', '.join(ACCUMULATE_ON)}, not {ctx.accumulate_on!r}")
    params = scored_parameters(ctx)
    scored = {id(p) for p in params.values()}
    modes = [(m, m.training) for m in ctx.model.modules()]
    state = [(p, p.requires_grad, p.grad) for p in ctx.model.parameters()]
    saved_blocks: list[tuple[nn.Module, dict[str, Any]]] = []
    try:
        ctx.model.eval()
        if grad:
            for p, _, _ in state:
                p.grad = None
                p.requires_grad_(id(p) in scored)
        if grad and ctx.checkpointing:
            saved_blocks = _enable_checkpointing(ctx.model)
        with torch.set_grad_enabled(grad):
            yield params
    finally:
        _restore_blocks(saved_blocks)
        for p, requires_grad, old_grad in state:
            p.requires_grad_(requires_grad)
            p.grad = old_grad
        for m, training in modes:
            m.training = training


def _checkpointed_blocks(model: nn.Module) -> list[nn.Module]:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


_CHECKPOINT_ATTRS = ("gradient_checkpointing", "_gradient_checkpointing_func", "training")
_ABSENT = object()


def _enable_checkpointing(model: nn.Module) -> list[tuple[nn.Module, dict[str, Any]]]:
    """Activation checkpointing per decoder block, in eval semantics; returns what to restore.

    transformers only checkpoints a block whose `training` flag is set, so exactly those block modules are
    flagged; their dropout/attention submodules stay in eval mode, so the scores are the eval-mode scores.
    The blocks' own attribute values (or their absence) are saved so the model leaves exactly as found.
    """
    blocks = _checkpointed_blocks(model)
    if not blocks:
        raise EsaError("--checkpointing needs a transformers model whose decoder blocks support gradient checkpointing")
    saved = [(block, {a: block.__dict__.get(a, _ABSENT) for a in _CHECKPOINT_ATTRS}) for block in blocks]
    for block in blocks:
        block.gradient_checkpointing = True
        block._gradient_checkpointing_func = partial(torch.utils.checkpoint.checkpoint, use_reentrant=False)
        block.training = True
    return saved


def _restore_blocks(saved: list[tuple[nn.Module, dict[str, Any]]]) -> None:
    for block, attrs in saved:
        for name, value in attrs.items():
            if value is _ABSENT:
                block.__dict__.pop(name, None)
            else:
                block.__dict__[name] = value


@contextmanager
def folded_gradients(
    params: dict[str, nn.Parameter], fold: Fold, accumulate_on: str
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict that every backward pass folds the scored parameters' fresh gradients into (float32).

    A post-accumulate-grad hook on each parameter folds `param.grad` into the parameter's accumulator and
    drops `.grad` at once, so at most one parameter's gradient exists beside the accumulators at any
    time. A parameter's first gradient becomes its accumulator (no zero-filled buffers, no extra pass).
    Parameters that never got a gradient have no entry (see `filled`). Hooks are removed on exit, even on
    exceptions.
    """
    acc: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name, param in params.items():
            device = accumulator_device(param, accumulate_on)
            handles.append(param.register_post_accumulate_grad_hook(_folding_hook(acc, name, device, fold)))
        yield acc
    finally:
        for handle in handles:
            handle.remove()


def filled(
    acc: dict[str, torch.Tensor], params: dict[str, nn.Parameter], accumulate_on: str
) -> dict[str, torch.Tensor]:
    """`acc` with zeros for the parameters backward never reached (unused in the forward pass)."""
    return {**zeros_like_float({n: p for n, p in params.items() if n not in acc}, accumulate_on), **acc}


def _folding_hook(acc: dict, name: str, device: torch.device, fold: Fold) -> Callable[[torch.Tensor], None]:
    def hook(param: torch.Tensor) -> None:
        acc[name] = fold(acc.get(name), param.grad.to(device, torch.float32))
        param.grad = None

    return hook


def calibration(ctx: ScoringContext, bar: tqdm | None = None) -> Iterator[torch.Tensor]:
    """One pass over `ctx.batches()`, checking it holds the `n_windows`/`n_tokens` every average divides by."""
    windows = tokens = 0
    for ids in ctx.batches():
        yield ids
        windows += ids.shape[0]
        tokens += ids.shape[0] * (ids.shape[1] - 1)
        if bar is not None:
            bar.update(ids.shape[0])
    if (windows, tokens) != (ctx.n_windows, ctx.n_tokens):
        raise ValueError(
            f"ScoringContext says {ctx.n_windows} windows / {ctx.n_tokens} tokens, "
            f"but batches() gave {windows} / {tokens}"
        )


def progress(ctx: ScoringContext, desc: str, passes: int = 1) -> tqdm:
    """A progress bar over `passes` passes of the calibration windows (silent unless ctx.progress)."""
    return tqdm(total=ctx.n_windows * passes, desc=desc, unit="window", disable=not ctx.progress, leave=False)


def loss_share(model: nn.Module, ids: torch.Tensor, denominator: int) -> torch.Tensor:
    """Summed next-token NLL of `ids` divided by `denominator`: this batch's share of a mean loss."""
    nll, _ = next_token_nll(model, ids)
    loss = nll.sum() / denominator
    if not torch.isfinite(loss):
        raise EsaError("non-finite calibration loss (fp16 overflow?); use --dtype bf16 or fp32")
    return loss


def check_finite(tensors: dict[str, torch.Tensor], what: str = "gradients") -> None:
    """Raise the fp16-overflow EsaError naming the first parameter whose accumulated `what` is not finite.

    Checking accumulators once at the end is enough: sums, squares and products keep an inf or nan. One
    float64 sum per tensor finds them (it cannot overflow on finite float32 values) without a mask pass.
    """
    for name, t in tensors.items():
        if not bool(torch.isfinite(t.sum(dtype=torch.float64))):
            raise EsaError(f"non-finite {what} in {name} (fp16 overflow?); use --dtype bf16 or fp32")
