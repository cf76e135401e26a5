"""Small models for the planner's tests, as fixtures (tests import with --import-mode=importlib, so no helper modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

# hidden 256, 4 layers, vocab 4096: ~4M parameters, so tensors dwarf bookkeeping but a pass takes ~1 s
PLAN_MODEL: dict[str, Any] = {
    "vocab_size": 4096, "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 512, "tie_word_embeddings": False,
}

# the same shape at a quarter of the size, for the per-metric comparisons (hutchinson's double backward is slow)
METRIC_MODEL: dict[str, Any] = {
    **PLAN_MODEL, "vocab_size": 2048, "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2,
    "num_attention_heads": 4,
}

# one entry per activation formula: (model_type, overrides on a hidden-64 model)
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-gqa": ("llama", {"num_key_value_heads": 2}),
    "llama-mha": ("llama", {"num_key_value_heads": 4}),
    "phi3": ("phi3", {"num_key_value_heads": 2, "pad_token_id": 0, "eos_token_id": 1}),
    "gpt_neox": ("gpt_neox", {"rotary_pct": 0.25, "use_parallel_residual": True}),
    "mixtral": ("mixtral", {"num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2}),
}
_SMALL: dict[str, Any] = {
    "vocab_size": 512, "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4,
    "max_position_embeddings": 512, "tie_word_embeddings": False,
}


def small_config(family: str, **overrides: Any) -> PretrainedConfig:
    model_type, family_overrides = FAMILIES[family]
    return AutoConfig.for_model(model_type, **{**_SMALL, **family_overrides, **overrides})


def build(config: PretrainedConfig, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).to(dtype).eval()


def save_config(config: PretrainedConfig, directory: Path) -> str:
    """A model directory holding only config.json: enough for the planner."""
    config.save_pretrained(directory)
    return str(directory)


def ids(vocab: int, batch: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def helpers():
    """The helpers above, for tests: `helpers.small_config(...)`, `helpers.build(...)`, ..."""
    from types import SimpleNamespace

    return SimpleNamespace(
        PLAN_MODEL=PLAN_MODEL, METRIC_MODEL=METRIC_MODEL, FAMILIES=FAMILIES, small_config=small_config, build=build,
        save_config=save_config, ids=ids,
    )
