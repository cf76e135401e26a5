"""The MLP output projections of a model, and the input/output activations of each one.

Projections are found from `ParamInfo` (component "mlp" or "expert", role "down"), never from names:
Llama/Mistral/Phi-3/Gemma `down_proj`, GPT-NeoX `dense_4h_to_h`, GPT-2 `c_proj` (Conv1D, stored
[in, out]) and the `down_proj` of every expert of an MoE block all qualify.

Fused experts (transformers 5 stores Mixtral's as one [E, hidden, ffn] tensor) have no per-expert module
to hook, and their kernels (eager loop, batched_mm, grouped_mm) never expose one expert's activations. So
a forward hook on the experts module takes its inputs (hidden states, routing) and recomputes each routed
expert's down-projection input act(gate)·up and output with the module's own parameters and gating
function (`_apply_gate`, `act_fn`, the `has_gate`/`is_transposed`/`has_bias` flags that transformers'
`@use_experts_implementation` sets). The routing-weighted sum of the recomputed outputs is checked against
the module's real output on every call, so an experts class that computes anything else fails loudly
instead of yielding wrong activations.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from esa.errors import EsaError
from esa.models.types import LoadedModel

try:  # GPT-2-style projections store their weight transposed, [in, out]
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = ()  # type: ignore[assignment,misc]

# The recomputed experts output must match the module's to this relative (Frobenius) error.
_FUSED_CHECK_RTOL = 1e-2


@dataclass(frozen=True)
class OutputProjection:
    """One MLP output projection: a whole weight tensor, or one expert's slice of a fused one.

    `transposed` weights are stored [in, out] (Conv1D, `is_transposed` experts), others [out, in];
    `fused` ones carry the expert as their first index.
    """

    param: str
    module: str  # path of the module whose forward the hook watches
    layer: int | None
    expert: int | None
    fused: bool
    transposed: bool

    def index(self, out_channel: int, in_channel: int) -> tuple[int, ...]:
        """The weight's index in Hugging Face order ([row, col], or [expert, row, col] when fused)."""
        pair = (in_channel, out_channel) if self.transposed else (out_channel, in_channel)
        return (self.expert, *pair) if self.fused else pair

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """This projection's weight as [out, in] (a view)."""
        w = weight[self.expert] if self.fused else weight
        return w.T if self.transposed else w


# sink(projection, inputs [n, in], outputs [n, out], rows [n]): rows index the flattened batch tokens
Sink = Callable[[OutputProjection, torch.Tensor, torch.Tensor, torch.Tensor], None]


def find_output_projections(lm: LoadedModel) -> list[OutputProjection]:
    """Every MLP output projection of `lm`, one per expert for MoE blocks, in parameter order."""
    found: list[OutputProjection] = []
    for name, info in lm.params.items():
        if info.role != "down" or info.component not in ("mlp", "expert"):
            continue
        module_path = name.rpartition(".")[0]
        owner = lm.model.get_submodule(module_path)
        if info.expert_axis is not None and len(info.shape) == 3:
            if info.expert_axis != 0:
                raise EsaError(
                    f"{name} indexes experts along axis {info.expert_axis}; ESA reads fused experts on axis 0 only"
                )
            transposed = bool(getattr(owner, "is_transposed", False))
            found += [
                OutputProjection(name, module_path, info.layer, e, fused=True, transposed=transposed)
                for e in range(info.shape[0])
            ]
        elif info.linear:
            found.append(OutputProjection(
                name, module_path, info.layer, info.expert, fused=False, transposed=isinstance(owner, Conv1D)
            ))
    if not found:
        raise EsaError(
            f"found no MLP output projection in {lm.model_id}: ESA identifies them by module structure "
            "(the down/output projection of an MLP or expert block), and this model has none it recognises"
        )
    return found


def attach_recorders(model: nn.Module, projections: list[OutputProjection], sink: Sink) -> list:
    """Forward hooks that pass each projection's activations to `sink`; remove the returned handles."""
    by_module: dict[str, list[OutputProjection]] = {}
    for proj in projections:
        by_module.setdefault(proj.module, []).append(proj)
    handles = []
    for path, projs in by_module.items():
        module = model.get_submodule(path)
        if projs[0].fused:
            handles.append(module.register_forward_hook(_fused_hook(projs, sink), with_kwargs=True))
        else:
            handles.append(module.register_forward_hook(_dense_hook(projs[0], sink)))
    return handles


def _dense_hook(proj: OutputProjection, sink: Sink) -> Callable:
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        x = args[0].detach()
        y = output.detach()
        x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        sink(proj, x, y, torch.arange(x.shape[0], device=x.device))

    return hook


def _fused_hook(projs: list[OutputProjection], sink: Sink) -> Callable:
    by_expert = {p.expert: p for p in projs}

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
        hidden, top_k_index, top_k_weights = _routing_inputs(module, args, kwargs)
        rebuilt = torch.zeros(hidden.shape[0], output.shape[-1], dtype=torch.float32, device=hidden.device)
        for expert, rows, h, y in _expert_activations(module, hidden, top_k_index):
            weight = (top_k_weights[rows] * (top_k_index[rows] == expert)).sum(dim=-1, keepdim=True)
            out = module.post_expert_norm(y) if getattr(module, "has_post_expert_norm", False) else y
            rebuilt.index_add_(0, rows, (out * weight).float())
            sink(by_expert[expert], h, y, rows)
        reference = output.detach().float().reshape(rebuilt.shape)
        error = (rebuilt - reference).norm() / reference.norm().clamp_min(1e-30)
        if error > _FUSED_CHECK_RTOL:
            raise EsaError(
                f"cannot read per-expert activations of {type(module).__name__}: recomputing its experts "
                f"differs from its output by {float(error):.2g} (relative); this experts class is not supported"
            )

    return hook


def _routing_inputs(module: nn.Module, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden_states [n, hidden], top_k_index [n, k], top_k_weights [n, k]) of a fused-experts call."""
    try:
        bound = inspect.signature(type(module).forward).bind(module, *args, **kwargs).arguments
        hidden, index, weights = bound["hidden_states"], bound["top_k_index"], bound["top_k_weights"]
    except (TypeError, KeyError):
        raise EsaError(
            f"cannot read per-expert activations of {type(module).__name__}: its forward does not take "
            "(hidden_states, top_k_index, top_k_weights) like transformers' fused experts"
        ) from None
    return hidden.detach().reshape(-1, hidden.shape[-1]), index.detach(), weights.detach()


@torch.no_grad()
def _expert_activations(
    experts: nn.Module, hidden: torch.Tensor, top_k_index: torch.Tensor
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(expert, token rows, down-projection input, down-projection output) of every routed expert."""
    if not hasattr(experts, "has_gate") or not hasattr(experts, "down_proj"):
        raise EsaError(
            f"cannot read per-expert activations of {type(experts).__name__}: ESA recomputes transformers' "
            "fused experts (@use_experts_implementation) and this class is not one"
        )
    transposed = bool(getattr(experts, "is_transposed", False))
    bias = bool(getattr(experts, "has_bias", False))
    first = "gate_up_proj" if experts.has_gate else "up_proj"
    n_experts = experts.down_proj.shape[0]
    for expert in torch.unique(top_k_index).tolist():
        if expert >= n_experts:  # expert-parallel sentinel: not computed here
            continue
        rows = (top_k_index == expert).any(dim=-1).nonzero().squeeze(1)
        h = _linear(hidden[rows], getattr(experts, first)[expert], transposed)
        if bias:
            h = h + getattr(experts, f"{first}_bias")[expert]
        h = experts._apply_gate(h) if experts.has_gate else experts.act_fn(h)
        y = _linear(h, experts.down_proj[expert], transposed)
        if bias:
            y = y + experts.down_proj_bias[expert]
        yield expert, rows, h, y


def _linear(x: torch.Tensor, weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    return x @ weight if transposed else F.linear(x, weight)
