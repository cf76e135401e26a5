"""Which tensors ESA quantizes, and how each is seen as an [out, in] matrix.

Targets are the weights of the linear maps inside the decoder blocks, found from ParamInfo (module
structure, any family): attention and MLP projections, MoE experts (separate modules or fused
[n_experts, out, in] tensors), GPT-2's Conv1D (stored [in, out], seen transposed). Routers, norms,
embeddings and the output head stay in the model's dtype, as in GPTQ and llama.cpp's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from esa.models.types import LoadedModel, ParamInfo


@dataclass(frozen=True)
class Target:
    """One quantized tensor: its parameter, the module applying it, and its matrix layout."""

    name: str
    info: ParamInfo
    param: nn.Parameter
    module: nn.Module
    transposed: bool  # Conv1D: the stored tensor is [in, out]
    fused_experts: bool  # [n_experts, out, in]: one matrix of n_experts * out rows

    @property
    def in_features(self) -> int:
        return self.info.shape[0] if self.transposed else self.info.shape[-1]

    @property
    def numel(self) -> int:
        return self.info.numel

    def matrix(self) -> torch.Tensor:
        """The weights as [rows, in] (a view where the layout allows)."""
        w = self.param.detach()
        return w.T if self.transposed else w.reshape(-1, w.shape[-1])

    def to_matrix(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor of the parameter's shape (a keep mask, scores) in matrix layout."""
        return t.T if self.transposed else t.reshape(-1, t.shape[-1])

    def write(self, matrix: torch.Tensor) -> None:
        """Store [rows, in] values back into the parameter, in place."""
        value = matrix.T if self.transposed else matrix.reshape(self.param.shape)
        with torch.no_grad():
            self.param.copy_(value)


def find_targets(lm: LoadedModel) -> list[Target]:
    """Every linear weight inside a decoder block except routers, in named_parameters() order."""
    named = dict(lm.model.named_parameters())
    out = []
    for name, info in lm.params.items():
        fused = info.expert_axis is not None and len(info.shape) == 3
        if info.layer is None or info.component == "router" or not (info.linear or fused):
            continue
        module = lm.model.get_submodule(name.rpartition(".")[0])
        out.append(Target(name, info, named[name], module, isinstance(module, Conv1D), fused))
    return out
