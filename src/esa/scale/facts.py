"""The shapes a memory plan needs: dimensions from the config, exact tensor sizes from a weightless model.

The model is built on the meta device (no storage), so counting the 46.7B parameters of Mixtral costs
seconds and no memory, and every count is the real tensor list, tied embeddings once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from esa.errors import EsaError
from esa.models.layout import describe_parameters, is_tied
from esa.models.types import ParamInfo
from esa.scale.configs import resolve_config


@dataclass(frozen=True)
class BlockStyle:
    """How a decoder block's forward pass keeps tensors for backward (the activation formula per family).

    norm: "rms" (two pre-norms; HF RMSNorm saves a float32 upcast) or "parallel_ln" (GPT-NeoX: two
    LayerNorms on one input, parallel residual). qkv: "separate" q/k/v linears, or one "fused" linear
    sliced into views (the saved value view keeps the whole qkv output alive). mlp: "gated" (SwiGLU),
    "plain" (one activation) or "moe" (top-k routed gated experts).
    """

    norm: str
    qkv: str
    mlp: str


LLAMA_STYLE = BlockStyle("rms", "separate", "gated")
BLOCK_STYLES: dict[str, BlockStyle] = {
    "llama": LLAMA_STYLE,
    "mistral": LLAMA_STYLE,
    "qwen2": LLAMA_STYLE,
    "mixtral": BlockStyle("rms", "separate", "moe"),
    "phi3": BlockStyle("rms", "fused", "gated"),
    "gpt_neox": BlockStyle("parallel_ln", "fused", "plain"),
}


@dataclass(frozen=True)
class ModelFacts:
    name: str
    source: str
    model_type: str
    style: BlockStyle
    style_known: bool  # False: an unlisted family, planned with the Llama formula
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    layers: int
    experts: int  # 1 for a dense model
    experts_per_token: int
    tied: bool
    max_positions: int | None
    params: dict[str, ParamInfo]

    @property
    def n_params(self) -> int:
        return sum(p.numel for p in self.params.values())

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def by_component(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.params.values():
            counts[p.component] = counts.get(p.component, 0) + p.numel
        return counts


@lru_cache(maxsize=32)
def model_facts(model: str) -> ModelFacts:
    """Facts about `model` (any name `resolve_config` accepts); cached, since plans try many settings."""
    resolved = resolve_config(model)
    config = resolved.config.get_text_config()
    try:
        with torch.device("meta"):
            meta = AutoModelForCausalLM.from_config(resolved.config)
    except (ValueError, KeyError) as exc:
        raise EsaError(f"cannot build {model} ({config.model_type}) as a causal LM: {exc}") from exc
    heads = config.num_attention_heads
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None) or 1
    return ModelFacts(
        name=model,
        source=resolved.source,
        model_type=config.model_type,
        style=BLOCK_STYLES.get(config.model_type, LLAMA_STYLE),
        style_known=config.model_type in BLOCK_STYLES,
        hidden=config.hidden_size,
        intermediate=_intermediate(config),
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        vocab=config.vocab_size,
        layers=config.num_hidden_layers,
        experts=experts,
        experts_per_token=(getattr(config, "num_experts_per_tok", None) or 1) if experts > 1 else 1,
        tied=is_tied(meta),
        max_positions=getattr(config, "max_position_embeddings", None),
        params=describe_parameters(meta),
    )


def _intermediate(config: PretrainedConfig) -> int:
    """The MLP width (per expert for MoE); 4·hidden where a family leaves it implicit."""
    for key in ("moe_intermediate_size", "intermediate_size", "n_inner", "ffn_dim"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return 4 * config.hidden_size
