"""Shared look: deterministic bytes, plain tick labels, a distinct look for every component."""

from __future__ import annotations

from esa.plots.style import _plain_number, component_look, figure_bytes, new_figure


def test_same_figure_same_bytes():
    def draw():
        fig = new_figure(4, 3, "title", "context")
        fig.add_subplot().plot([1, 2, 3], [3, 1, 2])
        return fig

    for fmt in ("png", "pdf", "svg"):
        assert figure_bytes(draw(), fmt) == figure_bytes(draw(), fmt)


def test_plain_tick_labels():
    assert [_plain_number(x) for x in (1e-5, 0.01, 1, 100, 1e4, -1e3, 0)] == ["1e-5", "0.01", "1", "100", "1e4", "-1e3", "0"]


def test_components_differ_in_colour_or_hatch():
    names = ["embedding", "attention", "mlp", "norm", "lm_head", "router", "expert", "other", "new_a", "new_b"]
    looks = component_look(names)
    assert len(set(looks.values())) == len(names)
