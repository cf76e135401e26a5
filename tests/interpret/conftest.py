"""Fixtures: a tiny Llama with a planted super weight: one down_proj entry that makes a massive activation at the
BOS token (position 0), which layer 1's head 0 then attends to (an attention sink).

Layout (hidden 32, head_dim 8, 2 layers): residual dim D0 carries only the BOS embedding, so MLP-0
channel C (gate and up read D0) fires only at BOS; the planted W_down0[R, C] writes R massively there.
Layer 1's keys read R on head dim 3 (RoPE's slowest pair, nearly position-independent) and head 0's
queries read DC, a constant of every token's embedding, so every query of head 0 points at BOS's key.
"""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

import esa
from esa.models.tiny import BOS

D0, DC, R, C = 0, 1, 5, 7
PLANTED = ("model.layers.0.mlp.down_proj.weight", (R, C))
SLOW = 3  # the head dim in RoPE's lowest-frequency pair (head_dim 8)


@torch.no_grad()
def _planted_model() -> esa.LoadedModel:
    lm = esa.load_model("tiny-llama")
    named = dict(lm.model.named_parameters())
    emb = named["model.embed_tokens.weight"]
    emb[:, D0] = 0.0
    emb[:, R] = 0.0
    emb[:, DC] = 0.1
    emb[BOS] = 0.0
    emb[BOS, D0], emb[BOS, DC] = 1.0, 0.1
    named["model.layers.0.self_attn.o_proj.weight"][[D0, R]] = 0.0  # attention never writes D0 or R
    named["model.layers.0.mlp.gate_proj.weight"][C] = 0.0
    named["model.layers.0.mlp.up_proj.weight"][C] = 0.0
    named["model.layers.0.mlp.gate_proj.weight"][C, D0] = 3.0
    named["model.layers.0.mlp.up_proj.weight"][C, D0] = 3.0
    named["model.layers.0.mlp.down_proj.weight"][R] = 0.0
    named["model.layers.0.mlp.down_proj.weight"][R, C] = 10.0
    k = named["model.layers.1.self_attn.k_proj.weight"]
    q = named["model.layers.1.self_attn.q_proj.weight"]
    k[SLOW] = 0.0
    k[SLOW, R] = 3.0
    q[SLOW] = 0.0
    q[SLOW, DC] = 3.0
    return lm


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: tiny models on a shared 2-core machine run several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def planted() -> esa.LoadedModel:
    """The planted model (its super weight: PLANTED); tests must leave it unchanged."""
    return _planted_model()


@pytest.fixture(scope="session")
def windows(planted: esa.LoadedModel) -> esa.WindowSet:
    corpus = esa.load_corpus("builtin", planted.tokenizer)
    return esa.make_windows(corpus, 32, 4, 2, 0, bos_id=planted.tokenizer.bos_token_id, max_seq_len=256)
