"""Give a model back exactly as it was after fine-tuning it, so several runs can share one loaded model.

`preserved(lm)` copies every parameter's and buffer's stored bits (integer views, so -0.0 and NaN payloads
survive) on entry and writes them back on exit, then proves the restore by comparing the bits again.
Memory: one extra copy of the model's tensors for the duration of the block.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from esa.models import LoadedModel
from esa.perturb.base import int_view_dtype


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().view(int_view_dtype(t.dtype)) if t.is_floating_point() else t.detach()


@contextmanager
def preserved(lm: LoadedModel) -> Iterator[None]:
    """Restore every tensor of `lm.model` bit for bit when the block ends (also on exceptions)."""
    state = lm.model.state_dict(keep_vars=True)
    saved = {name: _bits(t).clone() for name, t in state.items()}
    try:
        yield
    finally:
        state = lm.model.state_dict(keep_vars=True)
        if state.keys() != saved.keys():
            raise RuntimeError("fine-tuning changed the model's structure; its weights cannot be restored")
        with torch.no_grad():
            for name, t in state.items():
                _bits(t).copy_(saved[name])
        if not all(torch.equal(_bits(t), saved[name]) for name, t in state.items()):
            raise RuntimeError("restoring the model's weights failed: some bits differ")
