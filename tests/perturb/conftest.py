"""Helpers for perturbation tests: raw-bit snapshots and tensors full of awkward values."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from esa.perturb.base import int_view_dtype

# Stored bit patterns of values that a float round trip could alter: NaNs with payloads (quiet and
# signalling), -0.0, ±inf, the smallest subnormal.
SPECIAL_BITS = {
    torch.float32: [0x7FC01234, 0x7F800001, -0x80000000, 0x7F800000, -0x00800000, 0x00000001],
    torch.bfloat16: [0x7FC1, 0x7F81, -0x8000, 0x7F80, -0x0080, 0x0001],
    torch.float16: [0x7E01, 0x7C01, -0x8000, 0x7C00, -0x0400, 0x0001],
}


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().view(int_view_dtype(tensor.dtype)).clone()


def _special_tensor(dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """A [4, 8] tensor: random normals with the special values of `dtype` at flat 0..5."""
    t = torch.randn(4, 8, generator=torch.Generator().manual_seed(seed)).to(dtype)
    special = torch.tensor(SPECIAL_BITS[dtype], dtype=int_view_dtype(dtype))
    t.view(-1).view(int_view_dtype(dtype))[: special.numel()] = special
    return t


@pytest.fixture
def bits() -> Callable[[torch.Tensor], torch.Tensor]:
    """A copy of a tensor's stored bits (its integer view)."""
    return _bits


@pytest.fixture
def model_bits() -> Callable[[torch.nn.Module], dict[str, torch.Tensor]]:
    """A copy of every parameter's stored bits."""
    return lambda model: {n: _bits(p) for n, p in model.named_parameters()}


@pytest.fixture
def special_tensor() -> Callable[..., torch.Tensor]:
    return _special_tensor
