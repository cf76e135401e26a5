import json
import math

import pytest
import torch
from torch import nn

from esa.analysis import detect_superweights, find_output_projections, rank_under_metrics
from esa.analysis.superweights import NOT_SUPER, NOT_VALIDATED, SUPER, _judge, zeroed
from esa.errors import EsaError
from esa.evaluation import evaluate
from esa.models import LoadedModel, describe_parameters
from esa.models.tiny import TINY_CONFIGS

# Planted super weight: row != col, and col >= hidden size (32) so a transposed index cannot exist.
ROW, COL = 5, 40


def plant_dense(lm: LoadedModel, layer: int, value: float = 10.0) -> None:
    """Make input channel COL of a gated MLP's down_proj fire massively (x_c = silu(g) * g * 1e4 >= 0) and
    carry it through down_proj[ROW, COL] = value."""
    mlp = lm.model.model.layers[layer].mlp
    with torch.no_grad():
        mlp.up_proj.weight[COL] = mlp.gate_proj.weight[COL] * 1e4
        mlp.down_proj.weight[ROW, COL] = value


def _found(result):
    return [(c["param"], c["index"]) for c in result.candidates]


@pytest.mark.parametrize("layer", [0, 1])
def test_finds_exactly_a_planted_super_weight_in_row_col_order(tiny, text_windows, frozen, layer):
    lm = tiny("tiny-llama")
    plant_dense(lm, layer)
    unchanged = frozen(lm)
    result = detect_superweights(lm, text_windows(lm))
    assert _found(result) == [(f"model.layers.{layer}.mlp.down_proj.weight", f"{ROW},{COL}")]
    cand = result.candidates[0]
    assert (cand["row"], cand["col"], cand["value"]) == (ROW, COL, 10.0)
    assert (cand["input_channel"], cand["output_channel"]) == (COL, ROW)
    assert cand["flat_index"] == ROW * 64 + COL
    assert cand["input_ratio"] >= 1000 and cand["output_ratio"] >= 1000
    assert result.stopped == "no spike above the threshold remains"
    assert unchanged()


def test_finds_a_planted_super_weight_in_gpt_neox(tiny):
    lm = tiny("tiny-gptneox")
    mlp = lm.model.gpt_neox.layers[1].mlp
    with torch.no_grad():
        mlp.dense_h_to_4h.weight[COL] *= 1e4
        mlp.dense_4h_to_h.weight[ROW, COL] = 10.0
    result = detect_superweights(lm, None)
    assert _found(result) == [("gpt_neox.layers.1.mlp.dense_4h_to_h.weight", f"{ROW},{COL}")]


def test_finds_a_planted_super_weight_in_one_fused_expert(tiny):
    lm = tiny("tiny-mixtral")
    experts = lm.model.model.layers[1].mlp.experts
    ffn, expert = experts.intermediate_dim, 2
    with torch.no_grad():
        experts.gate_up_proj[expert, ffn + COL] = experts.gate_up_proj[expert, COL] * 1e4  # up = gate * 1e4
        experts.down_proj[expert, ROW, COL] = 10.0
    result = detect_superweights(lm, None)
    assert _found(result) == [("model.layers.1.mlp.experts.down_proj", f"{expert},{ROW},{COL}")]
    cand = result.candidates[0]
    assert (cand["layer"], cand["expert"], cand["row"], cand["col"]) == (1, expert, ROW, COL)
    assert cand["flat_index"] == (expert * 32 + ROW) * ffn + COL


def test_a_weight_the_model_relies_on_is_validated_as_super(tiny, text_windows, frozen):
    """Last-layer plant whose massive residual channel the lm_head turns into a unigram predictor."""
    lm = tiny("tiny-llama")
    windows = text_windows(lm)
    plant_dense(lm, layer=1)
    counts = torch.bincount(windows.tokens, minlength=259).float() + 1
    logp = (counts / counts.sum()).log()
    with torch.no_grad():
        lm.model.lm_head.weight[:, ROW] = (logp - logp.mean()) / 32**0.5
    unchanged = frozen(lm)
    result = detect_superweights(lm, windows, n_controls=2, seed=3)
    assert unchanged()
    cand = result.candidates[0]
    assert cand["verdict"] == SUPER and result.super_weights() == [cand]
    assert result.baseline_ppl == evaluate(lm.model, windows).ppl
    named = dict(lm.model.named_parameters())
    with zeroed(lm.model, cand["param"], cand["flat_index"]):
        assert cand["ppl_zeroed"] == evaluate(lm.model, windows).ppl
    assert cand["ppl_zeroed"] > 5 * result.baseline_ppl
    assert cand["magnitude_controls"] == [] and "at least as large" in cand["magnitude_control_note"]
    assert len(cand["random_controls"]) == 2
    for control in cand["random_controls"]:
        r, c = map(int, control["index"].split(","))
        assert control["value"] == float(named[control["param"]].detach()[r, c])
        with torch.no_grad():
            named[control["param"]][r, c] = 0.0
        assert control["ppl"] == evaluate(lm.model, windows).ppl
        with torch.no_grad():
            named[control["param"]][r, c] = control["value"]


@pytest.mark.parametrize("family", tuple(TINY_CONFIGS))
def test_runs_on_every_family_and_restores_the_model(tiny, text_windows, frozen, family):
    lm = tiny(family)
    unchanged = frozen(lm)
    windows = text_windows(lm)
    result = detect_superweights(lm, windows, threshold=0.5, max_iter=2, n_controls=1)  # low: force candidates
    assert unchanged()
    json.dumps(result.to_dict(), allow_nan=False)
    assert len(result.series) == len(find_output_projections(lm))
    assert len(result.candidates) == 2
    for cand in result.candidates:
        assert cand["verdict"] in (SUPER, NOT_SUPER)
        assert len(cand["random_controls"]) == 1 and len(cand["magnitude_controls"]) <= 1
        assert math.isfinite(cand["ppl_zeroed"])
    assert result.protocol["n_tokens_per_pass"] == sum(len(lm.tokenizer(p)["input_ids"]) for p in result.protocol["prompts"]) + 64


def test_deterministic(tiny, text_windows):
    def run():
        lm = tiny("tiny-llama")
        d = detect_superweights(lm, text_windows(lm), threshold=0.5, max_iter=2, n_controls=2, seed=7).to_dict()
        d.pop("timings")
        return d

    assert run() == run()


def test_zeroing_keeps_earlier_candidates_zeroed_and_the_series_describes_the_unmodified_model(tiny):
    lm = tiny("tiny-llama")
    result = detect_superweights(lm, None, threshold=0.5, max_iter=3)
    assert [c["iteration"] for c in result.candidates] == list(range(len(result.candidates)))
    assert len({(c["param"], c["index"]) for c in result.candidates}) == len(result.candidates)
    assert all(c["verdict"] == NOT_VALIDATED for c in result.candidates)
    first = result.candidates[0]
    row = next(s for s in result.series if s["param"] == first["param"])
    assert row["input_channel"] == first["col"] and row["input_max"] == pytest.approx(abs(first["input_spike"]))


def test_spike_tokens_are_decoded_and_counted(tiny):
    lm = tiny("tiny-llama")
    plant_dense(lm, 0)
    prompts = ["abc", "abd"]
    result = detect_superweights(lm, None, prompts=prompts, threshold=10.0)
    cand = result.candidates[0]
    assert cand["n_spiking_tokens"] == sum(t["count"] for t in cand["spike_tokens"]) <= 6
    assert {t["text"] for t in cand["spike_tokens"]} <= set("abcd")
    assert cand["spike_token"]["text"] in "abcd" and 0 <= cand["spike_token"]["position"] < 3


@pytest.mark.parametrize("threshold", [0.0, -1.0, float("nan")])
def test_bad_threshold(tiny, threshold):
    with pytest.raises(EsaError, match="threshold must be a number > 0"):
        detect_superweights(tiny("tiny-llama"), None, threshold=threshold)


def test_bad_inputs(tiny):
    toy = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    lm = LoadedModel(toy, None, "toy", "test", "toy", 90, 0, describe_parameters(toy), torch.float32, torch.device("cpu"), None)
    with pytest.raises(EsaError, match="found no MLP output projection in toy"):
        detect_superweights(lm, None)
    with pytest.raises(EsaError, match="needs prompts or calibration windows"):
        detect_superweights(tiny("tiny-llama"), None, prompts=[])
    with pytest.raises(EsaError, match="max_iter"):
        detect_superweights(tiny("tiny-llama"), None, max_iter=0)


def test_verdict_rule():
    controls = [{"ppl": 10.5}, {"ppl": 9.0}]
    hurt = _judge(10.0, 20.0, controls[:1], controls[1:])
    assert hurt["verdict"] == SUPER and hurt["delta_ppl"] == 10.0
    assert hurt["ratio_vs_magnitude_controls"] == 10.0 / 0.5 and hurt["ratio_vs_random_controls"] is None
    assert _judge(10.0, 14.9, controls[:1], [])["verdict"] == NOT_SUPER  # 4.9 < 10 x 0.5
    assert _judge(10.0, 10.05, [], [])["verdict"] == NOT_SUPER  # below the 1% minimum increase
    assert _judge(10.0, 10.2, [], [{"ppl": 9.0}])["verdict"] == SUPER  # controls that help count as 0


def test_rank_under_metrics(tiny):
    lm = tiny("tiny-llama")
    plant_dense(lm, 0)
    result = detect_superweights(lm, None)
    name = result.candidates[0]["param"]
    flat = result.candidates[0]["flat_index"]
    scores = {n: torch.zeros(p.shape) for n, p in lm.model.named_parameters()}
    scores[name].view(-1)[flat] = 5.0
    scores["model.embed_tokens.weight"][0, :3] = torch.tensor([9.0, 5.0, 7.0])
    ranked = rank_under_metrics(result, {"m": scores, "partial": {"lm_head.weight": torch.ones(3)}})
    entry = ranked["candidates"][0]
    assert entry["ranks"]["m"]["rank"] == 3  # 9 and 7 are strictly larger, the tie at 5 is not
    assert entry["ranks"]["m"]["n_scored"] == sum(t.numel() for t in scores.values())
    assert entry["ranks"]["partial"]["rank"] is None


def test_control_draws_are_distinct_large_enough_and_never_candidates(tiny):
    from esa.analysis.superweights import _magnitude_draws, _random_draws

    lm = tiny("tiny-llama")
    named = dict(lm.model.named_parameters())
    params = [p.param for p in find_output_projections(lm)]
    flat = torch.cat([named[p].detach().reshape(-1).abs() for p in params])
    third = float(flat.sort(descending=True).values[2])  # exactly 3 weights are at least this large
    pool = {(p, f) for p in params for f in (named[p].detach().reshape(-1).abs() >= third).nonzero().squeeze(1).tolist()}
    assert len(pool) == 3
    excluded = {sorted(pool)[0]}
    g = torch.Generator().manual_seed(0)
    assert set(_magnitude_draws(named, params, third, 5, excluded, g)) == pool - excluded  # all there are
    median = float(flat.median())
    draws = _magnitude_draws(named, params, median, 50, excluded, g)
    assert len(set(draws)) == 50 and not set(draws) & excluded
    assert all(abs(float(named[p].detach().reshape(-1)[f])) >= median for p, f in draws)
    random = _random_draws(named, params, 20, excluded, g)
    assert len(set(random)) == 20 and not set(random) & excluded


def test_finds_a_planted_super_weight_in_a_transposed_conv1d_projection():
    """GPT-2 stores c_proj as Conv1D [in, out]: the Hugging Face index of the weight is [col_in, row_out]."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from esa.models.tiny import byte_tokenizer

    config = AutoConfig.for_model("gpt2", n_embd=32, n_layer=2, n_head=4, vocab_size=259, n_positions=256,
                                  bos_token_id=256, eos_token_id=257)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
    lm = LoadedModel(model, byte_tokenizer(), "tiny-gpt2", "test", "gpt2", 0, 2, describe_parameters(model),
                     torch.float32, torch.device("cpu"), 256)
    mlp = model.transformer.h[0].mlp
    assert tuple(mlp.c_proj.weight.shape) == (128, 32)
    with torch.no_grad():
        mlp.c_fc.bias[COL] = 1e3  # input channel COL of c_proj fires at every token: gelu(u + 1000)
        mlp.c_proj.weight[COL, ROW] = 100.0
    result = detect_superweights(lm, None)
    assert _found(result) == [("transformer.h.0.mlp.c_proj.weight", f"{COL},{ROW}")]
    cand = result.candidates[0]
    assert (cand["input_channel"], cand["output_channel"], cand["row"], cand["col"]) == (COL, ROW, COL, ROW)
    assert cand["flat_index"] == COL * 32 + ROW
