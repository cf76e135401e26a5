"""Turn a model spec (tiny alias, bundled alias, .gguf file, local directory, hub id) into a LoadedModel."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from esa.errors import EsaError
from esa.models.aliases import BUNDLED_ALIASES, BUNDLED_GGUF
from esa.models.facts import architecture_facts
from esa.models.gguf import GgufSource, load_gguf
from esa.models.files import check_model_dir
from esa.models.hf import HfOptions, go_offline_unless_reachable, hf_errors, progress_bars
from esa.models.layout import config_num_layers, describe_parameters, find_decoder_blocks, is_tied
from esa.models.tiny import TINY_CONFIGS, build_tiny_model, byte_tokenizer
from esa.models.types import LoadedModel

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def load_model(
    spec: str,
    dtype: str = "fp32",
    device: str = "cpu",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    progress: bool = False,
) -> LoadedModel:
    """Load `spec` in eval mode; gradients stay enabled because metrics need them.

    With `device_map` (e.g. "auto", placed by accelerate) `device` is ignored; otherwise the whole model
    moves to `device` ("cpu", "cuda", "cuda:N", or "auto" = cuda when available).
    """
    if not spec.strip():
        raise EsaError("--model is empty; give a hub id, a local directory, a .gguf file or an alias from `esa models`")
    options = HfOptions(parse_dtype(dtype), check_device_map(device_map), trust_remote_code, attn_implementation,
                        progress)
    target = resolve_device("auto" if device_map else device)
    extra: dict[str, Any] = {}
    if spec in TINY_CONFIGS:
        model, tokenizer, source = build_tiny_model(spec, dtype=options.dtype), byte_tokenizer(), "tiny"
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
        device_map = None  # built in memory as one piece: place it whole
    elif spec in BUNDLED_GGUF:
        model, tokenizer, extra = load_gguf(BUNDLED_GGUF[spec].source(spec), options)
        source = "bundled"
    elif spec.endswith(".gguf"):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise EsaError(f"GGUF file {spec} not found")
        model, tokenizer, extra = load_gguf(GgufSource.file(path), options)
        source = "gguf"
    elif _single_gguf(Path(spec).expanduser()) is not None:
        model, tokenizer, extra = load_gguf(GgufSource.file(_single_gguf(Path(spec).expanduser())), options)  # type: ignore[arg-type]
        source = "gguf"
    else:
        model, tokenizer, source = _load_pretrained(spec, options)
    if device_map is None:
        model.to(target)
    model.eval()
    return _describe(model, tokenizer, spec, source, options.dtype, extra)


def parse_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise EsaError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


_DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def check_device_map(device_map: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """accelerate's named strategies, or one device for everything; an explicit dict passes through."""
    if device_map is None or isinstance(device_map, dict) or device_map in _DEVICE_MAPS:
        return device_map
    if device_map == "cpu" or re.fullmatch(r"cuda(:\d+)?|\d+", device_map):
        if device_map != "cpu":
            resolve_device(device_map if device_map.startswith("cuda") else f"cuda:{device_map}")
        return device_map
    raise EsaError(f"unknown --device-map {device_map!r}: use {', '.join(_DEVICE_MAPS)}, cpu or cuda:N")


def _single_gguf(path: Path) -> Path | None:
    """A directory holding one .gguf file and no transformers checkpoint loads as that GGUF."""
    if not path.is_dir() or any(path.glob("*.safetensors")) or any(path.glob("*.bin")):
        return None
    ggufs = sorted(path.glob("*.gguf"))
    return ggufs[0] if len(ggufs) == 1 else None


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; asking for CUDA without it is the user's to fix."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise EsaError("CUDA was requested but torch.cuda.is_available() is False; use --device cpu")
        return torch.device(device)
    raise EsaError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")


def input_device(model: nn.Module) -> torch.device:
    """Where input ids must go: the input embedding's device (not the first parameter's when sharded)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embedding is not None and getattr(embedding, "weight", None) is not None:
        return embedding.weight.device
    return next(model.parameters()).device


def _load_pretrained(spec: str, options: HfOptions) -> tuple[nn.Module, Any, str]:
    """A local directory or a hub id; anything else is reported as not found, naming what was tried."""
    path = Path(spec).expanduser()
    local = path.is_dir()
    if local:
        check_model_dir(path, options.trust_remote_code)
    elif path.exists() or not _HUB_ID.fullmatch(spec):
        raise EsaError(f"model {spec!r} not found: not a local directory, .gguf file, bundled alias "
                       f"({', '.join(BUNDLED_ALIASES)}) or Hugging Face hub id")
    online = local or go_offline_unless_reachable()
    not_found = EsaError(
        f"model {spec!r} not found: not a local path, bundled alias ({', '.join(BUNDLED_ALIASES)}) or "
        + ("Hugging Face hub id" if online else "hub id in the local cache (the Hugging Face hub is unreachable)")
        + "; check the name, or see `esa models`"
    )
    where = str(path) if local else spec
    with hf_errors(spec, not_found), progress_bars(options.progress):
        model = AutoModelForCausalLM.from_pretrained(where, **options.model_kwargs())
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=options.trust_remote_code)
    return model, tokenizer, "local" if local else "hub"


def _describe(
    model: nn.Module, tokenizer: Any, spec: str, source: str, dtype: torch.dtype, extra: dict[str, Any]
) -> LoadedModel:
    config = model.config.get_text_config()
    _, blocks = find_decoder_blocks(model)
    params = describe_parameters(model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        model_id=spec,
        source=source,
        family=model.config.model_type,
        n_params=sum(p.numel() for p in model.parameters()),  # parameters() yields a tied tensor once
        n_layers=config_num_layers(model) or (len(blocks) if blocks is not None else 0),
        params=params,
        dtype=dtype,
        device=input_device(model),
        max_seq_len=_max_seq_len(config),
        extra={"tied_embeddings": is_tied(model), **architecture_facts(model, tokenizer, spec, params, extra),
               **extra},
    )


def _max_seq_len(config: Any) -> int | None:
    """The context length the config declares, under whichever name its family uses."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None
