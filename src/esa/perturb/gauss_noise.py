"""gauss_noise: w -> w + ε·|w|·N(0,1) (relative noise), or w -> w + ε·std(W)·N(0,1) (noise_ref="std").

Relative noise perturbs every weight by the same fraction of itself, so it cannot favour large weights;
std-referenced noise adds the same absolute amount to every selected weight of a tensor, as a
weight-agnostic reference point.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from esa.errors import EsaError
from esa.perturb.base import Perturbation, PerturbParam, check_scale, compute_dtype

NOISE_REFS = ("abs", "std")
CHUNK = 1 << 22  # elements per pass of the std, so a bf16 tensor is never copied whole to float64


def tensor_std(tensor: torch.Tensor) -> float:
    """Sample standard deviation (Bessel-corrected, as torch.std) of every element of `tensor`.

    Two passes in float64 over fixed-size chunks: exact to float64 rounding, O(chunk) extra memory.
    """
    flat = tensor.detach().reshape(-1)
    n = flat.numel()
    if n < 2:
        return 0.0
    chunks = [flat[i : i + CHUNK] for i in range(0, n, CHUNK)]
    mean = sum(float(c.double().sum()) for c in chunks) / n
    return math.sqrt(sum(float((c.double() - mean).square().sum()) for c in chunks) / (n - 1))


class GaussNoise(Perturbation):
    name = "gauss_noise"
    params = {
        "scale": PerturbParam(1.0, "--perturb-scale", "noise strength epsilon"),
        "noise_ref": PerturbParam("abs", "--noise-ref", "abs: relative to |w|; std: relative to the tensor's std"),
    }

    def stochastic(self, opts: dict[str, Any]) -> bool:
        return True

    def check(self, opts: dict[str, Any], dtype: torch.dtype) -> None:
        opts["scale"] = check_scale(opts["scale"])
        if opts["noise_ref"] not in NOISE_REFS:
            raise EsaError(f"noise_ref must be one of {', '.join(NOISE_REFS)}, got {opts['noise_ref']!r}")

    def definition(self, opts: dict[str, Any]) -> str:
        eps = f"{opts['scale']:g}"
        if opts["noise_ref"] == "abs":
            return f"w -> w + {eps}·|w|·N(0,1)"
        return f"w -> w + {eps}·std(W)·N(0,1), std(W) = standard deviation of the whole parameter tensor W"

    def compute(
        self, values: torch.Tensor, generator: torch.Generator, tensor: torch.Tensor, opts: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        w = values.to(compute_dtype(values.dtype))
        noise = torch.randn(w.shape, generator=generator, dtype=w.dtype, device=generator.device).to(w.device)
        if opts["noise_ref"] == "abs":
            return (w + opts["scale"] * w.abs() * noise).to(values.dtype), {}
        std = tensor_std(tensor)
        return (w + opts["scale"] * std * noise).to(values.dtype), {"std": std}
