"""Corpora: where the text comes from, and the one token stream cut from it.

A corpus is read, joined into one string and tokenized once, without special tokens; BOS handling
is a per-window decision (see `make_windows`). Every corpus carries a JSON-ready description (source,
hashes, tokenizer) so a manifest can say exactly which tokens a number was computed on.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from esa.errors import EsaError

BUILTIN = "builtin"
DOC_SEPARATOR = "\n\n"

# name -> (load_dataset args, load_dataset kwargs, documents kept, separator): the published protocols
# of SparseGPT (WikiText-2 test split joined by "\n\n") and Wanda (first 1100 documents of C4's first
# validation shard joined by " ").
_HF_DATASETS: dict[str, tuple[tuple[str, ...], dict[str, Any], int | None, str]] = {
    "wikitext2": (("wikitext", "wikitext-2-raw-v1"), {"split": "test"}, None, "\n\n"),
    "c4": (
        ("allenai/c4",),
        {"data_files": {"validation": "en/c4-validation.00000-of-00008.json.gz"}, "split": "validation"},
        1100,
        " ",
    ),
}


@dataclass(frozen=True)
class Corpus:
    """One tokenized text stream and how it was made."""

    name: str
    tokens: torch.Tensor  # 1-D int64
    n_chars: int
    description: dict[str, Any]


def load_corpus(dataset: str, tokenizer: Any, max_chars: int | None = None) -> Corpus:
    """Read `dataset` ("builtin", "wikitext2", "c4", or a .txt/.jsonl/.parquet path) and tokenize it.

    The whole text is tokenized in one call with `add_special_tokens=False`, so the stream holds
    text tokens only, whatever the tokenizer's defaults. `max_chars` keeps the first characters of
    the joined text (for quick runs); it is recorded in the description.
    """
    if max_chars is not None and max_chars < 1:
        raise EsaError(f"--max-chars must be at least 1, got {max_chars}")
    if dataset == BUILTIN:
        documents, separator, source = _builtin_documents()
    elif dataset in _HF_DATASETS:
        documents, separator, source = _hf_documents(dataset)
    else:
        documents, separator, source = _file_documents(dataset)
    text = separator.join(documents)
    if max_chars is not None:
        text = text[:max_chars]
    if not text.strip():
        raise EsaError(f"dataset '{dataset}' contains no text; give a file with non-empty `text`")
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    tokens = torch.tensor(ids, dtype=torch.int64)
    description = {
        **source,
        "n_documents": len(documents),
        "document_separator": separator,
        "max_chars": max_chars,
        "n_chars": len(text),
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "n_tokens": int(tokens.numel()),
        "tokenizer": getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__,
        "special_tokens_added": False,
    }
    return Corpus(name=source["name"], tokens=tokens, n_chars=len(text), description=description)


def _builtin_documents() -> tuple[list[str], str, dict[str, Any]]:
    """English prose that ships with every CPython: the reference-manual topics behind `help()`.

    Built at run time (nothing is copied into the repository) in sorted-key order. The text follows
    the Python version, which is therefore recorded.
    """
    from pydoc_data.topics import topics

    documents = [topics[key] for key in sorted(topics)]
    source = {
        "source": "builtin",
        "name": BUILTIN,
        "origin": "pydoc_data.topics (Python reference-manual topics), sorted by key",
        "python_version": platform.python_version(),
    }
    return documents, DOC_SEPARATOR, source


def _hf_documents(name: str) -> tuple[list[str], str, dict[str, Any]]:
    """Download a Hugging Face dataset the way the published pruning papers read it."""
    args, kwargs, n_docs, separator = _HF_DATASETS[name]
    needs = (
        f"dataset '{name}' needs the `datasets` package and network access; "
        "use --dataset builtin or a local .txt/.jsonl/.parquet file"
    )
    try:
        import datasets
    except ImportError:
        raise EsaError(needs) from None
    try:
        data = datasets.load_dataset(*args, **kwargs)
        texts = data["text"] if n_docs is None else data[:n_docs]["text"]
    except Exception as exc:  # network, hub and cache failures all mean the same thing to the user
        reason = " ".join(str(exc).split())[:200]
        raise EsaError(f"{needs} ({type(exc).__name__}: {reason})") from exc
    source = {
        "source": "huggingface",
        "name": name,
        "hf_dataset": list(args),
        "hf_kwargs": copy.deepcopy(kwargs),
        "documents_used": n_docs if n_docs is not None else "all",
        "datasets_version": datasets.__version__,
    }
    return list(texts), separator, source


def _file_documents(dataset: str) -> tuple[list[str], str, dict[str, Any]]:
    """Read the documents of a local .txt (one document), .jsonl or .parquet file."""
    path = Path(dataset)
    if path.is_dir():
        raise EsaError(f"dataset '{dataset}' is a directory; give a .txt, .jsonl or .parquet file")
    if not path.is_file():
        known = ", ".join([BUILTIN, *_HF_DATASETS])
        raise EsaError(f"dataset '{dataset}' is neither a known name ({known}) nor an existing file")
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise EsaError(f"dataset file '{path}' has an unsupported extension; use one of {', '.join(_READERS)}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EsaError(f"cannot read dataset file '{path}': {exc.strerror or exc}") from exc
    documents = _READERS[suffix](path, data)
    source = {
        "source": "file",
        "name": path.name,
        "path": str(path.resolve()),
        "format": suffix[1:],
        "file_bytes": len(data),
        "file_sha256": hashlib.sha256(data).hexdigest(),
    }
    return documents, DOC_SEPARATOR, source


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EsaError(f"dataset file '{path}' is not UTF-8 text (bad byte at position {exc.start})") from exc


def _txt_documents(path: Path, data: bytes) -> list[str]:
    return [_decode(path, data)]


def _jsonl_documents(path: Path, data: bytes) -> list[str]:
    documents = []
    # Split on "\n" only: str.splitlines() would also split inside strings holding U+2028 and friends.
    for number, line in enumerate(_decode(path, data).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EsaError(f"dataset file '{path}' line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise EsaError(f"dataset file '{path}' line {number} has no string field `text`")
        documents.append(record["text"])
    return documents


def _parquet_documents(path: Path, data: bytes) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        names = parquet.schema_arrow.names
        if "text" not in names:
            raise EsaError(f"dataset file '{path}' has no `text` column (columns: {', '.join(names)})")
        column = parquet.read(columns=["text"]).column("text")
    except pa.ArrowException as exc:
        raise EsaError(f"dataset file '{path}' is not a readable Parquet file ({exc})") from exc
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise EsaError(f"dataset file '{path}' column `text` holds {column.type}, not strings")
    return [text for text in column.to_pylist() if text is not None]


_READERS = {".txt": _txt_documents, ".jsonl": _jsonl_documents, ".parquet": _parquet_documents}
