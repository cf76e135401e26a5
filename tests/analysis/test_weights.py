import json
import math

import pytest
import torch

from esa.analysis import weight_analysis
from esa.ranking import WeightSet

DOWN = "model.layers.0.mlp.down_proj.weight"
EMBED = "model.embed_tokens.weight"
HEAD = "lm_head.weight"
NORM = "model.layers.0.input_layernorm.weight"


def _select(lm, entries):
    """A WeightSet holding `entries` [(name, index tuple)] in that order (scores descending)."""
    names = tuple(lm.params)
    flat = [int(torch.tensor(i) @ torch.tensor(_strides(lm.params[n].shape))) for n, i in entries]
    return WeightSet(names, torch.tensor([names.index(n) for n, _ in entries]), torch.tensor(flat),
                     torch.arange(len(entries), 0, -1).float())


def _strides(shape):
    out, step = [], 1
    for s in reversed(shape):
        out.append(step)
        step *= s
    return list(reversed(out))


@pytest.fixture
def analysed(tiny):
    lm = tiny("tiny-llama")  # byte tokenizer: <s>=256 (BOS), </s>=257 (EOS), <pad>=258 (PAD and UNK)
    with torch.no_grad():
        down = dict(lm.model.named_parameters())[DOWN]
        down.zero_()
        down[5, 40], down[5, 41], down[6, 40] = 4.0, -2.0, 1.0
    entries = [(DOWN, (5, 40)), (EMBED, (256, 3)), (DOWN, (5, 41)), (HEAD, (258, 1)), (EMBED, (256, 7)),
               (DOWN, (6, 40)), (EMBED, (65, 0)), (NORM, (3,))]
    counts = torch.zeros(259, dtype=torch.long)
    counts[256], counts[65] = 4, 7
    return lm, weight_analysis(_select(lm, entries), lm, counts)


def test_magnitude_statistics_by_hand(analysed):
    _, out = analysed
    json.dumps(out, allow_nan=False)
    rows = {(r["param"], r["index"]): r for r in out["weights"]}
    n = 32 * 64
    mean, mean_sq = 3 / n, 21 / n  # entries 4, -2, 1, rest 0
    std = math.sqrt(mean_sq - mean**2)
    abs_mean = 7 / n
    abs_std = math.sqrt(mean_sq - abs_mean**2)
    for index, value, at_most in (("5,40", 4.0, n), ("5,41", -2.0, n - 1), ("6,40", 1.0, n - 2)):
        row = rows[(DOWN, index)]
        assert row["value"] == value
        assert row["z"] == pytest.approx((value - mean) / std)
        assert row["abs_z"] == pytest.approx((abs(value) - abs_mean) / abs_std)
        assert row["abs_percentile"] == pytest.approx(100 * at_most / n)
    assert [r["rank"] for r in out["weights"]] == list(range(1, 9))


def test_percentile_matches_brute_force_on_a_random_tensor(analysed):
    lm, out = analysed
    w = dict(lm.model.named_parameters())[EMBED].detach().reshape(-1)
    for row in (r for r in out["weights"] if r["param"] == EMBED):
        v = float(w[int(row["index"].split(",")[0]) * 32 + int(row["index"].split(",")[1])])
        assert row["abs_percentile"] == pytest.approx(100 * float((w.abs() <= abs(v)).double().mean()))
        assert row["z"] == pytest.approx(float((v - w.double().mean()) / w.double().std(correction=0)))


def test_row_and_column_concentration(analysed):
    _, out = analysed
    tensors = {t["param"]: t for t in out["tensors"]}
    assert set(tensors) == {DOWN, EMBED, HEAD}  # the 1-D norm has no rows or columns
    down = tensors[DOWN]
    for side, top in (("rows", "5"), ("cols", "40")):
        assert down[side]["n_distinct"] == 2
        assert down[side]["most_shared"][0] == {"index": top, "count": 2}
        assert down[side]["max_share"] == pytest.approx(2 / 3)
        assert down[side]["hhi"] == pytest.approx(5 / 9)
        assert down[side]["shared_fraction"] == pytest.approx(2 / 3)
    embed_top = tensors[EMBED]["rows"]["most_shared"][0]
    assert (embed_top["index"], embed_top["count"], embed_top["token"], embed_top["special"]) == ("256", 2, "<s>", ["bos"])
    assert tensors[EMBED]["cols"]["n_distinct"] == 3
    assert out["shared_row_fraction"] == pytest.approx(4 / 8)
    assert out["shared_col_fraction"] == pytest.approx(2 / 8)


def test_tokens_of_embedding_and_output_rows(analysed):
    _, out = analysed
    rows = {(r["param"], r["index"]): r for r in out["weights"]}
    bos = rows[(EMBED, "256,3")]
    assert (bos["token_id"], bos["token"], bos["text"], bos["calib_count"], bos["special"]) == (256, "<s>", "<s>", 4, ["bos"])
    pad = rows[(HEAD, "258,1")]
    assert pad["special"] == ["pad", "unk"]  # not EOS: the tokenizer's EOS is 257
    letter = rows[(EMBED, "65,0")]
    assert (letter["text"], letter["calib_count"], letter["special"]) == ("A", 7, [])
    assert "token_id" not in rows[(DOWN, "5,40")]
    assert [(t["token_id"], t["n_weights"], t["params"]) for t in out["tokens"]] == [
        (256, 2, [EMBED]), (65, 1, [EMBED]), (258, 1, [HEAD])]


def test_without_calibration_counts(tiny):
    lm = tiny("tiny-llama")
    out = weight_analysis(_select(lm, [(EMBED, (10, 2))]), lm, None)
    assert out["weights"][0]["calib_count"] is None


def test_fused_experts_are_keyed_by_expert(tiny):
    lm = tiny("tiny-mixtral")
    down = "model.layers.0.mlp.experts.down_proj"  # [4, 32, 64]
    out = weight_analysis(_select(lm, [(down, (2, 5, 40)), (down, (2, 5, 41)), (down, (3, 5, 40))]), lm, None)
    assert [r["expert"] for r in out["weights"]] == [2, 2, 3]
    (tensor,) = out["tensors"]
    assert tensor["rows"]["most_shared"][0] == {"index": "2,5", "count": 2}  # row 5 of expert 3 is another row
    assert tensor["cols"]["n_distinct"] == 3
