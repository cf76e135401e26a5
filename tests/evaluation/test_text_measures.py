"""Bits per byte and word perplexity: brute force on byte tokens, and lm-eval's rolling figures on one document."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from esa.data import load_corpus, make_windows
from esa.evaluation import EvalResult, evaluate
from esa.models.tiny import BOS, build_tiny_model, byte_tokenizer

STORIES = Path(__file__).resolve().parents[1] / "tasks" / "stories_rolling.jsonl"


@pytest.fixture(scope="module")
def corpus():
    corpus = load_corpus(str(STORIES), byte_tokenizer())  # our own ASCII prose, ~1.8k bytes
    assert corpus.tokens.max() < 128  # plain ASCII: one byte token is one UTF-8 byte of text
    return corpus


@pytest.fixture(scope="module")
def model():
    return build_tiny_model("tiny-llama")


def brute_force(model, ws):
    """Summed NLL from Hugging Face's loss, bytes = predicted byte tokens, words from the raw bytes."""
    total_nll, n_bytes, n_words = 0.0, 0, 0
    with torch.no_grad():
        for offset in ws.eval_offsets:
            window = ws.window(offset)
            n = window.numel() - 1
            total_nll += model(input_ids=window[None], labels=window[None]).loss.double().item() * n
            text = bytes(window[1:].tolist()).decode("ascii")
            n_bytes += n
            n_words += len(text.split())
    return total_nll / (math.log(2) * n_bytes), math.exp(total_nll / n_words), n_bytes, n_words


@pytest.mark.parametrize("bos_id", [None, BOS])
def test_bits_per_byte_and_word_ppl_equal_brute_force(corpus, model, bos_id):
    ws = make_windows(corpus, 40, 2, 6, seed=0, bos_id=bos_id).with_text_measures(byte_tokenizer())
    result = evaluate(model, ws, batch_size=3)
    bpb, word_ppl, n_bytes, n_words = brute_force(model, ws)
    assert (result.n_bytes, result.n_words) == (n_bytes, n_words) == (sum(result.window_bytes), n_words)
    assert result.bits_per_byte == pytest.approx(bpb, rel=1e-5)
    assert result.word_ppl == pytest.approx(word_ppl, rel=1e-4)
    assert result.bits_per_byte == pytest.approx(result.mean_nll / math.log(2), rel=1e-12)  # one byte per token
    assert ws.protocol()["text_measures"].startswith("a window's predicted tokens")


def test_subset_and_dict_keep_measures(corpus, model):
    ws = make_windows(corpus, 32, 0, 6, seed=0).with_text_measures(byte_tokenizer())
    full = evaluate(model, ws)
    picked = ws.eval_offsets[::2]
    alone = evaluate(model, replace(ws, eval_offsets=picked))
    sub = full.subset(picked)
    assert (sub.n_bytes, sub.n_words, sub.window_words) == (alone.n_bytes, alone.n_words, alone.window_words)
    assert sub.bits_per_byte == pytest.approx(alone.bits_per_byte, rel=1e-12)
    d = full.to_dict()
    assert EvalResult(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}) == full
    json.dumps(d)


def test_unmeasured_windows(corpus, model):
    ws = make_windows(corpus, 32, 0, 2, seed=0)
    plain = evaluate(model, ws)
    assert plain.bits_per_byte is plain.word_ppl is plain.n_bytes is None and plain.window_bytes == ()
    assert ws.protocol()["text_measures"] is None
    measured = ws.with_text_measures(byte_tokenizer())
    with pytest.raises(ValueError, match="carry no text measures"):
        evaluate(model, replace(measured, eval_offsets=(1,)))


def test_equals_lm_eval_rolling_bits_per_byte_on_one_document(model, tmp_path):
    """One document in one BOS window is exactly what lm-eval's loglikelihood_rolling scores."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    doc = json.loads(STORIES.read_text().splitlines()[0])["text"]
    (tmp_path / "doc.txt").write_text(doc)
    (tmp_path / "doc.jsonl").write_text(json.dumps({"text": doc}) + "\n")
    yaml = (STORIES.parent / "stories_rolling.yaml").read_text().replace("stories_rolling.jsonl", str(tmp_path / "doc.jsonl"))
    (tmp_path / "doc.yaml").write_text(yaml)
    tokenizer = byte_tokenizer()
    corpus = load_corpus(str(tmp_path / "doc.txt"), tokenizer)
    n = int(corpus.tokens.numel())
    ws = make_windows(corpus, n + 1, 0, 1, seed=0, bos_id=BOS).with_text_measures(tokenizer)
    ours = evaluate(model, ws)
    wrapper = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
    assert wrapper.prefix_token_id == BOS
    raw = lm_eval.simple_evaluate(model=wrapper, tasks=[str(tmp_path / "doc.yaml")], log_samples=False,
                                  task_manager=TaskManager(include_defaults=False))
    theirs = raw["results"]["esa_stories_rolling"]
    assert ours.n_bytes == len(doc.encode("utf-8"))
    assert ours.bits_per_byte == pytest.approx(theirs["bits_per_byte,none"], rel=1e-5)
    assert ours.word_ppl == pytest.approx(theirs["word_perplexity,none"], rel=1e-4)
