import json

import pytest
import torch

from esa.errors import EsaError
from esa.interpret import BUILTIN_PROBES, UNASSIGNED, interpret
from esa.perturb import tensor_checksum

PLANTED = ("model.layers.0.mlp.down_proj.weight", (5, 7))  # conftest.PLANTED
RANDOM = ("model.layers.0.mlp.down_proj.weight", (3, 9))
EMBED = ("model.embed_tokens.weight", (101, 3))  # 'e', the commonest letter
PROBES = list(BUILTIN_PROBES[:6])


def _run(lm, windows, selection=(PLANTED, RANDOM, EMBED), **kw):
    return interpret(lm, windows, list(selection), seed=3, batch_size=2, probes=PROBES, **kw)


@pytest.fixture(scope="module")
def result(planted, windows):
    before = {n: tensor_checksum(p) for n, p in planted.model.named_parameters()}
    out = _run(planted, windows)
    assert {n: tensor_checksum(p) for n, p in planted.model.named_parameters()} == before
    assert planted.model.config._attn_implementation != "eager"  # the kernel is switched back
    return out


def _row(result, weight):
    param, index = weight
    return next(r for r in result.weights if r["param"] == param and r["index"] == ",".join(map(str, index)))


def test_planted_weight_gets_the_planted_roles(result):
    row = _row(result, PLANTED)
    assert row["role"] == "attention-sink generator"
    assert row["roles_met"] == ["attention-sink generator", "massive-activation generator"]
    e = row["effects"]
    assert e["massive_drop"] > 0.9 and e["sink_drop"] > 0.1
    assert all(abs(c["sink_drop"]) < 1e-3 and c["massive_drop"] < 0.01 for c in row["controls"])
    # layer 1 head 0 is the planted sink head: almost all its attention goes to the first token
    assert row["sink_per_layer"]["intact"][1] > row["sink_per_layer"]["zeroed"][1] + 0.1
    assert result.attention["sink"]["intact"][1][0] > 0.8 > row["sink_per_head_zeroed"][1][0]


def test_planted_input_fires_at_bos_position_zero(result):
    side = _row(result, PLANTED)["input"]
    assert side["n_fire"] == 4  # one BOS per window
    assert side["share_fire_at_position0"] == 1.0 and side["share_fire_at_bos"] == 1.0
    assert side["fire_tokens"][0]["token"] == "<s>"
    assert side["top_activations"][0]["position"] == 0


def test_random_weight_unassigned_and_embedding_token_specific(result):
    assert _row(result, RANDOM)["role"] == UNASSIGNED
    emb = _row(result, EMBED)
    assert emb["token"]["text"] == "e" and emb["token"]["calib_count"] > 0 and not emb["token"]["special"]
    assert emb["role"] == "token-specific embedding"
    assert result.roles["n_assigned"] == 2 and result.roles["verdict"] == "PASS"


def test_logit_lens_matches_unembedding_of_the_contribution(planted, result):
    row = _row(result, PLANTED)
    lens = row["logit_lens"]
    named = dict(planted.model.named_parameters())
    v = torch.zeros(32)
    v[row["output_channel"]] = lens["contribution"]
    normed = v / torch.sqrt(v.pow(2).mean() + planted.model.config.rms_norm_eps) * named["model.norm.weight"]
    logits = named["lm_head.weight"] @ normed
    assert [t["id"] for t in lens["promoted"]] == torch.argsort(logits, descending=True, stable=True)[:10].tolist()


def test_topk_vs_random_k_attention(result):
    sink = result.attention["mean_sink"]
    assert sink["intact"] - sink["topk_zeroed"] > 0.05 > abs(sink["intact"] - sink["randomk_zeroed"])
    assert result.attention["mass_from"].startswith("the selected weights' own scores")


def test_knowledge_groups_cover_the_selection(result):
    by_layer = result.knowledge["by_layer"]
    assert {g["group"] for g in by_layer["groups"]} == {"layer 0", "embedding/head"}
    assert sum(g["n_weights"] for g in by_layer["groups"]) == 3
    assert len(by_layer["facts"]) == len(PROBES)
    assert {g["group"] for g in result.knowledge["by_component"]["groups"]} == {"mlp", "embedding"}


def test_same_seed_same_bytes(planted, windows, result):
    again = _run(planted, windows)
    strip = lambda r: json.dumps({**r.to_dict(), "timings": None}, sort_keys=True)  # noqa: E731
    assert strip(again) == strip(result)


@pytest.mark.parametrize("selection, message", [
    ([], "selection is empty"),
    ([("model.nope.weight", (0, 0))], "not a parameter"),
    ([("model.layers.0.mlp.down_proj.weight", (32, 0))], "outside"),
])
def test_bad_selection(planted, windows, selection, message):
    with pytest.raises(EsaError, match=message):
        interpret(planted, windows, selection, seed=0, batch_size=1)


def test_empty_answer_rejected_before_work(planted, windows):
    from esa.interpret import Probe

    with pytest.raises(EsaError, match="tokenises to nothing"):
        interpret(planted, windows, [PLANTED], seed=0, batch_size=1, probes=[Probe("The capital of France is", "")])


def test_bad_control_trials(planted, windows):
    with pytest.raises(EsaError, match="control_trials"):
        interpret(planted, windows, [PLANTED], seed=0, batch_size=1, control_trials=0)
