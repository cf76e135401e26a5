import json

import pytest
from matplotlib.figure import Figure

from esa.plots.interpret import plot_interpret_heads, plot_interpret_knowledge, plot_interpret_roles, plot_interpret_sink

PLOTS = [plot_interpret_roles, plot_interpret_sink, plot_interpret_heads, plot_interpret_knowledge]


@pytest.fixture(scope="module")
def saved(planted, windows):
    from esa.interpret import BUILTIN_PROBES, interpret

    result = interpret(planted, windows, [("model.layers.0.mlp.down_proj.weight", (5, 7))], seed=0, batch_size=2,
                       probes=list(BUILTIN_PROBES[:3]), control_trials=1)
    return json.loads(json.dumps(result.to_dict()))  # what interpret.json holds


@pytest.mark.parametrize("plot", PLOTS)
def test_figures_from_saved_results(saved, plot):
    assert isinstance(plot(saved, context="tiny"), Figure)
    assert plot(None) is None and plot({}) is None


def test_sink_figure_shows_the_strongest_sink_weight(saved):
    fig = plot_interpret_sink(saved)
    assert "down_proj.weight[5,7]" in fig.get_suptitle()
