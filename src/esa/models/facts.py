"""Architecture facts a manifest records so that studies compare models without reloading them.

Read once at load time from the model's (text) config, falling back to module structure:
- `hidden_size`, `vocab_size` (config; else the input embedding's shape);
- `n_experts`, `experts_per_token` for MoE models (config keys of the MoE families; the expert count
  also from the fused expert tensor or the expert list); None for dense models;
- `instruction_tuned` and `instruction_tuned_source`: instruction-tuned when one of the model's names
  (the spec it was loaded by, the GGUF file, the GGUF `general.name` the converter writes into the config
  as `_model_name_or_path`, the config's `name_or_path`; the last path component of each) matches
  INSTRUCT_PATTERN; the source says which name matched, or that none did. `chat_template` is recorded
  as a fact but decides nothing: base checkpoints (Gemma 3 pt, for one) ship chat templates too.

Size facts derived from the component counts (see `size_facts`): non-embedding parameters N =
total - embedding - lm_head (Kaplan et al. 2020), active parameters = non-expert + expert * k / E.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:  # types.py imports size_facts from here
    from esa.models.types import ParamInfo

INSTRUCT_PATTERN = re.compile(r"instruct|chat|(^|[-_.\s])it($|[-_.\s])|sft", re.IGNORECASE)
N_EXPERTS_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
PER_TOKEN_KEYS = ("num_experts_per_tok", "moe_top_k", "num_selected_experts")


def architecture_facts(
    model: nn.Module, tokenizer: Any, spec: str, params: dict[str, ParamInfo], extra: dict[str, Any]
) -> dict[str, Any]:
    """Width, vocabulary, experts and instruction tuning of a loaded model (see the module docstring)."""
    cfg = model.config.get_text_config()
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embedding, "weight", None)
    n_experts = _first(cfg, N_EXPERTS_KEYS) or _structural_experts(params)
    names = {
        "model id": spec,
        "gguf_file": extra.get("gguf_file"),
        "config _model_name_or_path": getattr(model.config, "_model_name_or_path", None),
        "config name_or_path": getattr(model.config, "name_or_path", None),
    }
    instruct, source = instruction_tuned(names)
    rows, width = tuple(weight.shape) if weight is not None else (None, None)
    return {
        "hidden_size": _first(cfg, ("hidden_size", "d_model", "n_embd")) or width,
        "vocab_size": _first(cfg, ("vocab_size",)) or rows,
        "n_experts": n_experts,
        "experts_per_token": _first(cfg, PER_TOKEN_KEYS) if n_experts else None,
        "instruction_tuned": instruct,
        "instruction_tuned_source": source,
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }


def instruction_tuned(names: dict[str, Any]) -> tuple[bool, str]:
    """(flag, where it was read): the first name whose last path component matches INSTRUCT_PATTERN."""
    shown = {key: PurePath(str(value)).name for key, value in names.items() if value}
    for key, name in shown.items():
        if INSTRUCT_PATTERN.search(name):
            return True, f"{key} {name!r} matches /{INSTRUCT_PATTERN.pattern}/i"
    listed = ", ".join(f"{key} {name!r}" for key, name in shown.items()) or "no names"
    return False, f"no instruct/chat/it/sft marker in {listed}"


def size_facts(n_params: int, counts: dict[str, int], extra: dict[str, Any]) -> dict[str, Any]:
    """Non-embedding and active parameter counts; n_active is None for an MoE of unknown routing."""
    expert = counts.get("expert", 0)
    out = {"n_nonembedding": n_params - counts.get("embedding", 0) - counts.get("lm_head", 0)}
    n_experts, per_token = extra.get("n_experts"), extra.get("experts_per_token")
    if not expert:
        out["n_active"] = n_params
    elif n_experts and per_token:
        out["n_active"] = n_params - expert + round(expert * per_token / n_experts)
    else:
        out["n_active"] = None
    return out


def _first(cfg: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = getattr(cfg, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _structural_experts(params: dict[str, ParamInfo]) -> int | None:
    """The expert count from a fused [E, out, in] expert tensor, else the distinct expert indices."""
    experts: set[int] = set()
    for info in params.values():
        if info.component != "expert":
            continue
        if info.expert_axis is not None:
            return int(info.shape[info.expert_axis])
        if info.expert is not None:
            experts.add(info.expert)
    return len(experts) or None
