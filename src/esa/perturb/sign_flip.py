"""sign_flip: w -> -s·w, the perturbation that keeps |w| (with s = 1) and so isolates the sign."""

from __future__ import annotations

from typing import Any

import torch

from esa.perturb.base import Perturbation, PerturbParam, check_scale, compute_dtype


class SignFlip(Perturbation):
    name = "sign_flip"
    params = {"scale": PerturbParam(1.0, "--perturb-scale", "w -> -scale * w")}

    def check(self, opts: dict[str, Any], dtype: torch.dtype) -> None:
        opts["scale"] = check_scale(opts["scale"])

    def definition(self, opts: dict[str, Any]) -> str:
        return "w -> -w" if opts["scale"] == 1.0 else f"w -> -{opts['scale']:g}·w"

    def compute(
        self, values: torch.Tensor, generator: torch.Generator, tensor: torch.Tensor, opts: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        return (values.to(compute_dtype(values.dtype)) * -opts["scale"]).to(values.dtype), {}
