"""The tensors pruning acts on, each seen as an [out, in] matrix so that "row" always means output row.

Default: the linear weights of the decoder blocks, found from ParamInfo (`linear`, inside a block),
plus fused expert tensors ([n_experts, out, in], seen as [n_experts·out, in]); MoE routers are left
out (they choose experts rather than carry features). `include` regexes replace the default with any
matching parameter of two or more dimensions (embeddings, lm_head); `exclude` removes from either.
GPT-2's Conv1D stores [in, out]; its matrix view is the transpose, so masks and rows match nn.Linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from esa.errors import EsaError
from esa.models.types import LoadedModel, ParamInfo
from esa.ranking.filter import filter_params

try:
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = ()  # type: ignore[assignment,misc]


@dataclass(frozen=True)
class Target:
    """One tensor to prune and how to see it as [out, in]."""

    name: str
    info: ParamInfo
    transposed: bool  # Conv1D: the parameter is [in, out]
    module: nn.Module | None  # the module that applies it to an activation (None: fused experts, embeddings)

    def matrix(self, tensor: torch.Tensor) -> torch.Tensor:
        """[out, in] view of a tensor shaped like the parameter."""
        if self.transposed:
            return tensor.t()
        return tensor.reshape(-1, tensor.shape[-1])

    def unmatrix(self, matrix: torch.Tensor) -> torch.Tensor:
        """Back from [out, in] to the parameter's shape."""
        if self.transposed:
            return matrix.t()
        return matrix.reshape(self.info.shape)

    @property
    def n_in(self) -> int:
        return self.info.shape[0] if self.transposed else self.info.shape[-1]


def find_targets(lm: LoadedModel, include: list[str] | tuple[str, ...] = (), exclude: list[str] | tuple[str, ...] = ()) -> list[Target]:
    """The targets in model order (see the module docstring)."""
    if include:
        pool = [n for n, p in lm.params.items() if len(p.shape) >= 2]
        names = filter_params(pool, list(include), list(exclude))
    else:
        pool = [n for n, p in lm.params.items() if _default(p)]
        if not pool:
            raise EsaError("found no linear layers inside decoder blocks to prune; name targets with --include")
        names = filter_params(pool, None, list(exclude))
    owners = _owners(lm.model)
    return [_target(lm, n, owners.get(n)) for n in names]


def _default(p: ParamInfo) -> bool:
    if p.layer is None or p.component == "router":
        return False
    return (p.linear and len(p.shape) == 2) or (p.component == "expert" and len(p.shape) == 3)


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    """Parameter name -> the Linear/Conv1D module that owns it as `.weight`."""
    out = {}
    for path, module in model.named_modules():
        if isinstance(module, (nn.Linear, Conv1D)):
            out[f"{path}.weight" if path else "weight"] = module
    return out


def _target(lm: LoadedModel, name: str, module: nn.Module | None) -> Target:
    info = lm.params[name]
    if not info.linear:
        module = None
    return Target(name, info, isinstance(module, Conv1D), module)
