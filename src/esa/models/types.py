"""What ESA knows about a loaded model and each of its parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from esa.models.facts import size_facts

COMPONENTS = ("embedding", "attention", "mlp", "norm", "lm_head", "router", "expert", "other")


@dataclass(frozen=True)
class ParamInfo:
    """Where one parameter tensor sits in the network, found from module structure.

    `layer` is the decoder-block index (None outside the blocks: embeddings, final norm, lm_head).
    `component` is one of COMPONENTS; `role` names the projection inside it by position in the
    block's dataflow ("q", "k", "v", "qkv", "o", "gate", "up", "gate_up", "down", "input_norm", ...),
    `expert` the expert index inside an MoE block whose experts are separate modules;
    `expert_axis` the axis that indexes experts when they are fused into one tensor (transformers 5
    stores Mixtral experts as [n_experts, out, in]). `linear` says whether the tensor is the weight of a
    linear map applied to activations (the parameters act_mag can score), with `in_features`
    the size of the input it multiplies.
    """

    name: str
    shape: tuple[int, ...]
    layer: int | None
    component: str
    role: str | None = None
    expert: int | None = None
    expert_axis: int | None = None
    linear: bool = False
    in_features: int | None = None

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer and the facts every later stage needs."""

    model: torch.nn.Module
    tokenizer: Any
    model_id: str
    source: str
    family: str
    n_params: int
    n_layers: int
    params: dict[str, ParamInfo]
    dtype: torch.dtype
    device: torch.device
    max_seq_len: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for manifests and reports."""
        counts: dict[str, int] = {}
        for p in self.params.values():
            counts[p.component] = counts.get(p.component, 0) + p.numel
        return {
            "model_id": self.model_id,
            "source": self.source,
            "family": self.family,
            "n_params": self.n_params,
            "n_layers": self.n_layers,
            "n_tensors": len(self.params),
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "max_seq_len": self.max_seq_len,
            "params_by_component": counts,
            **size_facts(self.n_params, counts, self.extra),
            **self.extra,
        }
