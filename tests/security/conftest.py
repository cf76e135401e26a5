"""Shared fixtures for the security tests: tiny models (fp32 and bf16), small windows, a bit-exact snapshot."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import pytest
import torch

import esa
from esa.data.windows import WindowSet
from esa.models import LoadedModel
from esa.perturb.base import int_view_dtype

SEQ_LEN = 24


def random_windows(n_calib: int = 2, n_eval: int = 2, seed: int = 0) -> WindowSet:
    """Windows of random byte tokens: calibration first, evaluation after, never sharing a token."""
    n = n_calib + n_eval
    tokens = torch.randint(0, 256, (n * SEQ_LEN,), generator=torch.Generator().manual_seed(seed))
    offsets = tuple(range(0, n * SEQ_LEN, SEQ_LEN))
    return WindowSet(tokens, SEQ_LEN, offsets[:n_calib], offsets[n_calib:], None, {})


def model_bits(lm: LoadedModel) -> dict[str, torch.Tensor]:
    """A copy of every parameter's stored bits."""
    return {n: p.detach().view(int_view_dtype(p.dtype)).clone() for n, p in lm.model.named_parameters()}


def same_bits(lm: LoadedModel, saved: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(saved[n], p.detach().view(int_view_dtype(p.dtype))) for n, p in lm.model.named_parameters())


@contextmanager
def tampered(lm: LoadedModel, name: str, edit: Callable[[torch.Tensor], None]) -> Iterator[torch.Tensor]:
    """Apply `edit` in place to parameter `name` for the with-block, then put the original bits back."""
    param = dict(lm.model.named_parameters())[name]
    saved = param.detach().clone()
    with torch.no_grad():
        edit(param)
    try:
        yield param
    finally:
        with torch.no_grad():
            param.view(int_view_dtype(param.dtype)).copy_(saved.view(int_view_dtype(saved.dtype)))


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    return esa.load_model("tiny-llama")


@pytest.fixture(scope="session")
def tiny_bf16() -> LoadedModel:
    return esa.load_model("tiny-llama", dtype="bf16")


@pytest.fixture(scope="session")
def windows() -> WindowSet:
    return random_windows()


@pytest.fixture(scope="session")
def helpers() -> object:
    """model_bits, same_bits, tampered and random_windows, for tests (importlib mode cannot import conftest)."""
    class _Helpers:
        pass

    h = _Helpers()
    h.model_bits, h.same_bits, h.tampered, h.random_windows = model_bits, same_bits, tampered, random_windows
    return h
