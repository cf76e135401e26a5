"""bit_flip against brute force on the integer view of the stored bits."""

from __future__ import annotations

import pytest
import torch

from esa.errors import EsaError
from esa.perturb import get_perturbation
from esa.perturb.base import int_view_dtype
from esa.perturb.bit_flip import bit_position

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
bit_flip = get_perturbation("bit_flip")


def values(dtype: torch.dtype, n: int = 64, seed: int = 0) -> torch.Tensor:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed)).to(dtype)
    v[:4] = torch.tensor([0.0, -0.0, float("inf"), float("-inf")], dtype=dtype)
    return v


def popcount_by_position(xor: torch.Tensor, width: int) -> dict[int, int]:
    counts = {b: sum(((int(x) >> b) & 1) for x in xor.tolist()) for b in range(width)}
    return {b: n for b, n in counts.items() if n}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sign_bit_flip_is_sign_flip(dtype):
    v = values(dtype)
    flipped, details = bit_flip.new_values(v, torch.Generator(), bit="sign")
    negated, _ = get_perturbation("sign_flip").new_values(v, torch.Generator())
    int_dtype = int_view_dtype(dtype)
    assert torch.equal(flipped.view(int_dtype), negated.view(int_dtype))
    assert details["bit_flips"] == {torch.finfo(dtype).bits - 1: v.numel()}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("prob", [0.0, 0.1, 0.5, 1.0])
def test_random_flips_match_the_reported_counts(dtype, prob):
    v = values(dtype, n=200)
    width, int_dtype = torch.finfo(dtype).bits, int_view_dtype(dtype)
    new, details = bit_flip.new_values(v, torch.Generator().manual_seed(1), prob=prob)
    xor = (new.view(int_dtype) ^ v.view(int_dtype)).long() & ((1 << width) - 1)
    assert details["bit_flips"] == popcount_by_position(xor, width)
    if prob == 0.0:
        assert details["bit_flips"] == {}
    if prob == 1.0:
        assert torch.equal(new.view(int_dtype), ~v.view(int_dtype))


def test_flip_frequency_is_prob():
    v = values(torch.float32, n=2000)
    _, details = bit_flip.new_values(v, torch.Generator().manual_seed(2), prob=0.1)
    expected, sigma = 2000 * 0.1, (2000 * 0.1 * 0.9) ** 0.5
    assert all(abs(details["bit_flips"][b] - expected) < 5 * sigma for b in range(32))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_exponent_msb_flip_gives_inf_and_nan(dtype):
    v = torch.tensor([1.0, 1.5, -1.0, 0.75], dtype=dtype)
    new, _ = bit_flip.new_values(v, torch.Generator(), bit="exponent_msb")
    assert new.isinf().tolist() == [True, False, True, False]
    assert new.isnan().tolist() == [False, True, False, False]


@pytest.mark.parametrize(("dtype", "sign", "exponent_msb"), [
    (torch.float32, 31, 30), (torch.bfloat16, 15, 14), (torch.float16, 15, 14),
])
def test_named_and_numbered_bits(dtype, sign, exponent_msb):
    assert bit_position("sign", dtype) == sign
    assert bit_position("exponent_msb", dtype) == exponent_msb
    assert bit_position("7", dtype) == bit_position(7, dtype) == 7


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_each_single_bit_flips_exactly_that_bit(dtype):
    v = values(dtype, n=8)
    width, int_dtype = torch.finfo(dtype).bits, int_view_dtype(dtype)
    for b in range(width):
        new, _ = bit_flip.new_values(v, torch.Generator(), bit=b)
        xor = (new.view(int_dtype) ^ v.view(int_dtype)).long() & ((1 << width) - 1)
        assert xor.tolist() == [1 << b] * 8


def test_draws_are_reproducible_and_do_not_touch_the_input():
    v = values(torch.bfloat16)
    original = v.clone()
    a, _ = bit_flip.new_values(v, torch.Generator().manual_seed(5), prob=0.3)
    b, _ = bit_flip.new_values(v, torch.Generator().manual_seed(5), prob=0.3)
    assert torch.equal(a.view(torch.int16), b.view(torch.int16))
    assert torch.equal(v.view(torch.int16), original.view(torch.int16))


@pytest.mark.parametrize(
    ("dtype", "params", "message"),
    [
        (torch.float32, {}, "exactly one of prob"),
        (torch.float32, {"prob": 0.1, "bit": 3}, "exactly one of prob"),
        (torch.float32, {"prob": -0.1}, r"prob must be in \[0, 1\]"),
        (torch.float32, {"prob": 1.5}, r"prob must be in \[0, 1\]"),
        (torch.float32, {"bit": 32}, "bit 32 is outside float32's 32 bits"),
        (torch.bfloat16, {"bit": 16}, "bit 16 is outside bfloat16's 16 bits"),
        (torch.float16, {"bit": -1}, "bit -1 is outside"),
        (torch.float32, {"bit": "mantissa"}, "or one of sign, exponent_msb"),
        (torch.float32, {"scale": 1.0, "bit": 1}, "does not take scale; it takes prob, bit"),
    ],
)
def test_invalid_options(dtype, params, message):
    with pytest.raises(EsaError, match=message):
        bit_flip.new_values(torch.ones(2, dtype=dtype), torch.Generator(), **params)


def test_definitions():
    def text(**params):
        return bit_flip.definition(bit_flip.options(torch.float32, **params))

    assert text(bit="sign") == "flip the sign bit of the stored value"
    assert text(bit="exponent_msb") == "flip the most significant exponent bit of the stored value"
    assert text(bit="7") == text(bit=7) == "flip bit 7 of the stored value (0 = least significant)"
    assert text(prob=0.01) == "flip each bit of the stored value independently with probability 0.01"
