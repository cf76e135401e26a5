"""The perturbation contract and the bit-level helpers every perturbation and the restore share.

A perturbation computes replacement values for the selected ORIGINAL values of one parameter; it
never writes to the model (esa.perturb.apply does, through integer views, and restores the bits).
Random draws come from the caller's generator on the generator's device, so the same seed gives
the same perturbation whether the parameter sits on the CPU or a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from esa.errors import EsaError

# Same-width integer dtype of each float dtype a perturbation can touch: the raw stored bits.
INT_VIEW: dict[torch.dtype, torch.dtype] = {
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float64: torch.int64,
}


def int_view_dtype(dtype: torch.dtype, name: str = "the tensor") -> torch.dtype:
    """The integer dtype whose values are the stored bits of `dtype` (EsaError for other dtypes)."""
    if dtype not in INT_VIEW:
        supported = ", ".join(str(d).replace("torch.", "") for d in INT_VIEW)
        raise EsaError(f"{name} is {str(dtype).replace('torch.', '')}; perturbations support {supported}")
    return INT_VIEW[dtype]


def bit_width(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits


def bit_value(position: int, width: int) -> int:
    """The signed integer with only bit `position` set, in a `width`-bit two's-complement type."""
    return (1 << position) - (1 << width) * (position == width - 1)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Arithmetic happens in at least float32 and is rounded once to the stored dtype."""
    return torch.promote_types(dtype, torch.float32)


def check_scale(scale: Any) -> float:
    scale = float(scale)
    if not (math.isfinite(scale) and scale >= 0):
        raise EsaError(f"perturbation scale must be a finite number >= 0, got {scale}")
    return scale


@dataclass(frozen=True)
class PerturbParam:
    """One option of a perturbation: its default (None: optional or must be given, see `check`), the
    `esa run` flag that sets it, and its help text. The CLI, `perturb_params` and the help derive from it."""

    default: Any
    flag: str
    help: str


class Perturbation:
    """One way of changing selected weights.

    Subclasses set `name` and `params` (every keyword option they accept, as PerturbParam), and
    implement `check`, `definition` and `compute`; `stochastic` says whether two applications with
    different generators differ (then validation re-draws the target once per trial). Callers use
    `options` to validate once and `new_values` to compute.
    """

    name: ClassVar[str]
    params: ClassVar[dict[str, PerturbParam]] = {}
    defaults: ClassVar[dict[str, Any]] = {}  # derived from `params`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.defaults = {k: p.default for k, p in cls.params.items()}

    def stochastic(self, opts: dict[str, Any]) -> bool:
        """Whether an application depends on the generator (deterministic perturbations: False)."""
        return False

    def options(self, dtype: torch.dtype, **params: Any) -> dict[str, Any]:
        """Validated parameters for a tensor of `dtype`, defaults filled; None values count as not given.

        Raises EsaError naming the problem (unknown parameter, value out of range).
        """
        given = {k: v for k, v in params.items() if v is not None}
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            accepted = ", ".join(self.defaults) or "no parameters"
            raise EsaError(f"perturbation {self.name!r} does not take {', '.join(unknown)}; it takes {accepted}")
        opts = {**self.defaults, **given}
        self.check(opts, dtype)
        return opts

    def new_values(
        self, values: torch.Tensor, generator: torch.Generator, tensor: torch.Tensor | None = None, **params: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Replacement values (same dtype and device as `values`) and perturbation-specific details.

        `values` are the selected original values of `tensor`, the whole parameter they come from
        (used by perturbations that look at the whole tensor; default: `values` themselves).
        """
        opts = self.options(values.dtype, **params)
        return self.compute(values, generator, values if tensor is None else tensor, opts)

    def check(self, opts: dict[str, Any], dtype: torch.dtype) -> None:
        """Raise EsaError if `opts` make no sense for a tensor of `dtype`; may normalise them in place."""

    def definition(self, opts: dict[str, Any]) -> str:
        """The formula applied, for reports, e.g. 'w -> -w'."""
        raise NotImplementedError

    def compute(
        self, values: torch.Tensor, generator: torch.Generator, tensor: torch.Tensor, opts: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError
