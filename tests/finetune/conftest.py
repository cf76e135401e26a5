"""Fixtures for fine-tuning tests: one tiny model per module, topic-domain windows, bit snapshots."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from esa.data import WindowSet, make_windows
from esa.finetune import topic_domains
from esa.models import LoadedModel, load_model

SEQ_LEN = 32


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    """A tiny Llama shared by a module's tests; every test trains inside `preserved(lm)`."""
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def domains(lm: LoadedModel) -> tuple[WindowSet, WindowSet]:
    """(train/eval windows of domain a, retain windows of domain b), 32 byte tokens each."""
    a, b = topic_domains(lm.tokenizer)
    return make_windows(a, SEQ_LEN, 8, 4, 0), make_windows(b, SEQ_LEN, 4, 4, 0)


@pytest.fixture
def bits() -> Callable[[LoadedModel], dict[str, torch.Tensor]]:
    """`bits(lm)`: every parameter's stored bits (int32 views of float32), by name."""
    return lambda lm: {n: p.detach().view(torch.int32).clone() for n, p in lm.model.named_parameters()}
