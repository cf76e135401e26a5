"""describe_parameters against each family's known structure, counted from the config."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from esa.models import COMPONENTS, describe_parameters, find_decoder_blocks, is_tied
from esa.models.tiny import TINY_CONFIGS, build_tiny_model

DENSE_ROLES = {
    "tiny-llama": {"attention": ["q", "k", "v", "o"], "mlp": ["gate", "up", "down"]},
    "tiny-mistral": {"attention": ["q", "k", "v", "o"], "mlp": ["gate", "up", "down"]},
    "tiny-phi3": {"attention": ["o", "qkv"], "mlp": ["gate_up", "down"]},
    "tiny-gptneox": {"attention": ["qkv", "qkv", "o", "o"], "mlp": ["up", "up", "down", "down"]},  # + biases
    "tiny-mixtral": {"attention": ["q", "k", "v", "o"], "router": ["router"], "expert": ["gate_up", "down"]},
}


def tiny_gemma3() -> nn.Module:
    config = AutoConfig.for_model(
        "gemma3_text", vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def tiny_gpt2() -> nn.Module:
    """GPT-2: blocks under `transformer.h`, Conv1D projections stored [in, out], tied embeddings."""
    config = AutoConfig.for_model(
        "gpt2", vocab_size=259, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


class ToyAttention(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(h, h, bias=False) for _ in range(4))


class ToyExpert(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.w1, self.w3, self.w2 = nn.Linear(h, 2 * h, bias=False), nn.Linear(h, 2 * h, bias=False), nn.Linear(2 * h, h, bias=False)


class ToySparseBlock(nn.Module):
    """Older transformers' Mixtral layout: a Linear router and one module per expert."""

    def __init__(self, h: int, n_experts: int) -> None:
        super().__init__()
        self.gate = nn.Linear(h, n_experts, bias=False)
        self.experts = nn.ModuleList(ToyExpert(h) for _ in range(n_experts))


class ToyRMSNorm(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(h))


class ToyBlock(nn.Module):
    def __init__(self, h: int, n_experts: int) -> None:
        super().__init__()
        self.attention_norm = ToyRMSNorm(h)
        self.mixer = ToyAttention(h)
        self.ffn_norm = ToyRMSNorm(h)
        self.feed = ToySparseBlock(h, n_experts)


class ToyMoeLM(nn.Module):
    """Unusual attribute names throughout: the layout must come from structure, not from names."""

    def __init__(self, h: int = 8, n_layers: int = 3, n_experts: int = 4, vocab: int = 11) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, h)
        self.stack = nn.ModuleList(ToyBlock(h, n_experts) for _ in range(n_layers))
        self.final = nn.LayerNorm(h)
        self.head = nn.Linear(h, vocab, bias=False)

    def get_input_embeddings(self) -> nn.Module:
        return self.tok

    def get_output_embeddings(self) -> nn.Module:
        return self.head


ALL_MODELS = {**{name: lambda name=name: build_tiny_model(name) for name in TINY_CONFIGS},
              "tiny-gemma3": tiny_gemma3, "tiny-gpt2": tiny_gpt2, "toy-moe": ToyMoeLM}


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_every_parameter_described_in_order(name: str) -> None:
    model = ALL_MODELS[name]()
    infos = describe_parameters(model)
    named = list(model.named_parameters())
    assert list(infos) == [n for n, _ in named]
    for (n, p), info in zip(named, infos.values()):
        assert info.name == n and info.shape == tuple(p.shape)
        assert info.component in COMPONENTS and info.component != "other", n
        assert info.role, n


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_linear_flags_match_modules(name: str) -> None:
    """Brute force: `linear` exactly for Linear/Conv1D weights and routers, with the module's input size."""
    from transformers.pytorch_utils import Conv1D

    model = ALL_MODELS[name]()
    infos = describe_parameters(model)
    for n, info in infos.items():
        path, _, attr = n.rpartition(".")
        owner = model.get_submodule(path)
        if attr == "weight" and isinstance(owner, nn.Linear) and info.component != "embedding":
            assert info.linear and info.in_features == owner.in_features, n
        elif attr == "weight" and isinstance(owner, Conv1D):
            assert info.linear and info.in_features == owner.weight.shape[0], n
        elif info.component == "router" and attr == "weight":
            assert info.linear and info.in_features == info.shape[1], n
        else:
            assert not info.linear and info.in_features is None, n


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_tiny_family_counts_match_config(name: str) -> None:
    model = build_tiny_model(name)
    cfg = model.config
    infos = describe_parameters(model)
    layers = Counter(i.layer for i in infos.values())
    assert set(layers) == {None, *range(cfg.num_hidden_layers)}
    assert len({layers[i] for i in range(cfg.num_hidden_layers)}) == 1  # every block described alike
    for layer in range(cfg.num_hidden_layers):
        block = [i for i in infos.values() if i.layer == layer]
        for component, roles in DENSE_ROLES[name].items():
            assert sorted(i.role for i in block if i.component == component) == sorted(roles), (layer, component)
        norms = [i for i in block if i.component == "norm"]
        assert {i.role for i in norms} == {"input_norm", "post_attention_norm"}
    outside = Counter((i.component, i.role) for i in infos.values() if i.layer is None)
    n_final_norm = 2 if name == "tiny-gptneox" else 1  # LayerNorm weight + bias
    assert outside == {("embedding", "embed"): 1, ("norm", "final_norm"): n_final_norm, ("lm_head", "lm_head"): 1}


def test_mixtral_router_and_fused_experts() -> None:
    model = build_tiny_model("tiny-mixtral")
    cfg = model.config
    infos = describe_parameters(model)
    routers = [i for i in infos.values() if i.component == "router"]
    experts = [i for i in infos.values() if i.component == "expert"]
    assert len(routers) == cfg.num_hidden_layers
    assert all(r.shape == (cfg.num_local_experts, cfg.hidden_size) for r in routers)
    assert len(experts) == 2 * cfg.num_hidden_layers
    for e in experts:
        assert e.shape[0] == cfg.num_local_experts and e.expert_axis == 0 and e.expert is None
    gate_up = infos["model.layers.0.mlp.experts.gate_up_proj"]
    assert gate_up.shape == (cfg.num_local_experts, 2 * cfg.intermediate_size, cfg.hidden_size)


def test_separate_expert_modules_get_indices() -> None:
    model = ToyMoeLM(n_layers=3, n_experts=4)
    infos = describe_parameters(model)
    assert find_decoder_blocks(model)[0] == "stack"
    info = infos["stack.2.feed.experts.3.w2.weight"]
    assert (info.layer, info.component, info.role, info.expert, info.expert_axis) == (2, "expert", "down", 3, None)
    assert info.linear and info.in_features == 16
    assert infos["stack.0.feed.gate.weight"].component == "router"
    assert infos["stack.1.mixer.wo.weight"].role == "o"
    assert infos["stack.1.attention_norm.weight"].role == "input_norm"
    assert Counter(i.expert for i in infos.values() if i.component == "expert") == {e: 3 * 3 for e in range(4)}
    assert (infos["final.weight"].component, infos["final.weight"].role) == ("norm", "final_norm")
    assert infos["head.weight"].component == "lm_head"


def test_gemma3_tied_embeddings_and_qk_norms() -> None:
    model = tiny_gemma3()
    infos = describe_parameters(model)
    assert is_tied(model)
    assert "lm_head.weight" not in infos
    emb = infos["model.embed_tokens.weight"]
    assert (emb.component, emb.role, emb.linear) == ("embedding", "embed+lm_head", False)
    roles = Counter((i.component, i.role) for i in infos.values() if i.layer == 1)
    assert roles == {
        **{("attention", r): 1 for r in "qkvo"},
        **{("mlp", r): 1 for r in ("gate", "up", "down")},
        **{("norm", r): 1 for r in ("q_norm", "k_norm", "input_norm", "post_attention_norm", "pre_mlp_norm", "post_mlp_norm")},
    }
    assert len({i.layer for i in infos.values()} - {None}) == model.config.num_hidden_layers


def test_gpt2_blocks_found_by_structure() -> None:
    model = tiny_gpt2()
    infos = describe_parameters(model)
    assert find_decoder_blocks(model)[0] == "transformer.h"
    assert infos["transformer.h.1.attn.c_proj.weight"].role == "o"
    assert infos["transformer.h.1.mlp.c_proj.weight"].role == "down"
    assert infos["transformer.wpe.weight"].component == "embedding"
    assert infos["transformer.wte.weight"].role == "embed+lm_head"


def test_untied_models_report_untied() -> None:
    assert not is_tied(build_tiny_model("tiny-llama"))
