"""Similarity matrices: the pair list and the square-matrix forms give the same figure data."""

from __future__ import annotations

import numpy as np

from esa.plots import plot_compare, plot_similarity
from esa.plots.stability import similarity_matrices
from esa.statistics import jaccard


def test_matrices_from_pairs_match_brute_force_jaccard(parts):
    report = parts["stats"]["stability"]
    labels, matrices = similarity_matrices(report)
    assert labels == ["1337", "123", "999"]
    assert set(matrices) == {"jaccard", "spearman"}
    m = matrices["jaccard"]
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
    sets = {"a": {1, 2, 3}, "b": {2, 3, 4, 5}}
    _, small = similarity_matrices({"runs": ["a", "b"], "pairs": [{"a": "a", "b": "b", "jaccard": jaccard(sets["a"], sets["b"]),
                                                                    "spearman": None}]})
    assert np.isclose(small["jaccard"][0, 1], 2 / 5)
    assert "spearman" not in small  # never computed: no empty panel


def test_matrix_form_equals_pair_form(parts):
    report = parts["stats"]["stability"]
    labels, matrices = similarity_matrices(report)
    square = {"runs": labels, "jaccard": matrices["jaccard"].tolist(), "spearman": matrices["spearman"].tolist()}
    _, again = similarity_matrices(square)
    assert all(np.allclose(again[k], matrices[k], equal_nan=True) for k in matrices)


def test_similarity_and_compare_render(parts, render, tmp_path):
    render(plot_similarity(parts["stats"]["stability"], "ctx", label_prefix="seed "))
    compare = {"runs": ["magnitude:r1", "grad_x_weight:r2"], "jaccard": [[1, 0.25], [0.25, 1]],
               "spearman": [[1, None], [None, 1]]}
    paths = plot_compare(compare, tmp_path / "cmp")
    assert [p.name for p in paths] == ["compare_overlap.png", "compare_overlap.pdf"]


def test_similarity_skips_single_run_or_absent_input(tmp_path):
    assert plot_similarity(None) is None
    assert plot_similarity({"note": "stability needs at least two seeds"}) is None
    assert plot_similarity({"runs": ["1337"], "pairs": []}) is None
    assert plot_compare(None, tmp_path) == []
