"""Fixtures for analysis tests: tiny models as LoadedModels, text windows, bit-identity checks."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from esa.data.windows import WindowSet
from esa.models import LoadedModel, load_model

TEXT = (
    "A super weight is one scalar whose removal destroys the model. It produces a massive activation that "
    "appears at the first token and persists through the residual stream. Pruning it raises perplexity by "
    "orders of magnitude, while pruning thousands of other large weights barely matters. "
) * 6


@pytest.fixture
def tiny() -> Callable[[str], LoadedModel]:
    """`tiny(name)`: a fresh tiny LoadedModel (each test may modify its weights)."""
    return load_model


@pytest.fixture
def text_windows() -> Callable[..., WindowSet]:
    """`text_windows(lm, seq_len=32, n_calib=2, n_eval=3)`: byte-token windows of an English text,
    the first `n_calib` for calibration, the next `n_eval` for evaluation."""

    def make(lm: LoadedModel, seq_len: int = 32, n_calib: int = 2, n_eval: int = 3) -> WindowSet:
        tokens = torch.tensor(lm.tokenizer(TEXT)["input_ids"])
        offsets = tuple(range(0, (n_calib + n_eval) * seq_len, seq_len))
        return WindowSet(tokens, seq_len, offsets[:n_calib], offsets[n_calib:], None, {})

    return make


@pytest.fixture
def frozen() -> Callable[[LoadedModel], Callable[[], bool]]:
    """`unchanged = frozen(lm)` snapshots every tensor of the model; `unchanged()` says whether its bits still match."""

    def snapshot(lm: LoadedModel) -> Callable[[], bool]:
        before = _bits(lm)
        return lambda: _bits(lm).keys() == before.keys() and all(torch.equal(v, before[k]) for k, v in _bits(lm).items())

    return snapshot


def _bits(lm: LoadedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().reshape(-1).view(torch.uint8).clone() for k, v in lm.model.state_dict().items()}
