"""act_mag against |W| · ‖X‖₂ computed from inputs captured by independent hooks."""

from __future__ import annotations

import torch

from esa.metrics import get_metric
from esa.models.tiny import build_tiny_model


def captured_input_norms(model: torch.nn.Module, ids: torch.Tensor, modules: dict[str, torch.nn.Module]) -> dict:
    """Float64 L2 norm per input feature over every token, from a one-batch forward with the inputs kept."""
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    handles = [
        m.register_forward_hook(lambda mod, args, out, n=n: seen[n].append(args[0].detach().double()))
        for n, m in modules.items()
    ]
    with torch.no_grad():
        model(input_ids=ids)
    for h in handles:
        h.remove()
    return {n: torch.cat([x.reshape(-1, x.shape[-1]) for x in xs]).norm(dim=0) for n, xs in seen.items()}


def weight_owners(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def test_matches_wanda_formula(make_ctx) -> None:
    model = build_tiny_model("tiny-gptneox")
    ctx = make_ctx(model, batch_size=3)
    result = get_metric("act_mag")(ctx)
    owners = weight_owners(model)
    norms = captured_input_norms(model, torch.cat(list(ctx.batches())), owners)
    named = dict(model.named_parameters())
    assert set(result.scores) == set(owners)
    for name, norm in norms.items():
        expected = (named[name].detach().double().abs() * norm).float()
        torch.testing.assert_close(result.scores[name], expected, rtol=1e-5, atol=1e-7)
    unscored = len(ctx.params) - len(owners)  # embedding, norms and biases
    assert result.notes == [
        f"act_mag scores linear weights only; {unscored} of {len(ctx.params)} tensors were not scored "
        "(norm: 10, attention: 4, mlp: 4, embedding: 1)"
    ]


def test_router_is_scored_and_fused_experts_are_not(make_ctx) -> None:
    model = build_tiny_model("tiny-mixtral")
    ctx = make_ctx(model)
    result = get_metric("act_mag")(ctx)
    router = "model.layers.1.mlp.gate.weight"
    norm = captured_input_norms(model, torch.cat(list(ctx.batches())), {router: model.model.layers[1].mlp.gate})[router]
    expected = (model.get_parameter(router).detach().double().abs() * norm).float()
    torch.testing.assert_close(result.scores[router], expected)
    assert not any("experts" in n for n in result.scores)
    assert "expert: 4" in result.notes[0] and "norm: 5" in result.notes[0] and "embedding: 1" in result.notes[0]


def test_tied_embedding_counts_with_lm_head_inputs(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    model.lm_head.weight = model.model.embed_tokens.weight
    ctx = make_ctx(model)
    assert "lm_head.weight" not in ctx.params
    result = get_metric("act_mag")(ctx)
    name = "model.embed_tokens.weight"
    norm = captured_input_norms(model, torch.cat(list(ctx.batches())), {name: model.lm_head})[name]
    torch.testing.assert_close(result.scores[name], (model.get_parameter(name).detach().double().abs() * norm).float())


def test_weight_shared_by_two_linears_sums_squared_norms(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    shared = model.model.layers[0].mlp.up_proj
    model.model.layers[1].mlp.up_proj.weight = shared.weight
    ctx = make_ctx(model)
    result = get_metric("act_mag")(ctx)
    name = "model.layers.0.mlp.up_proj.weight"
    users = {"a": shared, "b": model.model.layers[1].mlp.up_proj}
    norms = captured_input_norms(model, torch.cat(list(ctx.batches())), users)
    norm = (norms["a"] ** 2 + norms["b"] ** 2).sqrt()
    torch.testing.assert_close(result.scores[name], (shared.weight.detach().double().abs() * norm).float())
    assert any("applied by several linear modules" in note and name in note for note in result.notes)


def test_conv1d_weights_are_transposed(make_ctx) -> None:
    """GPT-2-style Conv1D stores [in, out]: the input norm scales rows, not columns."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    config = AutoConfig.for_model("gpt2", vocab_size=259, n_positions=64, n_embd=32, n_layer=1, n_head=4)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
    ctx = make_ctx(model)
    result = get_metric("act_mag")(ctx)
    owners = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, Conv1D)}
    norms = captured_input_norms(model, torch.cat(list(ctx.batches())), owners)
    for name, norm in norms.items():
        weight = model.get_parameter(name).detach().double().abs()
        torch.testing.assert_close(result.scores[name], (weight * norm[:, None]).float(), rtol=1e-5, atol=1e-7)
    assert "transformer.wte.weight" in result.scores  # tied to lm_head, scored with the lm_head's inputs
