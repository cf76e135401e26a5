"""score_statistics and topk_distribution against numpy on the concatenated scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from esa.errors import EsaError
from esa.models.types import ParamInfo
from esa.ranking import top_k
from esa.statistics import histogram, score_statistics, topk_distribution
from esa.statistics.histogram import PERCENTILES, REL_ERROR, TOP_SHARES

EXACT = 1e-12  # float64 rounding: sums taken in a different order than numpy's


def model(seed: int = 0, dist: str = "lognormal") -> tuple[dict[str, torch.Tensor], dict[str, ParamInfo]]:
    """Two tiny blocks plus embedding and final norm; heavy-tailed scores with planted zeros."""
    layout = [("model.embed_tokens.weight", (300, 16), None, "embedding", None)]
    for i in range(2):
        layout += [
            (f"model.layers.{i}.self_attn.q_proj.weight", (16, 16), i, "attention", "q"),
            (f"model.layers.{i}.mlp.down_proj.weight", (16, 40), i, "mlp", "down"),
            (f"model.layers.{i}.input_layernorm.weight", (16,), i, "norm", "input_norm"),
        ]
    layout.append(("model.norm.weight", (16,), None, "norm", "final_norm"))
    rng = np.random.default_rng(seed)
    scores, params = {}, {}
    for name, shape, layer, component, role in layout:
        if dist == "lognormal":
            x = rng.lognormal(0.0, 2.5, size=shape)
        else:
            x = rng.pareto(1.2, size=shape)
        x[rng.random(shape) < 0.05] = 0.0
        scores[name] = torch.from_numpy(x.astype(np.float32))
        params[name] = ParamInfo(name, shape, layer, component, role)
    return scores, params


def check_against_numpy(stats: dict, values: np.ndarray) -> None:
    a = np.sort(values.astype(np.float64))
    n, total = a.size, a.sum()
    assert stats["count"] == n
    assert stats["n_zero"] == int((a == 0).sum())
    assert stats["min"] == a[0] and stats["max"] == a[-1]
    for key, want in (("sum", total), ("mean", a.mean()), ("std", a.std()), ("max_over_mean", a[-1] / a.mean())):
        assert stats[key] == pytest.approx(want, rel=EXACT), key
    for q in PERCENTILES:
        want = np.percentile(a, float(q))
        assert abs(stats["percentiles"][q] - want) <= REL_ERROR * want, q
    median = np.percentile(a, 50)
    if median > 0:
        assert stats["max_over_median"] == pytest.approx(a[-1] / median, rel=2 * REL_ERROR)
    gini = 2 * np.dot(np.arange(1, n + 1), a) / (n * total) - (n + 1) / n
    assert abs(stats["gini"] - gini) <= stats["gini_max_error"] + EXACT
    for label, inverse in TOP_SHARES.items():
        want = a[::-1][: -(-n // inverse)].sum() / total
        got = stats["top_share"][label]
        assert want * (1 - REL_ERROR) - EXACT <= got <= want + EXACT, label


@pytest.mark.parametrize("dist", ["lognormal", "pareto"])
def test_every_group_matches_numpy(dist):
    scores, params = model(1, dist)
    stats = score_statistics(scores, params)
    flat = {n: t.numpy().reshape(-1) for n, t in scores.items()}
    check_against_numpy(stats["global"], np.concatenate(list(flat.values())))
    groups = {
        "by_layer": lambda p: "none" if p.layer is None else str(p.layer),
        "by_component": lambda p: p.component,
        "by_role": lambda p: p.role or p.component,
    }
    for grouping, key_of in groups.items():
        members: dict[str, list[np.ndarray]] = {}
        for name, p in params.items():
            members.setdefault(key_of(p), []).append(flat[name])
        assert set(stats[grouping]) == set(members)
        for key, parts in members.items():
            check_against_numpy(stats[grouping][key], np.concatenate(parts))
    assert list(stats["by_layer"]) == ["0", "1", "none"]
    assert list(stats["by_component"]) == ["embedding", "attention", "mlp", "norm"]
    json.dumps(stats, allow_nan=False)


def test_many_chunks_merge_exactly(monkeypatch):
    monkeypatch.setitem(histogram.CHUNK, "cpu", 4096)
    rng = np.random.default_rng(7)
    x = rng.lognormal(-3.0, 3.0, size=70_001).astype(np.float32)
    x[:1000] = 0.0
    stats = score_statistics({"w": torch.from_numpy(x)}, {"w": ParamInfo("w", x.shape, 0, "mlp", "up")})
    check_against_numpy(stats["global"], x)


def test_gini_of_known_distributions():
    info = {"w": ParamInfo("w", (1000,), 0, "mlp")}
    equal = score_statistics({"w": torch.full((1000,), 0.37)}, info)["global"]
    assert equal["gini"] == pytest.approx(0.0, abs=1e-12) and equal["gini_max_error"] == 0.0
    one = torch.zeros(1000)
    one[123] = 5.0
    spike = score_statistics({"w": one}, info)["global"]
    assert spike["gini"] == pytest.approx(0.999, abs=1e-12)  # (n - 1) / n
    assert all(share == pytest.approx(1.0) for share in spike["top_share"].values())
    zeros = score_statistics({"w": torch.zeros(1000)}, info)["global"]
    assert zeros["gini"] is None and zeros["max_over_median"] is None and zeros["n_zero"] == 1000


def test_zeros_next_to_subnormals_and_negative_zero():
    x = torch.tensor([0.0, -0.0, 1e-42, 3e-41, 0.0, 2.0])
    stats = score_statistics({"w": x}, {"w": ParamInfo("w", (6,), None, "other")})["global"]
    assert stats["n_zero"] == 3 and stats["min"] == 0.0
    assert abs(stats["percentiles"]["50"] - 5e-43) < 9.2e-41  # subnormal buckets: absolute error
    spike = torch.tensor([0.0, 0.0, 0.0, 2.0])
    spiked = score_statistics({"w": spike}, {"w": ParamInfo("w", (4,), None, "other")})["global"]
    assert spiked["max_over_median"] == math.inf


def test_display_histogram_covers_everything():
    scores, params = model(2)
    stats = score_statistics(scores, params)
    hist, g = stats["histogram"], stats["global"]
    assert 0 < len(hist["count"]) <= 512
    assert sum(hist["count"]) == g["count"]
    assert sum(hist["sum"]) == pytest.approx(g["sum"], rel=EXACT)
    assert hist["lower"][0] == 0.0 and hist["count"][0] == g["n_zero"]
    assert all(lo < hi for lo, hi in zip(hist["lower"], hist["upper"]))
    assert all(hi <= lo for hi, lo in zip(hist["upper"], hist["lower"][1:]))
    assert hist["lower"][-1] <= g["max"] <= hist["upper"][-1]
    assert stats["resolution"]["bucket_relative_width"] == REL_ERROR


def test_topk_distribution_counts():
    scores, params = model(3)
    ws = top_k(scores, 50, "global")
    dist = topk_distribution(ws, params)
    names = [ws.param_names[i] for i in ws.param_ids.tolist()]
    n_weights = sum(p.numel for p in params.values())
    assert dist["k"] == 50 and dist["n_weights"] == n_weights
    assert dist["by_param"] == {n: names.count(n) for n in params if n in names}
    for component in {p.component for p in params.values()}:
        members = [n for n, p in params.items() if p.component == component]
        row = dist["by_component"][component]
        assert row["count"] == sum(names.count(n) for n in members)
        assert row["share"] == row["count"] / 50
        assert row["param_share"] == sum(params[n].numel for n in members) / n_weights
        assert row["enrichment"] == pytest.approx(row["share"] / row["param_share"])
    assert sum(r["count"] for r in dist["by_layer"].values()) == 50
    assert sum(r["count"] for r in dist["by_role"].values()) == 50


def test_bad_scores_raise():
    x = torch.rand(4, 4)
    x[1, 2] = float("nan")
    with pytest.raises(EsaError, match="'model.layers.3.mlp.up_proj.weight' contain NaN"):
        score_statistics({"model.layers.3.mlp.up_proj.weight": x},
                         {"model.layers.3.mlp.up_proj.weight": ParamInfo("x", (4, 4), 3, "mlp")})
    with pytest.raises(EsaError, match="no scores"):
        score_statistics({}, {})
