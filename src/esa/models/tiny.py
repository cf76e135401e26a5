"""Tiny random models, one per architecture family ESA supports, built in code (no download).

They exist so every code path can be tested in seconds: same seed, same weights, on any machine.
They share a byte-level tokenizer (256 byte tokens plus BOS/EOS/PAD), so any text can be fed to them.
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedTokenizerFast,
)

VOCAB = 256 + 3  # bytes + <s> </s> <pad>
BOS, EOS, PAD = 256, 257, 258

_COMMON: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 256,
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "pad_token_id": PAD,
    "tie_word_embeddings": False,
}

TINY_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "tiny-llama": ("llama", {"num_key_value_heads": 2}),
    "tiny-mistral": ("mistral", {"num_key_value_heads": 2, "sliding_window": 128}),
    "tiny-phi3": ("phi3", {"num_key_value_heads": 4}),
    "tiny-gptneox": ("gpt_neox", {"rotary_pct": 0.25, "use_parallel_residual": True}),
    "tiny-mixtral": ("mixtral", {"num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2}),
}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A lossless byte-level tokenizer: token i < 256 is byte i, one token per byte."""
    tok = Tokenizer(models.WordLevel(vocab=_byte_level_vocab(), unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False), pre_tokenizers.Split("", "isolated")]
    )
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<pad>"
    )


def _byte_level_vocab() -> dict[str, int]:
    """Map each byte's ByteLevel printable symbol to the byte value, plus the special tokens."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = ByteLevel.alphabet()
    table = _bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    assert set(vocab) == set(symbols)
    vocab.update({"<s>": BOS, "</s>": EOS, "<pad>": PAD})
    return vocab


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table (the one ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_tiny_model(name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The tiny model `name` with weights drawn from `seed` (same seed, same bits)."""
    model_type, overrides = TINY_CONFIGS[name]
    config = AutoConfig.for_model(model_type, **{**_COMMON, **overrides})
    with _fork_rng(seed):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    return model.to(dtype)


class _fork_rng:
    """Seed torch's CPU generator for model init without disturbing the caller's random state."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self.state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self.state)


