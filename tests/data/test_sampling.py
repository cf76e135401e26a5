"""make_windows: the recorded window protocol, disjointness, determinism and every user error."""

from __future__ import annotations

import json

import pytest
import torch

from esa.data import Corpus, make_windows
from esa.errors import EsaError

BOS = 10_000


def index_corpus(n: int) -> Corpus:
    """Token i is the integer i, so a window's tokens are its stream indices."""
    return Corpus(name="index", tokens=torch.arange(n, dtype=torch.int64), n_chars=n, description={"source": "test"})


def stream_indices(ws, offsets) -> set[int]:
    return {int(t) for o in offsets for t in ws.window(o) if t != BOS}


@pytest.mark.parametrize("bos_id", [None, BOS])
def test_eval_is_last_aligned_windows_and_calib_comes_before(bos_id):
    ws = make_windows(index_corpus(1000), seq_len=64, n_calib=5, n_eval=3, seed=0, bos_id=bos_id)
    span = 64 if bos_id is None else 63
    n_windows = 1000 // span
    assert ws.span == span
    assert ws.eval_offsets == tuple(i * span for i in range(n_windows - 3, n_windows))
    assert len(ws.calib_offsets) == 5 and list(ws.calib_offsets) == sorted(set(ws.calib_offsets))
    assert all(o % span == 0 and o + span <= ws.eval_offsets[0] for o in ws.calib_offsets)
    assert not stream_indices(ws, ws.calib_offsets) & stream_indices(ws, ws.eval_offsets)
    for batch in ws.batches("calib", 2):
        assert batch.shape[1] == 64
        if bos_id is not None:
            assert (batch[:, 0] == BOS).all()


def test_calib_draw_matches_reference_and_spares_global_rng():
    state = torch.random.get_rng_state()
    ws = make_windows(index_corpus(2000), seq_len=100, n_calib=4, n_eval=2, seed=7)
    assert torch.equal(state, torch.random.get_rng_state())
    drawn = torch.randperm(18, generator=torch.Generator().manual_seed(7))[:4]
    assert ws.calib_offsets == tuple(sorted(int(i) * 100 for i in drawn))


def test_same_seed_same_windows_other_seed_other_calib_same_eval():
    corpus = index_corpus(10_000)
    a = make_windows(corpus, 32, 8, 4, seed=0)
    b = make_windows(corpus, 32, 8, 4, seed=0)
    c = make_windows(corpus, 32, 8, 4, seed=1)
    assert a.calib_offsets == b.calib_offsets and a.eval_offsets == b.eval_offsets
    assert a.calib_offsets != c.calib_offsets
    assert a.eval_offsets == c.eval_offsets


def test_requests_beyond_the_corpus_use_everything_and_are_recorded():
    ws = make_windows(index_corpus(1000), seq_len=100, n_calib=50, n_eval=4, seed=0)
    assert ws.calib_offsets == tuple(range(0, 600, 100))
    info = ws.protocol_info
    assert (info["n_calib_requested"], info["n_calib_used"]) == (50, 6)
    all_eval = make_windows(index_corpus(1050), seq_len=100, n_calib=0, n_eval=40, seed=0)
    assert all_eval.eval_offsets == tuple(range(0, 1000, 100)) and all_eval.calib_offsets == ()
    assert all_eval.protocol_info["n_eval_used"] == 10 and all_eval.protocol_info["unused_tail_tokens"] == 50


def test_protocol_is_recorded_and_json_ready():
    corpus = Corpus("index", torch.arange(500), 500, {"source": "test", "name": "index"})
    ws = make_windows(corpus, 50, 2, 3, seed=3, bos_id=BOS, max_seq_len=64)
    protocol = ws.protocol()
    assert protocol["dataset"] == corpus.description and protocol["seed"] == 3
    assert protocol["window_span"] == 49 and protocol["rule"].startswith("eval = last N aligned windows")
    assert protocol["eval_offsets"] == list(ws.eval_offsets)
    json.dumps(protocol)


@pytest.mark.parametrize(
    ("n_tokens", "kwargs", "message"),
    [
        (1000, {"seq_len": 1}, "--seq-len must be at least 2"),
        (1000, {"seq_len": 4096, "max_seq_len": 2048}, "--seq-len 4096 exceeds the model's context of 2048 tokens"),
        (100, {"seq_len": 128}, "the corpus has 100 tokens, fewer than one window of 128; use a larger dataset"),
        (99, {"seq_len": 101, "bos_id": BOS}, "the corpus has 99 tokens, fewer than one window of 100"),
        (1000, {"n_eval": 0}, "--eval-samples must be at least 1"),
        (1000, {"n_calib": -1}, "--max-samples must be at least 0"),
        (1000, {"n_eval": 10, "n_calib": 1}, "leaving none for calibration"),
    ],
)
def test_errors(n_tokens: int, kwargs: dict, message: str):
    args = {"seq_len": 100, "n_calib": 2, "n_eval": 2, "seed": 0, **kwargs}
    with pytest.raises(EsaError, match=message):
        make_windows(index_corpus(n_tokens), **args)
