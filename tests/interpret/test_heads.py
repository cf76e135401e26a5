import math

import pytest
import torch
from scipy import stats

from esa.interpret.heads import head_geometry, head_mass, spearman


def _zeros(lm):
    return {n: torch.zeros(i.shape) for n, i in lm.params.items()}


def test_geometry_from_config(planted):
    assert head_geometry(planted) == (4, 8, 2)


def test_head_mass_brute_force(planted):
    """q rows and o columns belong to one head; k/v rows to a kv head, split over the heads sharing it."""
    scores = _zeros(planted)
    scores["model.layers.1.self_attn.q_proj.weight"][2 * 8 + 5, 11] = 3.0  # head 2
    scores["model.layers.0.self_attn.o_proj.weight"][4, 1 * 8 + 0] = 2.0  # head 1 (columns)
    scores["model.layers.1.self_attn.k_proj.weight"][1 * 8 + 2, 0] = 4.0  # kv head 1 -> heads 2, 3
    scores["model.layers.0.mlp.down_proj.weight"][0, 0] = 100.0  # not attention: ignored
    mass, notes = head_mass(planted, scores)
    expected = torch.zeros(2, 4, dtype=torch.float64)
    expected[1, 2] += 3.0
    expected[0, 1] += 2.0
    expected[1, 2] += 2.0
    expected[1, 3] += 2.0
    assert torch.equal(mass, expected) and notes == []


def test_head_mass_conserves_the_attention_scores(planted):
    scores = {n: torch.rand(i.shape, generator=torch.Generator().manual_seed(0)) for n, i in planted.params.items()}
    mass, _ = head_mass(planted, scores)
    for layer in range(2):
        total = sum(float(scores[f"model.layers.{layer}.self_attn.{p}_proj.weight"].double().sum()) for p in "qkvo")
        assert float(mass[layer].sum()) == pytest.approx(total, rel=1e-9)


def test_spearman_interval():
    x = torch.arange(20.0)
    y = x + torch.tensor([3.0, -2, 1, 0, 5, -4, 2, 2, -1, 0, 3, -3, 1, 0, 2, -2, 4, -1, 0, 1])
    out = spearman(x, y)
    rho = stats.spearmanr(x.numpy(), y.numpy())[0]
    assert out["rho"] == pytest.approx(rho)
    half = 1.959963984540054 * 1.06 / math.sqrt(17)
    assert out["ci95"] == pytest.approx([math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)])
    assert out["ci95"][0] < rho < out["ci95"][1]
    assert spearman(x, torch.ones(20))["rho"] is None
