"""Layer x component figures: cell values against sums over the raw scores and the top-k table."""

from __future__ import annotations

import numpy as np

from esa.plots import plot_layer_heatmap, plot_layer_shares
from esa.plots.layers import score_mass, topk_counts


def cell(info) -> tuple[str, str]:
    return ("none" if info.layer is None else str(info.layer), info.component)


def test_score_mass_matches_brute_force_sums(parts):
    table = score_mass(parts["stats"])
    assert table is not None
    total = sum(float(t.double().sum()) for t in parts["scores"].values())
    brute: dict[tuple[str, str], float] = {}
    for name, t in parts["scores"].items():
        key = cell(parts["params"][name])
        brute[key] = brute.get(key, 0.0) + float(t.double().sum()) / total
    for (layer, comp), share in brute.items():
        assert np.isclose(table.values[table.rows.index(layer), table.cols.index(comp)], share, rtol=1e-9)
    assert np.isclose(np.nansum(table.values), 1.0)
    assert table.rows[-1] == "none" and table.rows[:-1] == sorted(table.rows[:-1], key=int)
    # a cell with no parameters (attention outside the blocks) is absent, not zero
    assert np.isnan(table.values[table.rows.index("none"), table.cols.index("attention")])


def test_topk_counts_from_stats_and_from_the_table_agree_with_brute_force(parts):
    top = parts["top"]
    brute = top.assign(layer=top["layer"].map(lambda x: "none" if x < 0 else str(x))).groupby(["layer", "component"]).size()
    from_stats = topk_counts(parts["stats"], None)
    without_grouping = {k: v for k, v in parts["stats"].items() if k != "topk"}
    from_table = topk_counts(without_grouping, top)
    for table in (from_stats, from_table):
        assert table is not None
        for (layer, comp), n in brute.items():
            assert table.values[table.rows.index(layer), table.cols.index(comp)] == n
        assert np.nansum(table.values) == len(top)
    # the table fallback lists every layer the statistics know, selected or not
    assert set(parts["stats"]["by_layer"]) <= set(from_table.rows)


def test_layer_figures_render_with_and_without_the_cell_grouping(parts, render):
    stats = parts["stats"]
    render(plot_layer_heatmap(stats, parts["top"], "ctx"), "heatmap_full")
    render(plot_layer_shares(stats, parts["top"], "ctx"), "shares_full")
    old = {k: v for k, v in stats.items() if k != "by_layer_component"}
    old["topk"] = {k: v for k, v in stats["topk"].items() if k != "by_layer_component"}
    assert score_mass(old) is None
    render(plot_layer_heatmap(old, parts["top"], "ctx"), "heatmap_counts_only")
    render(plot_layer_shares(old, parts["top"], "ctx"), "shares_merged")
    render(plot_layer_shares(old, None, "ctx"), "shares_no_table")


def test_layer_figures_skip_without_inputs():
    assert plot_layer_heatmap(None, None) is None
    assert plot_layer_shares({}, None) is None
