import pytest
import torch
from torch import nn

from esa.analysis.activations import activation_pass
from esa.analysis.projections import attach_recorders, find_output_projections
from esa.errors import EsaError
from esa.models import LoadedModel, describe_parameters
from esa.models.tiny import TINY_CONFIGS

EXPECTED = {
    "tiny-llama": ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"],
    "tiny-mistral": ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"],
    "tiny-phi3": ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"],
    "tiny-gptneox": ["gpt_neox.layers.0.mlp.dense_4h_to_h.weight", "gpt_neox.layers.1.mlp.dense_4h_to_h.weight"],
}


@pytest.mark.parametrize("family", tuple(TINY_CONFIGS))
def test_finds_every_mlp_output_projection(tiny, family):
    projections = find_output_projections(tiny(family))
    if family == "tiny-mixtral":
        # 2 layers x 4 experts, one projection per expert of the fused [E, hidden, ffn] tensor
        assert [(p.param, p.layer, p.expert) for p in projections] == [
            (f"model.layers.{layer}.mlp.experts.down_proj", layer, e) for layer in (0, 1) for e in range(4)
        ]
        assert all(p.fused and not p.transposed for p in projections)
    else:
        assert [p.param for p in projections] == EXPECTED[family]
        assert [p.layer for p in projections] == [0, 1]
        assert all(not p.fused and not p.transposed and p.expert is None for p in projections)


def test_model_without_mlp_projection_is_a_user_error():
    toy = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    lm = LoadedModel(toy, None, "toy", "test", "toy", 90, 0, describe_parameters(toy), torch.float32,
                     torch.device("cpu"), None)
    with pytest.raises(EsaError, match="found no MLP output projection in toy"):
        find_output_projections(lm)


def test_index_order_follows_storage():
    from esa.analysis.projections import OutputProjection

    dense = OutputProjection("w", "m", 0, None, fused=False, transposed=False)
    conv1d = OutputProjection("w", "m", 0, None, fused=False, transposed=True)
    fused = OutputProjection("w", "m", 0, 3, fused=True, transposed=False)
    assert dense.index(out_channel=5, in_channel=40) == (5, 40)
    assert conv1d.index(out_channel=5, in_channel=40) == (40, 5)
    assert fused.index(out_channel=5, in_channel=40) == (3, 5, 40)
    weight = torch.arange(4 * 6 * 8.0).reshape(4, 6, 8)
    assert fused.matrix(weight)[5, 7] == weight[3, 5, 7]
    assert conv1d.matrix(weight[0])[7, 5] == weight[0, 5, 7]


def _dense_reference(lm, x_ids):
    """Brute force: each expert's down-projection input/output from an explicit per-token loop."""
    model = lm.model
    captured = {}
    for layer, block in enumerate(model.model.layers):
        block.mlp.register_forward_pre_hook(lambda m, a, layer=layer: captured.__setitem__(layer, a[0].detach()))
    with torch.no_grad():
        model(input_ids=x_ids, use_cache=False)
    out = {}
    for layer, block in enumerate(model.model.layers):
        moe = block.mlp
        hidden = captured[layer].reshape(-1, captured[layer].shape[-1])
        _, _, top = moe.gate(hidden)
        ex = moe.experts
        for t in range(hidden.shape[0]):
            for e in top[t].tolist():
                gate = hidden[t] @ ex.gate_up_proj[e, : ex.intermediate_dim].T
                up = hidden[t] @ ex.gate_up_proj[e, ex.intermediate_dim :].T
                h = torch.nn.functional.silu(gate) * up
                out[(layer, e, t)] = (h, h @ ex.down_proj[e].T)
    return out


@pytest.mark.parametrize("implementation", ["eager", "batched_mm", "grouped_mm"])
def test_fused_expert_activations_match_a_per_token_loop(tiny, implementation):
    lm = tiny("tiny-mixtral")
    lm.model.set_experts_implementation(implementation)
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    seen = {}

    def sink(proj, x, y, rows):
        for i, t in enumerate(rows.tolist()):
            seen[(proj.layer, proj.expert, t)] = (x[i].clone(), y[i].clone())

    handles = attach_recorders(lm.model, find_output_projections(lm), sink)
    with torch.no_grad():
        lm.model(input_ids=ids, use_cache=False)
    for h in handles:
        h.remove()
    reference = _dense_reference(lm, ids)
    assert seen.keys() == reference.keys()
    for key, (x, y) in reference.items():
        torch.testing.assert_close(seen[key][0], x, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(seen[key][1], y, rtol=1e-5, atol=1e-6)


def test_fused_experts_that_compute_something_else_fail_loudly(tiny):
    lm = tiny("tiny-mixtral")
    lm.model.set_experts_implementation("eager")  # the eager loop gates inline, without _apply_gate
    experts = lm.model.model.layers[0].mlp.experts
    experts._apply_gate = lambda gate_up: gate_up[..., : gate_up.shape[-1] // 2]  # not what forward computes
    with pytest.raises(EsaError, match="cannot read per-expert activations of MixtralExperts"):
        activation_pass(lm.model, find_output_projections(lm), [torch.zeros(1, 4, dtype=torch.long)])
