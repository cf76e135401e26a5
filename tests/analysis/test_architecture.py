import json

import pytest
import torch

from esa.analysis import architecture_analysis
from esa.ranking import WeightSet

L0, L1 = "model.layers.0", "model.layers.1"
PLACED = {  # name -> score of its element 0 (every other score is 0)
    "model.embed_tokens.weight": 1.0,
    f"{L0}.self_attn.q_proj.weight": 2.0,
    f"{L0}.mlp.down_proj.weight": 3.0,
    f"{L1}.self_attn.o_proj.weight": 4.0,
    f"{L1}.mlp.up_proj.weight": 5.0,
    "model.norm.weight": 5.0,
}


def _weight_set(params, picks):
    names = tuple(params)
    return WeightSet(names, torch.tensor([names.index(n) for n, _ in picks]), torch.tensor([f for _, f in picks]),
                     torch.ones(len(picks)))


def test_dense_breakdown_by_hand(tiny):
    lm = tiny("tiny-llama")
    scores = {n: torch.zeros(p.shape) for n, p in lm.params.items()}
    for name, value in PLACED.items():
        scores[name].view(-1)[0] = value
    top = [(f"{L1}.mlp.up_proj.weight", 0), ("model.norm.weight", 0), (f"{L1}.self_attn.o_proj.weight", 0)]
    out = architecture_analysis(scores, _weight_set(lm.params, top), lm.params, lm.n_layers)
    json.dumps(out, allow_nan=False)
    assert out["total_mass"] == 20.0 and out["k"] == 3
    comp = out["by_component"]
    assert (comp["attention"]["mass"], comp["attention"]["mass_share"], comp["attention"]["topk"]) == (6.0, 0.3, 1)
    assert (comp["mlp"]["mass"], comp["mlp"]["topk_share"]) == (8.0, pytest.approx(1 / 3))
    assert comp["embedding"]["weight_share"] == pytest.approx(259 * 32 / sum(p.numel for p in lm.params.values()))
    assert {k: v["mass"] for k, v in out["by_role"].items() if v["mass"]} == {
        "embedding/embed": 1.0, "attention/q": 2.0, "mlp/down": 3.0, "attention/o": 4.0, "mlp/up": 5.0,
        "norm/final_norm": 5.0}
    assert [(r["layer"], r["depth"], r["mass"], r["topk"]) for r in out["by_layer"]] == [(0, 0.0, 5.0, 0), (1, 1.0, 9.0, 2)]
    bins = {b["bin"]: b for b in out["by_depth_bin"]}
    assert (bins[0]["layers"], bins[0]["mass"], bins[9]["layers"], bins[9]["topk"]) == ([0], 5.0, [1], 2)
    assert sum(b["mass"] for b in out["by_depth_bin"]) == 14.0
    assert (out["outside_blocks"]["mass"], out["outside_blocks"]["topk"]) == (6.0, 1)
    avm = out["attention_vs_mlp"]
    assert (avm["mass_ratio"], avm["topk_ratio"]) == (0.75, 1.0)
    early = out["early_layers"]["first_10pct"]
    assert (early["layers"], early["mass_share_of_blocks"], early["topk_share_of_blocks"]) == ([0], 5 / 14, 0.0)
    assert "moe" not in out


def test_depth_bins_for_a_deeper_model():
    from esa.analysis.architecture import _depth_bin, _Groups

    groups = _Groups(total=1.0, k=1, n_weights=1)
    bins = [_depth_bin(b, 30, groups)["layers"] for b in range(10)]
    assert bins[0] == [0, 1, 2] and bins[9] == [27, 28, 29] and sum(map(len, bins)) == 30


def test_moe_breakdown(tiny):
    lm = tiny("tiny-mixtral")
    scores = {n: torch.ones(p.shape) for n, p in lm.params.items()}
    down = f"{L0}.mlp.experts.down_proj"  # [4 experts, 32, 64]
    out = architecture_analysis(scores, _weight_set(lm.params, [(down, 2 * 32 * 64 + 5)]), lm.params, lm.n_layers)
    json.dumps(out, allow_nan=False)
    moe = out["moe"]
    cells = {(c["layer"], c["expert"]): c for c in moe["per_layer_expert"]}
    assert sorted(cells) == [(layer, e) for layer in (0, 1) for e in range(4)]
    assert all(c["mass"] == 128 * 32 + 32 * 64 for c in cells.values())  # gate_up [128, 32] + down [32, 64]
    assert [c["topk"] for c in moe["per_layer_expert"]] == [0, 0, 1, 0, 0, 0, 0, 0]
    assert [(e["expert"], e["topk"]) for e in moe["per_expert"]] == [(0, 0), (1, 0), (2, 1), (3, 0)]
    assert moe["router"]["mass"] == 2 * 4 * 32
    assert moe["expert_mass_max_over_mean"] == 1.0
    assert out["attention_vs_mlp"]["mlp_topk"] == 1


def test_experts_as_separate_modules():
    from esa.models.types import ParamInfo

    params = {
        f"l0.e{e}.down": ParamInfo(f"l0.e{e}.down", (2, 3), 0, "expert", "down", expert=e, linear=True, in_features=3)
        for e in range(2)
    }
    params["l0.gate"] = ParamInfo("l0.gate", (2, 3), 0, "router", "router", linear=True, in_features=3)
    scores = {"l0.e0.down": torch.full((2, 3), 1.0), "l0.e1.down": torch.full((2, 3), 3.0), "l0.gate": torch.ones(2, 3)}
    out = architecture_analysis(scores, _weight_set(params, [("l0.e1.down", 4), ("l0.gate", 0)]), params, 1)
    moe = out["moe"]
    assert [(c["layer"], c["expert"], c["mass"], c["topk"]) for c in moe["per_layer_expert"]] == [
        (0, 0, 6.0, 0), (0, 1, 18.0, 1)]
    assert (moe["router"]["mass"], moe["router"]["topk"]) == (6.0, 1)
    assert moe["expert_mass_max_over_mean"] == 18.0 / 12.0
    assert out["by_depth_bin"][0]["layers"] == [0] and out["by_layer"][0]["depth"] == 0.0
