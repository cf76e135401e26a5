"""Turn a model name into a transformers config, without weights and, for the seeds' models, without network.

The planner only needs shapes. They come from, in order: a local directory / config.json / .gguf file, a
tiny test alias, a bundled GGUF alias, the built-in table below (public config.json values of the models
ESA's studies start from, written out so `esa plan` works offline), and finally the Hugging Face hub.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig

from esa.errors import EsaError
from esa.models.aliases import BUNDLED_ALIASES, BUNDLED_GGUF
from esa.models.files import check_gguf
from esa.models.hf import hf_errors
from esa.models.tiny import TINY_CONFIGS, build_tiny_model

# Public config.json values (architecture fields only) of the models the studies use, by hub id.
BUILTIN_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "meta-llama/Llama-3.1-8B": ("llama", {
        "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
        "bos_token_id": 128000, "eos_token_id": 128001,
    }),
    "mistralai/Mistral-7B-v0.3": ("mistral", {
        "vocab_size": 32768, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "sliding_window": None, "hidden_act": "silu",
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }),
    "microsoft/Phi-3-mini-4k-instruct": ("phi3", {
        "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "sliding_window": 2047, "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 32000, "pad_token_id": 32000,
    }),
    "EleutherAI/pythia-1.4b": ("gpt_neox", {
        "vocab_size": 50304, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
        "num_attention_heads": 16, "max_position_embeddings": 2048, "rotary_pct": 0.25, "rotary_emb_base": 10000,
        "use_parallel_residual": True, "layer_norm_eps": 1e-5, "hidden_act": "gelu", "tie_word_embeddings": False,
        "bos_token_id": 0, "eos_token_id": 0,
    }),
    "mistralai/Mixtral-8x7B-v0.1": ("mixtral", {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "sliding_window": None, "hidden_act": "silu",
        "num_local_experts": 8, "num_experts_per_tok": 2, "router_aux_loss_coef": 0.02,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }),
}

# Other published names with the same shapes (instruct/deduped variants, older repo names).
_SAME_SHAPES: dict[str, str] = {
    "meta-llama/Llama-3.1-8B-Instruct": "meta-llama/Llama-3.1-8B",
    "meta-llama/Meta-Llama-3.1-8B": "meta-llama/Llama-3.1-8B",
    "meta-llama/Meta-Llama-3.1-8B-Instruct": "meta-llama/Llama-3.1-8B",
    "mistralai/Mistral-7B-Instruct-v0.3": "mistralai/Mistral-7B-v0.3",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mistralai/Mixtral-8x7B-v0.1",
    "EleutherAI/pythia-1.4b-deduped": "EleutherAI/pythia-1.4b",
}


@dataclass(frozen=True)
class ResolvedConfig:
    """A config and where it came from (for the plan's output: a reader must know what was assumed)."""

    config: PretrainedConfig
    source: str


def builtin_key(name: str) -> str | None:
    """The built-in table's hub id for `name` (case-insensitive, with or without the org prefix)."""
    wanted = name.strip().lower()
    for alias, target in [*((k, k) for k in BUILTIN_CONFIGS), *_SAME_SHAPES.items()]:
        if wanted in (alias.lower(), alias.split("/", 1)[1].lower()):
            return target
    return None


# Sizes every decoder config must give as positive integers (when the family has the field at all).
_POSITIVE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size",
             "num_key_value_heads", "head_dim", "max_position_embeddings", "num_local_experts", "num_experts_per_tok")


@lru_cache(maxsize=32)
def resolve_config(model: str) -> ResolvedConfig:
    """The transformers config of `model`, its sizes checked; EsaError naming what was tried when nothing matches."""
    resolved = _resolve(model)
    check_dimensions(resolved.config.get_text_config(), resolved.source)
    return resolved


def check_dimensions(config: PretrainedConfig, source: str) -> None:
    """Positive integer sizes, heads that divide the width: a plan from anything else would be nonsense."""
    values = {key: getattr(config, key, None) for key in _POSITIVE}
    _check_positive(values, source, required=_POSITIVE[:4])
    _check_heads(values, source)


def _check_heads(values: dict[str, Any], source: str) -> None:
    heads, hidden = values.get("num_attention_heads"), values.get("hidden_size")
    if not isinstance(heads, int) or not isinstance(hidden, int):
        return  # a family without these fields (checked by transformers)
    kv = values.get("num_key_value_heads") or heads
    if heads % kv:
        raise EsaError(f"{source}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}; fix the config")
    if values.get("head_dim") is None and hidden % heads:
        raise EsaError(f"{source}: hidden_size {hidden} is not divisible by num_attention_heads {heads}; fix the config")


def _check_positive(values: dict[str, Any], source: str, required: tuple[str, ...] = ()) -> None:
    for key in _POSITIVE:
        value = values.get(key)
        if value is None and key not in required:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EsaError(f"{source}: {key} is {value!r}, not a positive integer; fix the config")


def _read_config_json(path: Path) -> None:
    """A config.json that is a JSON object naming a model_type this transformers knows."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EsaError(f"cannot read {path}: {exc}; give a transformers config.json") from None
    if not isinstance(data, dict):
        raise EsaError(f"{path} holds a JSON {type(data).__name__}, not an object; give a transformers config.json")
    model_type = data.get("model_type")
    if model_type not in CONFIG_MAPPING:
        known = "has no model_type" if model_type is None else f"names model_type {model_type!r}, unknown to this transformers"
        raise EsaError(f"{path} {known}; give a config.json of a transformers architecture (e.g. llama, mistral)")
    _check_positive(data, str(path))
    _check_heads(data, str(path))


def _resolve(model: str) -> ResolvedConfig:
    path = Path(model).expanduser()
    if path.is_dir() or path.name == "config.json":
        directory = path.parent if path.is_file() else path
        if not (directory / "config.json").is_file():
            raise EsaError(f"{model} has no config.json")
        _read_config_json(directory / "config.json")
        try:
            with hf_errors(model):
                return ResolvedConfig(AutoConfig.from_pretrained(directory), f"local {directory}")
        except (ValueError, TypeError, KeyError, StrictDataclassError) as exc:
            raise EsaError(f"{directory / 'config.json'} is not a valid config: {str(exc).splitlines()[0]}") from None
    if model.endswith(".gguf"):
        if not path.is_file():
            raise EsaError(f"GGUF file {model} not found")
        check_gguf(path)
        return ResolvedConfig(_gguf_config(path), f"gguf {path.name}")
    if model in TINY_CONFIGS:
        with torch.device("meta"):
            return ResolvedConfig(build_tiny_model(model).config, f"tiny alias {model}")
    if model in BUNDLED_GGUF:
        with tempfile.TemporaryDirectory() as workdir:
            gguf = BUNDLED_GGUF[model].source(model).materialize(Path(workdir))
            return ResolvedConfig(_gguf_config(gguf), f"bundled alias {model} ({gguf.name})")
    key = builtin_key(model)
    if key is not None:
        model_type, fields = BUILTIN_CONFIGS[key]
        source = f"built-in table (public config.json of {key})"
        return ResolvedConfig(AutoConfig.for_model(model_type, **fields), source)
    not_found = EsaError(
        f"cannot plan {model!r}: not a local path, bundled alias ({', '.join(BUNDLED_ALIASES)}), built-in config "
        f"({', '.join(k.split('/')[1] for k in BUILTIN_CONFIGS)}) or reachable Hugging Face hub id"
    )
    try:
        return ResolvedConfig(AutoConfig.from_pretrained(model), f"hub {model}")
    except (OSError, ValueError) as exc:  # unreachable hub, unknown repo, or a name that is no repo id
        raise not_found from exc


def _gguf_config(gguf: Path) -> PretrainedConfig:
    """transformers reads the architecture from the GGUF header (a few seconds: it also parses the vocabulary)."""
    with hf_errors(gguf.name):
        return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
