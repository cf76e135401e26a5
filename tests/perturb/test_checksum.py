"""tensor_checksum: equal bits give equal checksums; any change to one element is always caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esa.errors import EsaError
from esa.perturb import tensor_checksum
from esa.perturb.base import int_view_dtype
from esa.perturb.checksum import CHUNK, PERIOD

DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def reference(tensor: torch.Tensor) -> tuple[int, ...]:
    """The documented definition, in numpy with Python ints."""
    n_pieces = tensor.element_size() // 2
    raw = tensor.contiguous().view(int_view_dtype(tensor.dtype)).reshape(-1).numpy()
    pieces = raw.view(np.int16).reshape(-1, n_pieces).astype(np.int64)
    weight = np.arange(pieces.shape[0], dtype=np.int64) % PERIOD + 1
    sums = [int(s) for s in pieces.sum(0)]
    weighted = [int(s) for s in (pieces * weight[:, None]).sum(0)]  # |.| < 2^52: no int64 overflow
    return tuple(v for pair in zip(sums, weighted) for v in pair)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_the_definition_across_chunks(dtype):
    t = torch.randn(CHUNK + 12_345, generator=torch.Generator().manual_seed(0)).to(dtype)
    assert tensor_checksum(t) == reference(t)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_single_bit_change_is_caught(dtype, special_tensor):
    t = special_tensor(dtype if dtype != torch.float64 else torch.float32).to(dtype)[:2]  # 16 values
    base = tensor_checksum(t)
    flat = t.view(-1).view(int_view_dtype(dtype))
    width = torch.finfo(dtype).bits
    seen = {base}
    for i in range(flat.numel()):
        for b in range(width):
            changed = t.clone()
            changed.view(-1).view(int_view_dtype(dtype))[i] ^= torch.tensor(
                (1 << b) - (1 << width) * (b == width - 1), dtype=flat.dtype
            )
            seen.add(tensor_checksum(changed))
    assert len(seen) == 1 + flat.numel() * width


def test_signed_zero_and_nan_payloads_differ():
    assert tensor_checksum(torch.tensor([0.0])) != tensor_checksum(torch.tensor([-0.0]))
    a, b = torch.tensor([0x7FC00001], dtype=torch.int32), torch.tensor([0x7FC00002], dtype=torch.int32)
    assert tensor_checksum(a.view(torch.float32)) != tensor_checksum(b.view(torch.float32))


def test_swapped_values_differ():
    t = torch.randn(1000)
    swapped = t.clone()
    swapped[[3, 700]] = t[[700, 3]]
    assert tensor_checksum(t) != tensor_checksum(swapped)


def test_same_bits_same_checksum_whatever_the_layout():
    base = torch.randn(30, 40).bfloat16()
    transposed = base.t()
    assert tensor_checksum(transposed) == tensor_checksum(transposed.contiguous())
    assert tensor_checksum(base) == tensor_checksum(base.clone())
    assert tensor_checksum(torch.empty(0)) == (0, 0, 0, 0)
    assert tensor_checksum(torch.full((3,), -2.0).bfloat16()) == (3 * -16384, 6 * -16384)  # 0xC000


def test_integer_tensors_are_refused():
    with pytest.raises(EsaError, match="int32; perturbations support"):
        tensor_checksum(torch.arange(3, dtype=torch.int32))
