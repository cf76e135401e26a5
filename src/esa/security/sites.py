"""Where faults land: bit positions and classes of a stored float, and populations of weight sites.

A stored IEEE value of width W with M mantissa bits (M = -log2(eps): bf16 7, fp16 10, fp32 23) has
bit W-1 = sign, bits M..W-2 = exponent, bits 0..M-1 = mantissa (0 = least significant).
A site population is either every weight of the chosen parameters (drawn uniformly, so a tensor is
hit in proportion to its size) or an explicit list of weights (e.g. the top-k critical weights), less
any excluded weights (a quantized model's kept 16-bit weights, which hold no integer code).
Memory: O(number of parameters) for the cumulative sizes, O(k) for an explicit list or the exclusions.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from esa.errors import EsaError
from esa.perturb import bit_position
from esa.perturb.base import bit_width, int_view_dtype
from esa.ranking import WeightSet

BIT_CLASSES = ("sign", "exponent", "mantissa")


def mantissa_bits(dtype: torch.dtype) -> int:
    return round(-math.log2(torch.finfo(dtype).eps))


def bit_class(position: int, dtype: torch.dtype) -> str:
    """'sign', 'exponent' or 'mantissa' for bit `position` of a stored `dtype` value."""
    width, mant = bit_width(dtype), mantissa_bits(dtype)
    return "sign" if position == width - 1 else "exponent" if position >= mant else "mantissa"


def bit_positions(bits: str | int, dtype: torch.dtype) -> list[int]:
    """The positions a fault may hit: "all", a class in BIT_CLASSES, or one position (EsaError outside the dtype)."""
    int_view_dtype(dtype)
    width = bit_width(dtype)
    if bits == "all":
        return list(range(width))
    if bits in BIT_CLASSES:
        return [b for b in range(width) if bit_class(b, dtype) == bits]
    if isinstance(bits, str) and not bits.lstrip("-").isdigit():
        raise EsaError(f"bits must be all, {', '.join(BIT_CLASSES)} or a bit position, got {bits!r}")
    return [bit_position(int(bits), dtype)]


@dataclass(frozen=True)
class Site:
    """One weight: element `flat` (row-major) of parameter `param`."""

    param: str
    flat: int


class SitePopulation:
    """Weights a fault may hit; `draw` picks distinct sites uniformly at random."""

    def __init__(self, description: str, names: Sequence[str], sizes: Sequence[int],
                 explicit: Sequence[Site] | None = None, excluded: frozenset[Site] = frozenset()) -> None:
        self.description = description
        self.names = tuple(names)
        self._sizes = [int(s) for s in sizes]
        self._starts = np.cumsum([0, *self._sizes]).tolist()
        self._explicit = None if explicit is None else [s for s in explicit if s not in excluded]
        size = dict(zip(self.names, self._sizes))
        self._excluded = frozenset() if explicit is not None else frozenset(
            s for s in excluded if 0 <= s.flat < size.get(s.param, 0))
        if len(self) == 0:
            raise EsaError(f"the site population '{description}' is empty; include some parameters or use a larger k")

    @classmethod
    def every_weight(cls, shapes: dict[str, tuple[int, ...]]) -> SitePopulation:
        return cls("random", list(shapes), [math.prod(s) for s in shapes.values()])

    @classmethod
    def from_weight_set(cls, description: str, selection: WeightSet) -> SitePopulation:
        sites = [Site(selection.param_names[p], f)
                 for p, f in zip(selection.param_ids.tolist(), selection.flat_index.tolist())]
        return cls(description, [s.param for s in sites], [1] * len(sites), sites)

    def without(self, excluded: frozenset[Site], what: str) -> SitePopulation:
        """The same population less the `excluded` sites (`what` names them in the description)."""
        if not excluded:
            return self
        return SitePopulation(f"{self.description} minus {what}", self.names, self._sizes, self._explicit,
                              self._excluded | excluded)

    def __len__(self) -> int:
        return len(self._explicit) if self._explicit is not None else self._starts[-1] - len(self._excluded)

    def site(self, i: int) -> Site:
        if self._explicit is not None:
            return self._explicit[i]
        t = bisect.bisect_right(self._starts, i) - 1
        return Site(self.names[t], i - self._starts[t])

    def draw(self, rng: np.random.Generator, n: int) -> list[Site]:
        """`n` distinct sites (EsaError if the population has fewer)."""
        if n > len(self):
            raise EsaError(f"{n} faults per trial exceed the {len(self)} sites of '{self.description}'")
        total = len(self._explicit) if self._explicit is not None else self._starts[-1]
        chosen: list[int] = []
        while len(chosen) < n:  # rejection: exclusions are few (kept weights), so this rarely redraws
            i = int(rng.integers(total))
            if i not in chosen and (not self._excluded or self.site(i) not in self._excluded):
                chosen.append(i)
        return [self.site(i) for i in chosen]
