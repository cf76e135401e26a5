"""Selection overlap and rank agreement between runs."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from esa.ranking import top_k
from esa.statistics import jaccard, scores_at, spearman_on_union, stability_report


def test_jaccard_by_hand():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard({1}, {2}) == 0.0
    assert jaccard(set(), set()) == 1.0


def runs() -> dict[str, dict[str, torch.Tensor]]:
    """Three 'seeds': a shared signal plus seed noise, with ties (rounded scores)."""
    g = torch.Generator().manual_seed(0)
    base = {"a": torch.rand(40, 30, generator=g), "b": torch.rand(500, generator=g)}
    out = {}
    for seed in ("0", "1", "2"):
        out[seed] = {n: torch.round((t + 0.3 * torch.rand(t.shape, generator=g)) * 20) / 20 for n, t in base.items()}
    return out


def test_spearman_on_union_matches_scipy_with_average_ranks():
    r = runs()
    a, b = top_k(r["0"], 60, "global").keys(), top_k(r["1"], 60, "global").keys()
    union = sorted(a | b)
    x = [r["0"][n].reshape(-1)[i].item() for n, i in union]
    y = [r["1"][n].reshape(-1)[i].item() for n, i in union]
    want = stats.spearmanr(x, y).statistic
    assert spearman_on_union(a, b, r["0"], r["1"]) == pytest.approx(want, abs=1e-12)
    assert list(scores_at(r["0"], union)) == x


def test_report_pairs_and_means():
    r = runs()
    sets = {seed: top_k(s, 60, "global").keys() for seed, s in r.items()}
    calls = {seed: 0 for seed in r}

    def lookup_for(seed):
        def lookup(index):
            calls[seed] += 1
            return {n: r[seed][n].reshape(-1)[idx] for n, idx in index.items()}
        return lookup

    report = stability_report(sets, {seed: lookup_for(seed) for seed in r})
    assert calls == {"0": 1, "1": 1, "2": 1}  # one lookup per run, whatever the number of pairs
    assert [(p["a"], p["b"]) for p in report["pairs"]] == [("0", "1"), ("0", "2"), ("1", "2")]
    for p in report["pairs"]:
        assert p["jaccard"] == jaccard(sets[p["a"]], sets[p["b"]])
        assert p["spearman"] == pytest.approx(spearman_on_union(sets[p["a"]], sets[p["b"]], r[p["a"]], r[p["b"]]))
        assert p["intersection"] == len(sets[p["a"]] & sets[p["b"]])
    assert report["mean_jaccard"] == pytest.approx(sum(p["jaccard"] for p in report["pairs"]) / 3)
    assert report["mean_spearman"] == pytest.approx(sum(p["spearman"] for p in report["pairs"]) / 3)
    assert report["sizes"] == {"0": 60, "1": 60, "2": 60}


def test_report_without_scores_gives_jaccard_only():
    report = stability_report({"x": {("a", 1), ("a", 2)}, "y": {("a", 2)}})
    assert report["mean_jaccard"] == 0.5 and report["mean_spearman"] is None
    assert report["pairs"][0]["spearman"] is None


def test_identical_or_constant_runs():
    s = {"a": torch.arange(10.0)}
    keys = top_k(s, 4, "global").keys()
    assert spearman_on_union(keys, keys, s, s) == pytest.approx(1.0)
    flat = {"a": torch.ones(10)}
    assert spearman_on_union(keys, keys, s, flat) is None  # constant scores: rho undefined
