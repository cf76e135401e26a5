"""Offline default data for fine-tuning: the built-in corpus cut into two disjoint domains by topic.

The built-in corpus is Python's reference-manual topics (`pydoc_data.topics`). Sorted by key, the first
half of the topics is domain "a" (the text to adapt to) and the second half domain "b" (the text whose
perplexity measures forgetting). No topic is in both, so the domains share no document.
"""

from __future__ import annotations

import hashlib
import platform
from typing import Any

import torch

from esa.data.corpus import DOC_SEPARATOR, Corpus
from esa.data.sampling import make_windows
from esa.data.windows import WindowSet
from esa.errors import EsaError

DOMAIN_RULE = (
    "pydoc_data.topics sorted by key; domain 'a' (train/eval) = the first ceil(n/2) keys, "
    "domain 'b' (retain) = the rest"
)
TRAIN_ONLY_RULE = "training windows = seeded draw from all aligned windows of the text (no evaluation split)"


def topic_domains(tokenizer: Any) -> tuple[Corpus, Corpus]:
    """(domain a, domain b) of the built-in corpus, each tokenized once like `esa.load_corpus`."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    half = (len(keys) + 1) // 2
    return _corpus("builtin-a", keys[:half], topics, tokenizer), _corpus("builtin-b", keys[half:], topics, tokenizer)


def _corpus(name: str, keys: list[str], topics: dict[str, str], tokenizer: Any) -> Corpus:
    text = DOC_SEPARATOR.join(topics[key] for key in keys)
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    tokens = torch.tensor(ids, dtype=torch.int64)
    description = {
        "source": "builtin",
        "name": name,
        "origin": "pydoc_data.topics (Python reference-manual topics)",
        "domain_rule": DOMAIN_RULE,
        "topics": [keys[0], keys[-1]],
        "python_version": platform.python_version(),
        "n_documents": len(keys),
        "document_separator": DOC_SEPARATOR,
        "n_chars": len(text),
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "n_tokens": int(tokens.numel()),
        "tokenizer": getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__,
        "special_tokens_added": False,
    }
    return Corpus(name=name, tokens=tokens, n_chars=len(text), description=description)


def text_windows(
    corpus: Corpus, role: str, *, seq_len: int, n_train: int, n_eval: int, seed: int, bos_id: int | None = None,
    max_seq_len: int | None = None,
) -> WindowSet:
    """Training (calibration split) and/or evaluation windows of one text, with one line when it is too short.

    With both counts, `esa.make_windows` cuts disjoint sets (evaluation = the last windows); with
    `n_eval == 0` every aligned window is a candidate training window (seeded draw of `n_train`).
    """
    span = seq_len - (1 if bos_id is not None else 0)
    need = (1 if n_train else 0) + (1 if n_eval else 0)
    n_tokens = int(corpus.tokens.numel())
    if span < 1 or n_tokens // span < need:
        raise EsaError(
            f"the {role} text '{corpus.name}' has {n_tokens} tokens, fewer than {need} window(s) of {span}; "
            "give a longer text or a smaller --seq-len"
        )
    if n_eval:
        return make_windows(corpus, seq_len, n_train, n_eval, seed, bos_id=bos_id, max_seq_len=max_seq_len)
    if max_seq_len is not None and seq_len > max_seq_len:
        raise EsaError(f"--seq-len {seq_len} exceeds the model's context of {max_seq_len} tokens")
    n_windows = n_tokens // span
    drawn = torch.randperm(n_windows, generator=torch.Generator().manual_seed(seed))[:n_train]
    offsets = tuple(int(i) * span for i in sorted(drawn.tolist()))
    protocol = {"dataset": corpus.description, "rule": TRAIN_ONLY_RULE, "seed": seed, "window_span": span,
                "n_aligned_windows": n_windows, "n_calib_requested": n_train, "n_calib_used": len(offsets)}
    return WindowSet(corpus.tokens, seq_len, offsets, (), bos_id, protocol)
