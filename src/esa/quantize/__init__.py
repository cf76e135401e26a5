"""Quantization of the linear layers: RTN and GPTQ, critical-weight protection, mixed precision, export."""

from esa._callable import callable_package
from esa.quantize.allocate import OBJECTIVE, Allocation, allocate
from esa.quantize.core import METHODS, QuantResult, check_configuration, quantize
from esa.quantize.gptq import gptq
from esa.quantize.protect import Protection, protect
from esa.quantize.rtn import SUPPORTED_BITS, Grid, QuantizedMatrix, fit_grid, rtn
from esa.quantize.scores import ScoreCache
from esa.quantize.targets import Target, find_targets

__all__ = [
    "METHODS", "OBJECTIVE", "SUPPORTED_BITS", "Allocation", "Grid", "Protection", "QuantResult", "QuantizedMatrix",
    "ScoreCache", "Target", "allocate", "check_configuration", "find_targets", "fit_grid", "gptq", "protect", "quantize", "rtn",
]


callable_package(__name__, quantize)
