"""esa.quantize: the model comes back bit for bit, results repeat, every family's linear layers are
found, and bad input is one EsaError before any work."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import esa
import esa.quantize.core as core
from esa.errors import EsaError
from esa.models import LoadedModel, describe_parameters, load_model
from esa.quantize import find_targets, rtn

from .conftest import snapshot, unchanged, windows_for


@pytest.mark.parametrize("kwargs", [
    {"bits": 3, "group_size": 16},
    {"bits": 4, "group_size": 0, "method": "gptq", "act_order": True, "keep_topk": 7, "keep_metric": "magnitude"},
    {"bits": None, "group_size": 32, "budget_bits": 4.25, "allocate_by": "grad_squared", "method": "gptq"},
])
def test_model_restored_bit_exactly_and_results_repeat(llama, llama_windows, kwargs):
    before = snapshot(llama)
    baseline = esa.evaluate(llama.model, llama_windows, "eval", 4)
    first = esa.quantize(llama, llama_windows, seed=3, **kwargs)
    assert unchanged(llama, before)
    second = esa.quantize(llama, llama_windows, seed=3, **kwargs)
    assert first.row() | {"seconds": 0} == second.row() | {"seconds": 0} and first.plan == second.plan
    assert first.eval.window_nll == second.eval.window_nll != baseline.window_nll


def test_gptq_beats_rtn_at_two_bits_per_channel(llama, llama_windows):
    r = esa.quantize(llama, llama_windows, bits=2, group_size=0)
    g = esa.quantize(llama, llama_windows, bits=2, group_size=0, method="gptq")
    assert g.eval.mean_nll < r.eval.mean_nll
    assert {k for k in g.seconds if k.startswith("layer.")} == {"layer.0", "layer.1"}


def test_moe_experts_are_targets_and_the_model_is_restored():
    lm = load_model("tiny-mixtral")
    targets = find_targets(lm)
    assert any(t.info.component == "expert" for t in targets)
    assert not any(t.info.component == "router" for t in targets)
    before = snapshot(lm)
    r = esa.quantize(lm, windows_for(lm), bits=4, group_size=16, method="gptq")
    assert unchanged(lm, before) and len(r.plan) == len(targets)


def test_gpt2_conv1d_is_quantized_along_its_input_axis():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=259, n_positions=64, n_embd=32, n_layer=1, n_head=2)).eval()
    lm = LoadedModel(model, load_model("tiny-llama").tokenizer, "gpt2-tiny", "code", "gpt2",
                     sum(p.numel() for p in model.parameters()), 1, describe_parameters(model), torch.float32,
                     torch.device("cpu"), 64)
    c_fc = next(t for t in find_targets(lm) if t.name.endswith("mlp.c_fc.weight"))
    assert c_fc.transposed and c_fc.in_features == 32 and c_fc.info.shape == (32, 128)
    original = c_fc.param.detach().clone()
    r = esa.quantize(lm, windows_for(lm), bits=3, group_size=16, keep_quantized=True)
    try:
        assert torch.equal(c_fc.param.detach(), rtn(original.T, 3, 16, False).dequantized.T)
    finally:
        r.restore()
    assert torch.equal(c_fc.param.detach(), original)


@pytest.mark.parametrize("kwargs,message", [
    ({"bits": 7, "group_size": 16}, "--bits 7 is not supported"),
    ({"bits": 4, "group_size": 24}, "does not divide the input size"),
    ({"bits": None, "group_size": 16, "budget_bits": 1.5, "allocate_by": "magnitude"}, "below the smallest width"),
    ({"bits": None, "group_size": 0, "budget_bits": 2.01, "allocate_by": "magnitude"}, "below the smallest width"),
    ({"bits": 4, "group_size": 16, "keep_topk": 10**9, "keep_metric": "magnitude"}, "cannot keep"),
    ({"bits": 4, "group_size": 16, "keep_topk": 5}, "need --keep-metric"),
    ({"bits": 4, "group_size": 16, "keep_topk": 5, "keep_metric": "nope"}, "unknown metric"),
    ({"bits": 4, "group_size": 16, "method": "awq"}, "unknown quantization method"),
    ({"bits": 4, "group_size": 16, "budget_bits": 4.0, "allocate_by": "magnitude"}, "not both"),
])
def test_bad_input_raises_before_any_work(llama, llama_windows, monkeypatch, kwargs, message):
    def no_work(*_a, **_k):
        raise AssertionError("work started before the input was checked")

    for name in ("metric_scores", "superweights", "_quantize_all", "evaluate"):
        monkeypatch.setattr(core, name, no_work)
    before = snapshot(llama)
    with pytest.raises(EsaError, match=message):
        esa.quantize(llama, llama_windows, **kwargs)
    assert unchanged(llama, before)
