"""Evaluation protocols: `full` is SparseGPT/Wanda's eval_ppl loop, `last` is make_windows; both recorded."""

from __future__ import annotations

import math

import pytest
import torch

from esa.data import load_corpus, make_windows
from esa.data.protocols import EVAL_PROTOCOLS, full_windows, make_protocol_windows
from esa.errors import EsaError
from esa.evaluation import evaluate, run_baseline
from esa.models.tiny import BOS, build_tiny_model, byte_tokenizer


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("builtin", byte_tokenizer(), max_chars=1000)


@pytest.fixture(scope="module")
def model():
    return build_tiny_model("tiny-llama")


def sparsegpt_eval_ppl(model, tokens, seqlen):
    """The published loop: n = numel // seqlen windows, loss * seqlen summed, exp(sum / (n * seqlen))."""
    n = tokens.numel() // seqlen
    nlls = []
    with torch.no_grad():
        for i in range(n):
            batch = tokens[i * seqlen : (i + 1) * seqlen][None]
            nlls.append(model(input_ids=batch, labels=batch).loss.double() * seqlen)
    return math.exp(torch.stack(nlls).sum().item() / (n * seqlen))


def test_full_is_every_aligned_window(corpus, model):
    ws = full_windows(corpus, 64)
    n = corpus.tokens.numel() // 64
    assert ws.eval_offsets == tuple(range(0, n * 64, 64)) and ws.calib_offsets == ()
    protocol = ws.protocol()
    assert protocol["eval_protocol"] == "full" and protocol["rule"] == EVAL_PROTOCOLS["full"]
    assert protocol["unused_tail_tokens"] == corpus.tokens.numel() - n * 64
    assert evaluate(model, ws).ppl == pytest.approx(sparsegpt_eval_ppl(model, corpus.tokens, 64), rel=1e-5)
    with_bos = full_windows(corpus, 64, bos_id=BOS)
    assert with_bos.eval_offsets == tuple(range(0, (corpus.tokens.numel() // 63) * 63, 63))


def test_make_protocol_windows(corpus):
    last = make_protocol_windows(corpus, 32, 3, 4, seed=5)
    plain = make_windows(corpus, 32, 3, 4, seed=5)
    assert (last.calib_offsets, last.eval_offsets) == (plain.calib_offsets, plain.eval_offsets)
    assert last.protocol()["eval_protocol"] == "last" and last.text_measures is None
    full = make_protocol_windows(corpus, 32, 0, 4, seed=5, protocol="full", tokenizer=byte_tokenizer())
    assert full.eval_offsets == full_windows(corpus, 32).eval_offsets
    assert set(full.text_measures) == set(full.eval_offsets)
    with pytest.raises(EsaError, match="unknown --eval-protocol 'all'"):
        make_protocol_windows(corpus, 32, 0, 4, seed=5, protocol="all")
    with pytest.raises(EsaError, match="leaving none for calibration"):
        make_protocol_windows(corpus, 32, 2, 4, seed=5, protocol="full")
    with pytest.raises(EsaError, match="fewer than one window"):
        full_windows(load_corpus("builtin", byte_tokenizer(), max_chars=10), 32)


def test_baseline_under_full_protocol(corpus, model):
    report = run_baseline(model, corpus, "smoke", seq_len=64, n_eval=3, seeds=[0, 1], protocol="full",
                          tokenizer=byte_tokenizer())
    ws = full_windows(corpus, 64).with_text_measures(byte_tokenizer())
    direct = evaluate(model, ws)
    assert report["eval_protocol"] == "full" and report["fixed"]["offsets"] == list(ws.eval_offsets)
    assert report["fixed"]["ppl"] == pytest.approx(direct.ppl, rel=1e-9)
    assert report["fixed"]["bits_per_byte"] == pytest.approx(direct.bits_per_byte, rel=1e-9)
    for entry in report["seeds"]:
        assert len(entry["offsets"]) == 3 and set(entry["offsets"]) <= set(ws.eval_offsets)
    assert report["across_seeds"]["bits_per_byte"]["std"] is not None
    default = run_baseline(model, corpus, "smoke", seq_len=64, seeds=[0])
    assert default["eval_protocol"] == "last" and default["across_seeds"]["bits_per_byte"] is None
