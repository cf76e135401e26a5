"""Saved models load with plain transformers and give the in-memory quantized model's perplexity."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import esa
from esa.artifacts.schema import PRECISION_PLAN
from esa.errors import EsaError
from esa.quantize.export import save_gguf, save_hf


@pytest.mark.parametrize("bits,symmetric", [(8, True), (4, True), (4, False)])
def test_gguf_round_trip(llama, llama_windows, tmp_path, bits, symmetric):
    result = esa.quantize(llama, llama_windows, bits=bits, group_size=32, symmetric=symmetric, keep_quantized=True)
    try:
        path = save_gguf(llama, result, tmp_path / "model.gguf")
    finally:
        result.restore()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    ppl = esa.evaluate(loaded, llama_windows, "eval", 4).ppl
    assert abs(ppl / result.ppl - 1) < 1e-3
    unquantized = esa.evaluate(llama.model, llama_windows, "eval", 4).ppl
    assert ppl != unquantized  # the file holds the quantized weights, not the originals


def test_hf_directory_with_plan_and_kept_weights(llama, llama_windows, tmp_path):
    result = esa.quantize(llama, llama_windows, bits=None, group_size=16, budget_bits=4.25, allocate_by="magnitude",
                          keep_topk=4, keep_metric="magnitude", keep_quantized=True)
    try:
        save_hf(llama, result, tmp_path / "hf")
        with pytest.raises(EsaError, match="uniform bits"):
            save_gguf(llama, result, tmp_path / "mixed.gguf")
    finally:
        result.restore()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert esa.evaluate(loaded, llama_windows, "eval", 4).ppl == result.ppl
    plan = json.loads((tmp_path / "hf" / PRECISION_PLAN).read_text())
    assert plan["tensors"] == result.plan and len(plan["kept"]) == 4
    named = dict(loaded.named_parameters())
    for row in plan["kept"]:
        assert float(named[row["param"]].detach().reshape(-1)[row["flat_index"]]) == row["value"]


def test_saving_needs_the_model_still_quantized(llama, llama_windows, tmp_path):
    result = esa.quantize(llama, llama_windows, bits=4, group_size=32)
    with pytest.raises(EsaError, match="keep_quantized"):
        save_hf(llama, result, tmp_path / "hf")
