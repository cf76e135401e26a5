"""Fixtures for metric tests: tiny models, calibration windows and ScoringContexts built from them."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from esa.data.windows import WindowSet
from esa.metrics import ScoringContext
from esa.models.layout import describe_parameters

SEQ_LEN = 16


def windows(n_windows: int = 4, seq_len: int = SEQ_LEN, seed: int = 0) -> WindowSet:
    """`n_windows` non-overlapping windows of random byte tokens."""
    tokens = torch.randint(0, 256, (n_windows * seq_len,), generator=torch.Generator().manual_seed(seed))
    offsets = tuple(range(0, n_windows * seq_len, seq_len))
    return WindowSet(tokens, seq_len, offsets, (), None, {})


def _make_ctx(
    model: torch.nn.Module,
    names: list[str] | None = None,
    *,
    n_windows: int = 4,
    batch_size: int = 2,
    **kwargs,
) -> ScoringContext:
    """A ScoringContext over `n_windows` windows of the tiny model (all parameters unless `names`)."""
    infos = describe_parameters(model)
    ws = windows(n_windows)
    return ScoringContext(
        model=model,
        params={n: infos[n] for n in (names or infos)},
        batches=lambda: ws.batches("calib", batch_size),
        n_windows=n_windows,
        n_tokens=ws.n_predicted_tokens("calib"),
        **kwargs,
    )


@pytest.fixture
def make_ctx() -> Callable[..., ScoringContext]:
    """`make_ctx(model, names=None, *, n_windows=4, batch_size=2, **ScoringContext fields)`."""
    return _make_ctx
