"""The activation formulas against a brute-force count: the bytes autograd actually saves, via saved-tensor hooks."""

from __future__ import annotations

import pytest
import torch

from esa.evaluation.nll import next_token_nll
from esa.scale import model_facts
from esa.scale.memory import (
    DTYPE_BYTES, Settings, device_memory, final_norm_bytes, layer_activation_bytes, layer_split,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def saved_bytes(model: torch.nn.Module, input_ids: torch.Tensor) -> int:
    """Bytes of distinct storages autograd keeps for backward after the loss, weights excluded."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        nll, _ = next_token_nll(model, input_ids)
        nll.mean()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in weights)


def measured_layer_and_rest(helpers, family: str, dtype: str, batch: int, seq_len: int, **overrides) -> tuple[int, int]:
    """(bytes one decoder layer saves, bytes saved outside the layers): models of 2 and 1 layers differ by a layer."""
    ids = helpers.ids(512, batch, seq_len)
    one, two = (
        saved_bytes(helpers.build(helpers.small_config(family, num_hidden_layers=n, **overrides), DTYPES[dtype]), ids)
        for n in (1, 2)
    )
    return two - one, 2 * one - two


@pytest.mark.parametrize("family", ["llama-gqa", "llama-mha", "phi3", "gpt_neox", "mixtral"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_layer_formula_matches_saved_tensors(helpers, tmp_path, family: str, dtype: str) -> None:
    batch, seq_len = 2, 32
    layer, _ = measured_layer_and_rest(helpers, family, dtype, batch, seq_len)
    facts = model_facts(helpers.save_config(helpers.small_config(family), tmp_path / family))
    predicted = layer_activation_bytes(facts, DTYPE_BYTES[dtype], batch * seq_len, seq_len, math_attention=False)
    # exact but for GPT-NeoX's LayerNorm statistics, which CPU keeps in the model dtype (the formula: float32)
    assert predicted == pytest.approx(layer, rel=0.01)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_eager_attention_adds_the_s_squared_term(helpers, tmp_path, dtype: str) -> None:
    for seq_len in (16, 48):
        layer, _ = measured_layer_and_rest(helpers, "llama-gqa", dtype, 2, seq_len, attn_implementation="eager")
        facts = model_facts(helpers.save_config(helpers.small_config("llama-gqa"), tmp_path / f"eager{seq_len}"))
        assert layer_activation_bytes(facts, DTYPE_BYTES[dtype], 2 * seq_len, seq_len, math_attention=True) == layer


def test_loss_head_keeps_final_norm_and_float32_logprobs(helpers, tmp_path) -> None:
    batch, seq_len = 2, 32
    _, rest = measured_layer_and_rest(helpers, "llama-gqa", "fp32", batch, seq_len)
    facts = model_facts(helpers.save_config(helpers.small_config("llama-gqa"), tmp_path / "head"))
    predicted = final_norm_bytes(facts, 4, batch * seq_len) + 4 * facts.vocab * batch * (seq_len - 1)
    rotary_tables = 2 * seq_len * facts.head_dim * 4  # cos and sin, shared by all layers; too small to plan for
    assert predicted + rotary_tables == pytest.approx(rest, abs=16)


def test_layer_split_is_even_and_contiguous() -> None:
    assert layer_split(30, 4) == [(0, 8), (8, 16), (16, 23), (23, 30)]
    assert layer_split(4, 1) == [(0, 4)]


def test_devices_share_weights_and_only_the_head_device_holds_logits(tmp_path, helpers) -> None:
    facts = model_facts(helpers.save_config(helpers.small_config("llama-gqa", num_hidden_layers=4), tmp_path / "m"))
    one = device_memory(facts, Settings("grad_x_weight", "bf16", 64, 2))
    four = device_memory(facts, Settings("grad_x_weight", "bf16", 64, 2, n_gpus=4))
    assert sum(d.weights for d in four) == one[0].weights == facts.n_params * 2
    assert sum(d.accumulators for d in four) == one[0].accumulators == facts.n_params * 4
    assert [("forward_loss" in d.phases) for d in four] == [False, False, False, True]
    assert max(d.allocated for d in four) < one[0].allocated


def test_checkpointing_and_cpu_accumulators_lower_the_device_peak(tmp_path, helpers) -> None:
    facts = model_facts(helpers.save_config(helpers.small_config("llama-gqa", num_hidden_layers=8), tmp_path / "m"))
    base = Settings("grad_x_weight", "fp32", 256, 4)
    peak = device_memory(facts, base)[0].allocated
    ckpt = device_memory(facts, Settings("grad_x_weight", "fp32", 256, 4, checkpointing=True))[0]
    cpu = device_memory(facts, Settings("grad_x_weight", "fp32", 256, 4, accumulate_on="cpu"))[0]
    assert ckpt.allocated < peak and cpu.allocated < peak
    assert cpu.accumulators == 0
