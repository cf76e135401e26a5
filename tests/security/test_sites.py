"""Bit classes of each stored dtype and site populations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esa.errors import EsaError
from esa.ranking import WeightSet
from esa.security.sites import SitePopulation, bit_class, bit_positions


@pytest.mark.parametrize("dtype,exp,mant", [(torch.bfloat16, 8, 7), (torch.float16, 5, 10), (torch.float32, 8, 23)])
def test_bit_classes(dtype: torch.dtype, exp: int, mant: int) -> None:
    width = 1 + exp + mant
    classes = [bit_class(b, dtype) for b in range(width)]
    assert classes == ["mantissa"] * mant + ["exponent"] * exp + ["sign"]
    assert bit_positions("exponent", dtype) == list(range(mant, mant + exp))
    assert bit_positions("all", dtype) == list(range(width))
    assert bit_positions(3, dtype) == [3]


def test_bit_class_matches_the_stored_value() -> None:
    """Flipping bit 7 of bf16 1.0 (0x3F80) doubles nothing but changes the exponent: 0x3F00 = 0.5."""
    x = torch.tensor([1.0], dtype=torch.bfloat16).view(torch.int16) ^ (1 << 7)
    assert float(x.view(torch.bfloat16)) == 0.5 and bit_class(7, torch.bfloat16) == "exponent"


@pytest.mark.parametrize("bits", [16, -1, "nope"])
def test_bit_outside_the_dtype(bits: object) -> None:
    with pytest.raises(EsaError):
        bit_positions(bits, torch.bfloat16)


def test_every_weight_population_maps_indices_to_tensors() -> None:
    pop = SitePopulation.every_weight({"a": (2, 3), "b": (4,)})
    assert len(pop) == 10
    assert [pop.site(i) for i in (0, 5, 6, 9)] == [
        pop.site(0).__class__("a", 0), pop.site(0).__class__("a", 5), pop.site(0).__class__("b", 0),
        pop.site(0).__class__("b", 3)]
    drawn = pop.draw(np.random.default_rng(0), 10)
    assert len(set(drawn)) == 10
    with pytest.raises(EsaError):
        pop.draw(np.random.default_rng(0), 11)


def test_empty_population() -> None:
    empty = WeightSet(("a",), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), torch.empty(0))
    with pytest.raises(EsaError, match="empty"):
        SitePopulation.from_weight_set("top-0", empty)
    with pytest.raises(EsaError, match="empty"):
        SitePopulation.every_weight({})
