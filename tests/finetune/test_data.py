from __future__ import annotations

import ast
import importlib
import inspect
import io
import tokenize
import unicodedata

import pytest
from pydoc_data.topics import topics

from esa.data import load_corpus
from esa.errors import EsaError
from esa.finetune import CODE_MODULES, builtin_domains, code_vs_docs, names_vs_docs, text_windows, topic_domains
from esa.finetune.data import N_NAMES


def test_topic_domains_split_the_builtin_topics_in_sorted_halves(lm):
    a, b = topic_domains(lm.tokenizer)
    keys = sorted(topics)
    half = (len(keys) + 1) // 2
    assert a.description["n_documents"] == half and b.description["n_documents"] == len(keys) - half
    assert a.description["documents"] == [keys[0], keys[half - 1]]
    assert b.description["documents"] == [keys[half], keys[-1]]
    whole = load_corpus("builtin", lm.tokenizer)
    assert a.n_chars + b.n_chars + 2 == whole.n_chars  # the two halves are the corpus, one separator apart


def test_text_windows_train_only_and_split(lm):
    a, _ = topic_domains(lm.tokenizer)
    train_only = text_windows(a, "training", seq_len=32, n_train=5, n_eval=0, seed=1)
    assert len(train_only.calib_offsets) == 5 and train_only.eval_offsets == ()
    both = text_windows(a, "training", seq_len=32, n_train=5, n_eval=3, seed=1)
    assert len(both.eval_offsets) == 3 and not set(both.calib_offsets) & set(both.eval_offsets)


def test_empty_or_too_short_training_file(lm, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(EsaError, match="no text"):
        load_corpus(str(empty), lm.tokenizer)
    short = tmp_path / "short.txt"
    short.write_text("tiny text")
    corpus = load_corpus(str(short), lm.tokenizer)
    with pytest.raises(EsaError, match="fewer than 2 window"):
        text_windows(corpus, "training", seq_len=32, n_train=4, n_eval=2, seed=0)
    with pytest.raises(EsaError, match="fewer than 1 window"):
        text_windows(corpus, "training", seq_len=32, n_train=4, n_eval=0, seed=0)


def test_code_vs_docs_is_code_without_prose_against_all_topics(lm):
    code, docs = code_vs_docs(lm.tokenizer)
    assert code.description["n_documents"] == len(CODE_MODULES)
    assert docs.n_chars == load_corpus("builtin", lm.tokenizer).n_chars  # every topic, in the built-in order
    text = lm.tokenizer.decode(code.tokens.tolist())
    tree = ast.parse(text)  # the joined modules are one valid module
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr):
            assert not isinstance(getattr(node.body[0].value, "value", None), str)  # no docstring left
    comments = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    assert comments == []
    original = set()
    for name in CODE_MODULES:  # the code is all there: every function the modules define
        module = ast.parse(inspect.getsource(importlib.import_module(name)))
        original |= {n.name for n in ast.walk(module) if isinstance(n, ast.FunctionDef)}
    assert original == {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert builtin_domains("code-vs-docs", lm.tokenizer)[0].description == code.description


def test_unknown_builtin_domains(lm):
    with pytest.raises(EsaError, match="unknown built-in domains"):
        builtin_domains("poetry", lm.tokenizer)


def test_names_vs_docs_lists_the_first_named_code_points(lm):
    names, docs = names_vs_docs(lm.tokenizer)
    expected, code_point = [], 0
    while len(expected) < N_NAMES:  # brute force, code point by code point
        if unicodedata.name(chr(code_point), ""):
            expected.append(unicodedata.name(chr(code_point)))
        code_point += 1
    assert lm.tokenizer.decode(names.tokens.tolist()) == "\n".join(expected)
    assert expected[0] == "SPACE" and docs.description == code_vs_docs(lm.tokenizer)[1].description
