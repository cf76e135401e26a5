"""Input Hessians of the linear layers of one decoder block, for GPTQ: H = 2 X^T X / n.

X holds every input row the layer saw over the calibration windows ([n, in]; an MoE expert sees only
the tokens routed to it). The forward pass is cut short right after the block (an exception raised by
a hook on the block), so quantizing block L costs a forward through blocks 0..L, which already hold
their quantized weights: GPTQ's sequential protocol, where each block is calibrated on the outputs of
the quantized blocks before it. Memory: one float32 [in, in] matrix per layer of the block.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from esa.quantize.targets import Target


class _BlockDone(Exception):
    """Raised after the block's forward: nothing later is needed."""


def block_hessians(
    model: nn.Module, block: nn.Module, targets: list[Target], batches: Iterable[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """name -> 2 X^T X / n of each target's module (all inside `block`), over `batches`; zeros for a
    module that saw no input."""
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = {}

    def capture(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            sums[name] = sums[name] + x.T @ x if name in sums else x.T @ x
            rows[name] = rows.get(name, 0) + x.shape[0]
        return hook

    def stop(*_args) -> None:
        raise _BlockDone

    handles = [t.module.register_forward_pre_hook(capture(t.name)) for t in targets]
    handles.append(block.register_forward_hook(stop))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                try:
                    model(input_ids=batch, use_cache=False)
                except _BlockDone:
                    pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {t.name: 2.0 * sums[t.name] / rows[t.name] if t.name in sums else torch.zeros(t.in_features, t.in_features)
            for t in targets}
