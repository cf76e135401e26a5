"""Faults in the integer codes of a quantized model (esa.quantize, RTN or GPTQ): a campaign's BitSpace.

esa.quantize stores each weight of a quantized [rows, in] matrix as a b-bit code and, per group g of
consecutive inputs of its row, a scale s_g and a zero point z_g (esa.quantize.rtn). As the unsigned
integer a packed format stores, the code is u in [0, 2^b - 1] and the weight is

    w = s_g (u - z_g)

(asymmetric: u = q and z_g the fitted zero point; symmetric: the signed q in [-2^(b-1), 2^(b-1) - 1]
is stored offset, u = q + 2^(b-1), z_g = 2^(b-1), as llama.cpp's Q4_0/Q8_0 blocks store it). A code
fault flips bit i of one u (0 = least significant, b - 1 = most): the weight becomes
s_g ((u XOR 2^i) - z_g), computed in the quantizer's float32 and rounded once to the model's dtype,
exactly as esa.quantize wrote it; so it moves by ±2^i s_g and stays on its group's grid. The value is
written and restored by esa.perturb.apply_perturbation (through the stored bits, proven by checksum),
as a float fault is. Kept weights (protected, left in 16 bits) hold no code and are no code sites.
Memory: one uint8 code per quantized weight plus the grids (two float32 per group).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ContextManager

import torch

from esa.artifacts.schema import unravel
from esa.data import WindowSet
from esa.errors import EsaError
from esa.models import LoadedModel
from esa.perturb import apply_perturbation
from esa.perturb.base import Perturbation, PerturbParam, int_view_dtype
from esa.quantize import QuantResult, find_targets, quantize
from esa.security.faults import Fault
from esa.security.sites import Site

CODE_CLASS = "code"  # the bit class of every code bit: a code has no sign/exponent/mantissa fields


def code_bit_positions(bits: str | int, width: int, what: str | None = None) -> list[int]:
    """The code bits a fault may hit: "all" or one position below `width` (EsaError otherwise)."""
    if bits == "all":
        return list(range(width))
    if isinstance(bits, str) and not bits.lstrip("-").isdigit():
        raise EsaError(f"integer codes have no {bits!r} bits; use all or a code bit position 0..{width - 1}")
    position = int(bits)
    if not 0 <= position < width:
        where = f" of {what}" if what else ""
        raise EsaError(f"bit {position} is outside the {width}-bit codes{where} (0 = least significant, {width - 1} = most)")
    return [position]


@dataclass(frozen=True)
class CodeTensor:
    """One quantized tensor's unsigned codes and grid, in its [rows, in] matrix layout."""

    codes: torch.Tensor  # uint8 [rows, in], in [0, 2^bits - 1]
    scale: torch.Tensor  # float32 [rows, n_groups]
    zero: torch.Tensor  # float32 [rows, n_groups], integers: the unsigned code of w = 0
    bits: int
    group_size: int  # 0 = one group per row
    shape: tuple[int, ...]  # the parameter's shape
    transposed: bool  # GPT-2's Conv1D: the parameter is [in, rows]

    def cell(self, flat: int) -> tuple[int, int]:
        """[row, col] in the matrix of element `flat` (row-major) of the parameter."""
        if self.transposed:
            i, o = divmod(flat, self.shape[1])
            return o, i
        return divmod(flat, self.shape[-1])

    def value(self, row: int, col: int, code: int, dtype: torch.dtype) -> torch.Tensor:
        """The weight code `code` stands for at [row, col], as one `dtype` element."""
        g = col // self.group_size if self.group_size else 0
        s, z = self.scale[row, g], self.zero[row, g]
        return (s * (torch.tensor(float(code), dtype=s.dtype) - z)).to(dtype).reshape(1)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """Every weight the codes stand for, [rows, in] in `dtype`."""
        size = self.group_size or self.codes.shape[1]
        scale, zero = (t.repeat_interleave(size, dim=1) for t in (self.scale, self.zero))
        return (scale * (self.codes.to(scale.dtype) - zero)).to(dtype)


class _Overwrite(Perturbation):
    """w -> a given value: the weight a flipped code stands for (computed by CodeSpace)."""

    name = "code_flip"
    params = {"value": PerturbParam(None, "", "the new stored value (one element in the tensor's dtype)")}

    def check(self, opts: dict[str, Any], dtype: torch.dtype) -> None:
        if opts["value"] is None:
            raise EsaError("code_flip needs the value the flipped code stands for")

    def definition(self, opts: dict[str, Any]) -> str:
        return "w = s (u - z) -> s ((u XOR 2^i) - z): bit i of the weight's integer code u flipped"

    def compute(self, values: torch.Tensor, generator: torch.Generator, tensor: torch.Tensor,
                opts: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        return opts["value"].to(values.device, values.dtype).reshape(values.shape), {}


class CodeSpace:
    """The integer codes of the quantized tensors a model holds now; a BitSpace for fault_campaign."""

    def __init__(self, label: str, tensors: dict[str, CodeTensor], kept: frozenset[Site], lm: LoadedModel) -> None:
        self.label = label
        self.tensors = tensors
        self.kept = kept  # the protected 16-bit weights: not code sites
        self._params = dict(lm.model.named_parameters(remove_duplicate=False))
        self._unused = torch.Generator().manual_seed(0)  # an overwrite draws nothing
        for name, t in tensors.items():
            param = self._params[name]
            now = (param.detach().T if t.transposed else param.detach().reshape(-1, t.shape[-1]))
            same = now.view(int_view_dtype(param.dtype)) == t.dequantized(param.dtype).view(int_view_dtype(param.dtype))
            for site in (s for s in kept if s.param == name):
                same[t.cell(site.flat)] = True
            if not bool(same.all()):
                raise EsaError(f"{name} does not hold the weights its codes stand for; build the code space while "
                               "the model is quantized (esa.quantize with keep_quantized=True, before restore())")

    @classmethod
    def from_quantized(cls, lm: LoadedModel, result: QuantResult) -> CodeSpace:
        """The codes of `result` (esa.quantize with keep_quantized=True, not yet restored) on `lm`."""
        if result.quantized is None:
            raise EsaError("this quantization result holds no codes; quantize with keep_quantized=True and build "
                           "the code space before QuantResult.restore()")
        targets = {t.name: t for t in find_targets(lm)}
        tensors = {}
        for name, q in result.quantized.items():
            g = q.grid
            tensors[name] = CodeTensor(
                codes=(q.codes - g.qmin).to(torch.uint8), scale=g.scale.float(), zero=(g.zero - g.qmin).float(),
                bits=g.bits, group_size=g.group_size, shape=tuple(targets[name].info.shape),
                transposed=targets[name].transposed)
        kept = frozenset(Site(row["param"], int(row["flat_index"])) for row in result.kept)
        return cls(result.label, tensors, kept, lm)

    def names(self, lm: LoadedModel) -> list[str]:
        """The quantized tensors, in lm.params order."""
        return [n for n in lm.params if n in self.tensors]

    def describe(self, names: list[str]) -> str:
        widths = sorted({self._tensor(n).bits for n in names})
        dtypes = sorted({str(self._params[n].dtype).replace("torch.", "") for n in names})
        return f"{'/'.join(f'uint{b}' for b in widths)} codes ({self.label}, {', '.join(dtypes)})"

    def positions(self, name: str, bits: str | int) -> list[int]:
        return code_bit_positions(bits, self._tensor(name).bits, name)

    def fault(self, lm: LoadedModel, site: Site, bit: int) -> Fault:
        t, param = self._tensor(site.param), self._params[site.param]
        row, col = t.cell(site.flat)
        code = int(t.codes[row, col])
        stored = param.detach().reshape(-1)[site.flat : site.flat + 1]
        view = int_view_dtype(param.dtype)
        if not torch.equal(stored.view(view), t.value(row, col, code, param.dtype).view(view)):
            raise EsaError(f"{site.param} no longer holds the weights its codes stand for (restored?); "
                           "run the campaign while the model is quantized")
        new = t.value(row, col, code ^ (1 << bit), param.dtype)
        info = lm.params[site.param]
        return Fault(site.param, info.layer, info.component, unravel(site.flat, info.shape), bit, CODE_CLASS,
                     float(stored.float()), float(new.float()), code, code ^ (1 << bit))

    def inject(self, lm: LoadedModel, site: Site, fault: Fault) -> ContextManager[Any]:
        t, dtype = self._tensor(site.param), self._params[site.param].dtype
        assert fault.new_code is not None  # made by self.fault
        value = t.value(*t.cell(site.flat), fault.new_code, dtype)
        return apply_perturbation(lm.model, {site.param: torch.tensor([site.flat])}, _Overwrite(), self._unused,
                                  value=value)

    def _tensor(self, name: str) -> CodeTensor:
        if name not in self.tensors:
            raise EsaError(f"{name} has no integer codes (it is not quantized); choose quantized tensors as sites")
        return self.tensors[name]


@contextmanager
def quantized_codes(lm: LoadedModel, windows: WindowSet, *, bits: int, group_size: int, symmetric: bool = False,
                    method: str = "rtn", **options: Any) -> Iterator[tuple[QuantResult, CodeSpace]]:
    """Quantize `lm` in place with esa.quantize (`options`: its keyword options) for the with-block and
    yield the result and its codes; on exit the original weights come back, proven by checksum.
    The result's float copy of the codes is dropped once the space holds them as uint8."""
    result = quantize(lm, windows, bits=bits, group_size=group_size, symmetric=symmetric, method=method,
                      keep_quantized=True, **options)
    try:
        space = CodeSpace.from_quantized(lm, result)
        result.quantized = None
        yield result, space
    finally:
        result.restore()
