"""evaluate: perplexity and accuracy against independent brute-force computations."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from esa.data import load_corpus, make_windows
from esa.errors import EsaError
from esa.evaluation import EvalResult, evaluate
from esa.models.tiny import BOS, build_tiny_model, byte_tokenizer


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("builtin", byte_tokenizer(), max_chars=4000)


def hf_loss_ppl(model, ws) -> float:
    """Hugging Face's own mean loss per window, weighted by predicted tokens."""
    total, count = 0.0, 0
    with torch.no_grad():
        for offset in ws.eval_offsets:
            w = ws.window(offset)[None]
            n = w.shape[1] - 1
            total += model(input_ids=w, labels=w).loss.double().item() * n
            count += n
    return math.exp(total / count)


def argmax_accuracy(model, ws) -> float:
    hits, count = 0, 0
    with torch.no_grad():
        for offset in ws.eval_offsets:
            w = ws.window(offset)
            predicted = model(input_ids=w[None]).logits[0, :-1].argmax(dim=-1)
            hits += int((predicted == w[1:]).sum())
            count += w.numel() - 1
    return hits / count


@pytest.mark.parametrize("family", ["tiny-llama", "tiny-gptneox", "tiny-mixtral"])
@pytest.mark.parametrize("bos_id", [None, BOS])
def test_matches_hf_loss_and_brute_force_accuracy(corpus, family, bos_id):
    model = build_tiny_model(family)
    ws = make_windows(corpus, seq_len=48, n_calib=2, n_eval=5, seed=0, bos_id=bos_id)
    result = evaluate(model, ws, batch_size=2)
    assert result.ppl == pytest.approx(hf_loss_ppl(model, ws), rel=1e-5)
    assert result.accuracy == pytest.approx(argmax_accuracy(model, ws), abs=1e-12)
    assert result.n_windows == 5 and result.n_tokens == 5 * 47
    assert result.offsets == ws.eval_offsets and len(result.window_nll) == 5
    assert result.mean_nll == pytest.approx(math.log(result.ppl), rel=1e-12)


def test_batch_size_and_split(corpus):
    model = build_tiny_model("tiny-llama")
    ws = make_windows(corpus, seq_len=32, n_calib=3, n_eval=5, seed=1)
    one = evaluate(model, ws, batch_size=1)
    many = evaluate(model, ws, batch_size=4)
    assert many.window_nll == pytest.approx(one.window_nll, rel=1e-5)
    calib = evaluate(model, ws, split="calib")
    as_eval = evaluate(model, replace(ws, eval_offsets=ws.calib_offsets))
    assert calib.split == "calib" and calib.offsets == ws.calib_offsets
    assert calib.ppl == pytest.approx(as_eval.ppl, rel=1e-12)


def test_subset_equals_evaluating_those_windows_alone(corpus):
    model = build_tiny_model("tiny-phi3")
    ws = make_windows(corpus, seq_len=40, n_calib=0, n_eval=6, seed=0)
    full = evaluate(model, ws)
    picked = ws.eval_offsets[1::2]
    alone = evaluate(model, replace(ws, eval_offsets=picked))
    sub = full.subset(picked)
    assert sub.ppl == pytest.approx(alone.ppl, rel=1e-12) and sub.accuracy == alone.accuracy
    assert sub.offsets == picked and sub.n_tokens == 3 * 39
    with pytest.raises(ValueError, match="not evaluated"):
        full.subset([1])


def test_to_dict_is_json_ready(corpus):
    result = evaluate(build_tiny_model("tiny-llama"), make_windows(corpus, 32, 0, 2, seed=0))
    d = result.to_dict()
    assert d["ppl"] == result.ppl and d["window_nll"] == list(result.window_nll)
    assert EvalResult(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}) == result
    json.dumps(d)


def test_restores_training_mode_and_needs_no_grad(corpus):
    model = build_tiny_model("tiny-llama").train()
    evaluate(model, make_windows(corpus, 32, 0, 2, seed=0))
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_non_finite_loss_names_the_window(corpus):
    model = build_tiny_model("tiny-llama")
    ws = make_windows(corpus, 32, 0, 2, seed=0)
    with torch.no_grad():
        model.get_input_embeddings().weight.fill_(float("nan"))
    with pytest.raises(EsaError, match=f"non-finite loss on evaluation window at offset {ws.eval_offsets[0]}"):
        evaluate(model, ws)


def test_user_errors(corpus):
    model = build_tiny_model("tiny-llama")
    ws = make_windows(corpus, 32, 0, 2, seed=0)
    with pytest.raises(EsaError, match="no 'calib' windows"):
        evaluate(model, ws, split="calib")
    with pytest.raises(EsaError, match="--batch-size must be at least 1"):
        evaluate(model, ws, batch_size=0)
