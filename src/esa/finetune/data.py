"""Offline data for fine-tuning, on every Python install: (train text, retain text) pairs named in DOMAINS.

- "topics" (the default): Python's reference-manual topics (`pydoc_data.topics`) sorted by key; the first
  half is domain "a" (the text to adapt to), the second half domain "b" (the text whose perplexity
  measures forgetting). No topic is in both, but both are English documentation of one language, so
  learning a also helps b: this pair shows learning, not forgetting.
- "code-vs-docs": train on Python *code* (the source of CODE_MODULES, a fixed sorted list of pure-Python
  standard-library modules, docstrings and comments removed and re-printed by `ast.unparse`), retain the
  whole pydoc prose. Docstrings are prose like the retain text, so they are dropped; what is left is a
  different distribution (identifiers, indentation, operators). Measured on SmolLM2 it is still too near:
  training on it lowered the prose's perplexity too (BENCHMARKS.md).
- "names-vs-docs": train on Unicode character names (`unicodedata.name` of the first N_NAMES named code
  points from U+0000 on, one per line: "LATIN SMALL LETTER A WITH GRAVE"), retain the whole pydoc prose.
  Upper-case name lists are neither prose nor code; learning them is the narrow shift that does make a
  model forget (the Unicode version is recorded).
Both texts depend on the Python version (recorded, with the text's SHA-256, in the description).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import itertools
import platform
import unicodedata
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
CODE_MODULES = (
    "bisect", "calendar", "colorsys", "copy", "csv", "difflib", "fnmatch", "fractions", "glob", "graphlib",
    "heapq", "queue", "shlex", "statistics", "string", "textwrap",
)
CODE_RULE = ("source of CODE_MODULES (inspect.getsource), docstrings removed, re-printed by ast.unparse "
             "(no comments), one document per module in CODE_MODULES order")
N_NAMES = 8000
NAMES_RULE = (f"unicodedata.name of the first {N_NAMES} named code points in code-point order, one per line "
              f"(Unicode {unicodedata.unidata_version})")
TOPICS_ORIGIN = "pydoc_data.topics (Python reference-manual topics)"
TRAIN_ONLY_RULE = "training windows = seeded draw from all aligned windows of the text (no evaluation split)"


def topic_domains(tokenizer: Any) -> tuple[Corpus, Corpus]:
    """(domain a, domain b) of the built-in corpus, each tokenized once like `esa.load_corpus`."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    half = (len(keys) + 1) // 2
    return (_corpus("builtin-a", keys[:half], topics, tokenizer, TOPICS_ORIGIN, DOMAIN_RULE),
            _corpus("builtin-b", keys[half:], topics, tokenizer, TOPICS_ORIGIN, DOMAIN_RULE))


def code_vs_docs(tokenizer: Any) -> tuple[Corpus, Corpus]:
    """(Python code of CODE_MODULES, all pydoc topics): code against prose."""
    code = {name: _code_only(inspect.getsource(importlib.import_module(name))) for name in CODE_MODULES}
    return (_corpus("builtin-code", list(CODE_MODULES), code, tokenizer, "Python standard-library source", CODE_RULE),
            _all_topics(tokenizer))


def _all_topics(tokenizer: Any) -> Corpus:
    """Every pydoc topic, sorted by key: the retain text of the code and names pairs."""
    from pydoc_data.topics import topics

    return _corpus("builtin-docs", sorted(topics), topics, tokenizer, TOPICS_ORIGIN,
                   "all pydoc_data.topics sorted by key")


def names_vs_docs(tokenizer: Any) -> tuple[Corpus, Corpus]:
    """(Unicode character names, all pydoc topics): a narrow non-prose train text against the prose."""
    named = (name for name in (unicodedata.name(chr(i), "") for i in range(0x110000)) if name)
    names = {"names": "\n".join(itertools.islice(named, N_NAMES))}
    return (_corpus("builtin-names", ["names"], names, tokenizer, "unicodedata character names", NAMES_RULE),
            _all_topics(tokenizer))


DOMAINS = {"topics": topic_domains, "code-vs-docs": code_vs_docs, "names-vs-docs": names_vs_docs}


def builtin_domains(name: str, tokenizer: Any) -> tuple[Corpus, Corpus]:
    """The (train, retain) texts of a DOMAINS entry."""
    if name not in DOMAINS:
        raise EsaError(f"unknown built-in domains {name!r}; choose one of {', '.join(DOMAINS)}")
    return DOMAINS[name](tokenizer)


def _code_only(source: str) -> str:
    """`source` without docstrings or comments: its AST re-printed (an emptied body becomes `pass`)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _corpus(name: str, keys: list[str], documents: dict[str, str], tokenizer: Any, origin: str, rule: str) -> Corpus:
    text = DOC_SEPARATOR.join(documents[key] for key in keys)
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    tokens = torch.tensor(ids, dtype=torch.int64)
    description = {
        "source": "builtin",
        "name": name,
        "origin": origin,
        "domain_rule": rule,
        "documents": [keys[0], keys[-1]],  # first and last, in order
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
