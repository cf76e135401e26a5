"""zero: w -> 0, ablation (what the network loses without these weights)."""

from __future__ import annotations

from typing import Any

import torch

from esa.perturb.base import Perturbation


class Zero(Perturbation):
    name = "zero"

    def definition(self, opts: dict[str, Any]) -> str:
        return "w -> 0"

    def compute(
        self, values: torch.Tensor, generator: torch.Generator, tensor: torch.Tensor, opts: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        return torch.zeros_like(values), {}
