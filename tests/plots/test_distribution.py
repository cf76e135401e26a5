"""Score histogram and rank-score figures: drawn from the display bins, counts conserved."""

from __future__ import annotations

import numpy as np
import pytest

from esa.plots import plot_rank_score, plot_score_histogram
from esa.plots.distribution import BINS_PER_DECADE, per_decade


def test_histogram_and_rank_score_render(parts, render):
    render(plot_score_histogram(parts["stats"], "tiny-llama · test"))
    render(plot_rank_score(parts["stats"], parts["top"], "tiny-llama · test"))


@pytest.mark.parametrize("plot", [plot_score_histogram, plot_rank_score])
@pytest.mark.parametrize("stats", [None, {}, {"histogram": {"lower": [0.0], "upper": [1e-40], "count": [5], "sum": [0.0]}}],
                         ids=["none", "empty", "only-zeros"])
def test_absent_or_zero_only_input_gives_none(plot, stats):
    assert plot(stats) is None


def test_per_decade_regrouping_conserves_counts_against_brute_force(parts):
    hist = parts["stats"]["histogram"]
    lower, upper, count = (np.asarray(hist[k], float) for k in ("lower", "upper", "count"))
    keep = lower > 0
    edges, density = per_decade(lower[keep], upper[keep], count[keep])
    widths = np.diff(np.log10(edges))
    assert np.allclose(widths, 1.0 / BINS_PER_DECADE, rtol=0.2)
    # every positive score is counted once: total weights minus the exact zeros
    total = parts["stats"]["global"]["count"] - parts["stats"]["global"]["n_zero"]
    assert np.isclose((density * widths).sum(), total)
    # brute force from the raw scores: only the saved bins that straddle a coarse edge are split by
    # assumption (log-uniform inside), so the coarse counts agree closely
    raw = np.concatenate([t.reshape(-1).numpy() for t in parts["scores"].values()])
    raw = raw[raw > 0]
    brute, _ = np.histogram(np.log10(raw), bins=np.log10(edges))
    mine = density * widths
    assert np.abs(brute - mine).sum() <= 0.02 * total
