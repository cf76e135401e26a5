"""Figures of a run, drawn only from what the run saved (never from the model or score tensors).

Every `plot_*` function takes the saved dicts (and, for layer figures, the top_weights table), returns a
`matplotlib.figure.Figure`, or None when its input is absent; `save_figure` writes PNG + PDF.
`esa.pipeline.plotting.plot_run_dir` draws everything that applies to a run directory.
"""

from esa.plots.distribution import plot_rank_score, plot_score_histogram
from esa.plots.layers import plot_layer_heatmap, plot_layer_shares
from esa.plots.perturbation import plot_dose_response, plot_perturbation
from esa.plots.stability import plot_compare, plot_similarity
from esa.plots.style import figure_bytes, save_figure
from esa.plots.superweights import plot_superweights

__all__ = [
    "figure_bytes",
    "plot_compare",
    "plot_dose_response",
    "plot_layer_heatmap",
    "plot_layer_shares",
    "plot_perturbation",
    "plot_rank_score",
    "plot_score_histogram",
    "plot_similarity",
    "plot_superweights",
    "save_figure",
]
