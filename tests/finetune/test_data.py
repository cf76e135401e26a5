from __future__ import annotations

import pytest
from pydoc_data.topics import topics

from esa.data import load_corpus
from esa.errors import EsaError
from esa.finetune import text_windows, topic_domains


def test_topic_domains_split_the_builtin_topics_in_sorted_halves(lm):
    a, b = topic_domains(lm.tokenizer)
    keys = sorted(topics)
    half = (len(keys) + 1) // 2
    assert a.description["n_documents"] == half and b.description["n_documents"] == len(keys) - half
    assert a.description["topics"] == [keys[0], keys[half - 1]]
    assert b.description["topics"] == [keys[half], keys[-1]]
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
