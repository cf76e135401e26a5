"""Shared tiny models and windows for the quantization tests (module-scoped: tests restore what they change)."""

from __future__ import annotations

import pytest
import torch

from esa.data.windows import WindowSet
from esa.models import LoadedModel, load_model

TEXT = (
    "Quantization maps each weight to one of a few levels. A group of weights shares one scale, so one "
    "outlier stretches the scale for all of its neighbours, and keeping it aside in 16 bits helps. "
) * 8


def windows_for(lm: LoadedModel, seq_len: int = 32, n_calib: int = 3, n_eval: int = 3) -> WindowSet:
    """Byte-token windows of an English text: the first `n_calib` calibrate, the next `n_eval` evaluate."""
    tokens = torch.tensor(lm.tokenizer(TEXT)["input_ids"])
    offsets = tuple(range(0, (n_calib + n_eval) * seq_len, seq_len))
    return WindowSet(tokens, seq_len, offsets[:n_calib], offsets[n_calib:], None, {})


@pytest.fixture(scope="session")
def llama() -> LoadedModel:
    return load_model("tiny-llama")


@pytest.fixture(scope="session")
def llama_windows(llama: LoadedModel) -> WindowSet:
    return windows_for(llama)


def snapshot(lm: LoadedModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}


def unchanged(lm: LoadedModel, before: dict[str, torch.Tensor]) -> bool:
    """Every parameter bit-identical to `before` (compared as integers, so NaN and -0.0 count)."""
    return all(torch.equal(p.detach().view(torch.int32), before[n].view(torch.int32))
               for n, p in lm.model.named_parameters())
