"""Saving a quantized model: a Hugging Face directory anyone can load, and a GGUF file for llama.cpp.

`save_hf` writes the model as it now stands (the dequantized weights, in its dtype, with
`save_pretrained`), its tokenizer, and `precision_plan.json`: the configuration, tensor -> {bits,
group_size}, and every kept 16-bit weight (param, [row, col], value) so the plan can be applied elsewhere.

`save_gguf` writes a uniform configuration in a llama.cpp block format with the `gguf` package, from
the integer codes and scales themselves (no second quantization): groups of 32 inputs,
    Q8_0 = symmetric 8-bit  (block: fp16 d, 32 int8 q;            w = d q),
    Q4_0 = symmetric 4-bit  (block: fp16 d, 16 bytes of nibbles;   w = d (n - 8), n = q + 8),
    Q4_1 = asymmetric 4-bit (block: fp16 d, fp16 m, 16 bytes;      w = d n + m, d = s, m = -s z).
The only change is the rounding of the scale (and m) to fp16. Other tensors (embeddings, norms, head)
are stored as F32/F16, as they are in memory. Llama-architecture models only (llama.cpp's "llama"
tensor names; q/k rows permuted to its rotary layout, which transformers undoes on load); weights
kept outside the quantizer have no place in these formats, so protected or mixed plans are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esa.artifacts.schema import PRECISION_PLAN
from esa.errors import EsaError
from esa.models.types import LoadedModel
from esa.quantize.core import QuantResult
from esa.quantize.rtn import QuantizedMatrix

GGUF_BLOCK = 32
GGUF_TYPES = {(8, True): "Q8_0", (4, True): "Q4_0", (4, False): "Q4_1"}  # (bits, symmetric) -> block type
GGUF_ARCHITECTURES = ("llama",)


def plan_document(result: QuantResult) -> dict[str, Any]:
    """precision_plan.json: the configuration, bits per tensor and the kept weights."""
    config = {k: v for k, v in result.row().items() if k not in ("ppl", "accuracy", "mean_nll", "bits_per_byte", "seconds")}
    return {"config": config, "tensors": result.plan, "kept": result.kept, "notes": result.notes}


def save_hf(lm: LoadedModel, result: QuantResult, directory: Path) -> Path:
    """The quantized model (still in memory: `keep_quantized=True`) as a plain transformers directory."""
    _require_quantized(result)
    directory.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(directory)
    lm.tokenizer.save_pretrained(directory)
    (directory / PRECISION_PLAN).write_text(json.dumps(plan_document(result), indent=2))
    return directory


def gguf_type(bits: int | None, group_size: int, symmetric: bool, n_kept: int) -> str:
    """The GGUF block type of a configuration, or EsaError saying why it has none."""
    if bits is None or n_kept or group_size != GGUF_BLOCK:
        raise EsaError("a GGUF file needs uniform bits, no kept weights and --group-size 32; "
                       "use the Hugging Face directory for this configuration")
    try:
        return GGUF_TYPES[bits, symmetric]
    except KeyError:
        raise EsaError(f"no GGUF block type for {bits}-bit {'symmetric' if symmetric else 'asymmetric'}; "
                       "GGUF export supports 8-bit symmetric (Q8_0), 4-bit symmetric (Q4_0), 4-bit asymmetric (Q4_1)") from None


def check_gguf_model(lm: LoadedModel) -> None:
    """EsaError unless the model's architecture has llama.cpp tensor names here."""
    if getattr(lm.model.config, "model_type", None) not in GGUF_ARCHITECTURES:
        raise EsaError(f"GGUF export supports {', '.join(GGUF_ARCHITECTURES)} models, not "
                       f"{lm.model.config.model_type!r}; use the Hugging Face directory")


def save_gguf(lm: LoadedModel, result: QuantResult, path: Path) -> Path:
    """The quantized model as one GGUF file that llama.cpp and transformers (`gguf_file=`) load."""
    import gguf

    _require_quantized(result)
    assert result.quantized is not None
    kind = gguf_type(result.bits, result.group_size, result.symmetric, result.n_kept)
    check_gguf_model(lm)
    qtype = gguf.GGMLQuantizationType[kind]
    cfg = lm.model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    _add_hyperparameters(writer, cfg, kind)
    _add_tokenizer(writer, lm.tokenizer)
    for name, param in lm.model.named_parameters():
        gname = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise EsaError(f"no GGUF name for {name}; GGUF export supports Llama-architecture models")
        rows = _rotary_rows(gname, param.shape[0], cfg)
        if name in result.quantized:
            q = result.quantized[name]
            data = _pack(q, kind, rows)
            writer.add_tensor(gname, data, raw_dtype=qtype)
        else:
            tensor = param.detach()[rows] if rows is not None else param.detach()
            writer.add_tensor(gname, tensor.cpu().numpy() if tensor.dtype in (torch.float32, torch.float16)
                              else tensor.float().cpu().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _require_quantized(result: QuantResult) -> None:
    if result.quantized is None or result._originals is None:
        raise EsaError("the model is not holding this quantization; run esa.quantize(..., keep_quantized=True) first")


def _pack(q: QuantizedMatrix, kind: str, rows: torch.Tensor | None) -> np.ndarray:
    """Blocks of one matrix, [out, n_blocks * block bytes] uint8, rows in GGUF order."""
    codes, scale, zero = q.codes, q.grid.scale, q.grid.zero
    if rows is not None:
        codes, scale, zero = codes[rows], scale[rows], zero[rows]
    out, n_in = codes.shape
    n_blocks = n_in // GGUF_BLOCK
    codes = codes.reshape(out, n_blocks, GGUF_BLOCK)
    d = scale.to(torch.float16).numpy().view(np.uint8).reshape(out, n_blocks, 2)
    if kind == "Q8_0":
        qs = codes.to(torch.int8).numpy().view(np.uint8)
        parts = [d, qs]
    else:
        nibbles = (codes + 8 if kind == "Q4_0" else codes).to(torch.uint8).numpy()
        qs = nibbles[..., : GGUF_BLOCK // 2] | (nibbles[..., GGUF_BLOCK // 2 :] << 4)
        parts = [d, qs]
        if kind == "Q4_1":
            m = (-scale * zero).to(torch.float16).numpy().view(np.uint8).reshape(out, n_blocks, 2)
            parts = [d, m, qs]
    return np.ascontiguousarray(np.concatenate(parts, axis=-1).reshape(out, -1))


def _rotary_rows(gname: str, n_rows: int, cfg: Any) -> torch.Tensor | None:
    """Row order of llama.cpp's q/k layout (the inverse of transformers' reverse permutation)."""
    heads = {"attn_q": cfg.num_attention_heads, "attn_k": cfg.num_key_value_heads}.get(gname.split(".")[2]) \
        if gname.startswith("blk.") else None
    if heads is None:
        return None
    return torch.arange(n_rows).reshape(heads, 2, n_rows // heads // 2).transpose(1, 2).reshape(-1)


def _add_hyperparameters(writer: Any, cfg: Any, kind: str) -> None:
    import gguf

    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    writer.add_name(getattr(cfg, "_name_or_path", "") or "esa-quantized")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{kind}"])


def _add_tokenizer(writer: Any, tokenizer: Any) -> None:
    """A byte-level BPE (or word-level) fast tokenizer as llama.cpp's "gpt2" tokenizer model."""
    import gguf

    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model["type"] not in ("BPE", "WordLevel"):
        raise EsaError(f"GGUF export supports byte-level BPE tokenizers, not {model['type']}")
    vocab = dict(model["vocab"])
    for token in tokenizer.added_tokens_decoder.values():
        vocab.setdefault(token.content, tokenizer.convert_tokens_to_ids(token.content))
    size = max(len(tokenizer), max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    for text, i in vocab.items():
        tokens[i] = text
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_scores([0.0] * len(tokens))
    merges = model.get("merges") or []
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    for key, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                     ("pad_token_id", writer.add_pad_token_id)):
        if getattr(tokenizer, key, None) is not None:
            add(getattr(tokenizer, key))
