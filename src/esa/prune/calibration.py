"""Input statistics of the layers to prune, from forward passes over the calibration windows.

`input_hessians` accumulates H = Σ xᵀx (float32, [in, in] per target) over every position of every
calibration window, through forward pre-hooks on the modules that apply the targets. With `upto`
set, each forward pass stops right after that decoder block has run (an exception raised from a hook
on the block), so the sequential mode pays for the blocks up to the one being pruned, not the whole
model. Memory: one [in, in] float32 per hooked target.
"""

from __future__ import annotations

from contextlib import ExitStack

import torch
from torch import nn

from esa.data import WindowSet
from esa.errors import EsaError
from esa.models.layout import find_decoder_blocks
from esa.models.loader import input_device
from esa.prune.targets import Target


class _Stop(Exception):
    """Raised after the last block that matters, to skip the rest of the forward pass."""


def input_hessians(
    model: nn.Module, windows: WindowSet, targets: list[Target], batch_size: int, upto: int | None = None,
) -> dict[str, torch.Tensor]:
    """H = Σ xᵀx of each target's input over the calibration windows (see the module docstring)."""
    missing = [t.name for t in targets if t.module is None]
    if missing:
        raise EsaError(f"sparsegpt needs a Linear/Conv1D module applying each target; {missing[0]} has none")
    hessians = {t.name: torch.zeros(t.n_in, t.n_in, device=t.module.weight.device) for t in targets}
    was_training = model.training
    model.eval()
    with ExitStack() as hooks, torch.no_grad():
        for t in targets:
            hooks.callback(t.module.register_forward_pre_hook(_accumulate(hessians[t.name])).remove)
        if upto is not None:
            _, blocks = find_decoder_blocks(model)
            hooks.callback(blocks[upto].register_forward_hook(_stop).remove)
        try:
            for ids in windows.batches("calib", batch_size, input_device(model)):
                try:
                    model(input_ids=ids, use_cache=False)
                except _Stop:
                    pass
        finally:
            model.train(was_training)
    return hessians


def _accumulate(h: torch.Tensor):
    def hook(module: nn.Module, args: tuple) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1]).to(h.device, torch.float32)
        h.addmm_(x.t(), x)

    return hook


def _stop(module: nn.Module, args: tuple, output: object) -> None:
    raise _Stop
