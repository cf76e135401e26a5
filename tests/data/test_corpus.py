"""load_corpus: every source, the single tokenization, and every user error."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from esa.data import load_corpus
from esa.errors import EsaError
from esa.models.tiny import byte_tokenizer


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


@pytest.fixture(scope="module")
def builtin(tok):
    return load_corpus("builtin", tok)


def utf8_ids(text: str) -> list[int]:
    """The byte tokenizer's brute-force reference: one token per UTF-8 byte."""
    return list(text.encode("utf-8"))


def test_builtin_is_nonempty_deterministic_english(tok, builtin):
    from pydoc_data.topics import topics

    a = builtin
    b = load_corpus("builtin", tok)
    text = "\n\n".join(topics[k] for k in sorted(topics))
    assert a.n_chars == len(text) > 100_000
    assert a.tokens.dtype == torch.int64 and a.tokens.dim() == 1
    assert torch.equal(a.tokens, b.tokens)
    assert a.tokens.tolist() == utf8_ids(text)
    assert a.description == b.description
    assert a.description["source"] == "builtin" and a.description["n_documents"] == len(topics)
    assert a.description["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    words = text.lower().split()
    assert words.count("the") > 0.02 * len(words)  # English prose, not code or data
    assert sum(c.isascii() for c in text) > 0.99 * len(text)


def test_txt_tokenized_once_without_special_tokens(tmp_path: Path, tok):
    text = "Un café, s'il vous plaît.\nSecond line."
    path = tmp_path / "doc.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus(str(path), tok)
    assert corpus.tokens.tolist() == utf8_ids(text)
    assert corpus.n_chars == len(text)
    d = corpus.description
    assert d["source"] == "file" and d["format"] == "txt" and d["name"] == "doc.txt"
    assert d["file_bytes"] == path.stat().st_size
    assert d["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert d["special_tokens_added"] is False and d["n_tokens"] == len(utf8_ids(text))
    json.dumps(d)


def test_tokenizer_called_once_on_whole_text_without_special_tokens(tmp_path: Path):
    calls = []

    def recording_tokenizer(text, **kwargs):
        calls.append((text, kwargs))
        return {"input_ids": [1, 2, 3]}

    path = tmp_path / "doc.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    corpus = load_corpus(str(path), recording_tokenizer)
    assert calls == [("a\n\nb", {"add_special_tokens": False, "verbose": False})]
    assert corpus.tokens.tolist() == [1, 2, 3]


def test_jsonl_joins_documents_and_skips_blank_lines(tmp_path: Path, tok):
    path = tmp_path / "docs.jsonl"
    second = "line\u2028separator inside a string"
    lines = ['{"text": "first", "id": 1}\r', "", json.dumps({"text": second}, ensure_ascii=False), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    corpus = load_corpus(str(path), tok)
    assert corpus.tokens.tolist() == utf8_ids("first\n\n" + second)
    assert corpus.description["n_documents"] == 2


def test_parquet_reads_text_column(tmp_path: Path, tok):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "text": ["alpha", None, "beta"]}), path)
    corpus = load_corpus(str(path), tok)
    assert corpus.tokens.tolist() == utf8_ids("alpha\n\nbeta")
    assert corpus.description["format"] == "parquet"


def test_max_chars_keeps_the_first_characters(tok, builtin):
    corpus = load_corpus("builtin", tok, max_chars=500)
    assert corpus.n_chars == 500 and corpus.description["max_chars"] == 500
    assert torch.equal(corpus.tokens, builtin.tokens[: corpus.tokens.numel()])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"  \n\t ", "contains no text"),
        ("latin1.txt", "café".encode("latin-1"), "not UTF-8"),
        ("bad.jsonl", b'{"text": "ok"}\n{not json}\n', "line 2 is not valid JSON"),
        ("notext.jsonl", b'{"body": "x"}\n', "line 1 has no string field `text`"),
        ("numtext.jsonl", b'{"text": 3}\n', "line 1 has no string field `text`"),
        ("list.jsonl", b'["text"]\n', "line 1 has no string field `text`"),
        ("empty.jsonl", b"\n\n", "contains no text"),
        ("fake.parquet", b"this is not parquet", "not a readable Parquet file"),
        ("doc.csv", b"text\nhello\n", "unsupported extension"),
    ],
)
def test_bad_files_raise(tmp_path: Path, tok, name: str, content: bytes, message: str):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(EsaError, match=message):
        load_corpus(str(path), tok)


def test_parquet_without_string_text_column_raises(tmp_path: Path, tok):
    missing = tmp_path / "missing.parquet"
    pq.write_table(pa.table({"body": ["x"]}), missing)
    with pytest.raises(EsaError, match=r"no `text` column \(columns: body\)"):
        load_corpus(str(missing), tok)
    numeric = tmp_path / "numeric.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), numeric)
    with pytest.raises(EsaError, match="not strings"):
        load_corpus(str(numeric), tok)


def test_unknown_name_missing_path_and_directory_raise(tmp_path: Path, tok):
    for dataset in ["wikitext-103", str(tmp_path / "absent.txt")]:
        with pytest.raises(EsaError, match="neither a known name"):
            load_corpus(dataset, tok)
    with pytest.raises(EsaError, match="is a directory; give a .txt, .jsonl or .parquet file"):
        load_corpus(str(tmp_path), tok)
    with pytest.raises(EsaError, match="--max-chars"):
        load_corpus("builtin", tok, max_chars=0)


def test_unreadable_file_raises(tmp_path: Path, tok, monkeypatch):
    path = tmp_path / "locked.txt"
    path.write_text("hello")

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(EsaError, match="cannot read dataset file .*Permission denied"):
        load_corpus(str(path), tok)


class _FakeDataset:
    """Answers the two indexing forms load_corpus uses: ds["text"] and ds[:n]["text"]."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def __getitem__(self, key):
        return self.texts if key == "text" else {"text": self.texts[key]}


def _fake_datasets(monkeypatch, load_dataset) -> None:
    module = types.SimpleNamespace(load_dataset=load_dataset, __version__="0.0-test")
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hf_datasets_follow_published_protocols(monkeypatch, tok):
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return _FakeDataset([f"doc{i}" for i in range(1200)])

    _fake_datasets(monkeypatch, load_dataset)
    wikitext = load_corpus("wikitext2", tok)
    assert calls[0] == (("wikitext", "wikitext-2-raw-v1"), {"split": "test"})
    assert wikitext.tokens.tolist() == utf8_ids("\n\n".join(f"doc{i}" for i in range(1200)))
    c4 = load_corpus("c4", tok)
    assert calls[1][0] == ("allenai/c4",) and calls[1][1]["split"] == "validation"
    assert c4.tokens.tolist() == utf8_ids(" ".join(f"doc{i}" for i in range(1100)))
    assert c4.description["source"] == "huggingface" and c4.description["documents_used"] == 1100


def test_hf_dataset_without_package_or_network_raises(monkeypatch, tok):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import now raises ImportError
    with pytest.raises(EsaError, match="'wikitext2' needs the `datasets` package and network access"):
        load_corpus("wikitext2", tok)

    def offline(*args, **kwargs):
        raise ConnectionError("no route\nto host")

    _fake_datasets(monkeypatch, offline)
    with pytest.raises(EsaError, match=r"'c4' needs .*\(ConnectionError: no route to host\)"):
        load_corpus("c4", tok)
