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

DOMAIN_RULE = (
    "pydoc_data.topics sorted by key; domain 'a' (train/eval) = the first ceil(n/2) keys, "
    "domain 'b' (retain) = the rest"
)


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
