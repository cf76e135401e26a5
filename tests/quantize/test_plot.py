"""Quantization figure: Pareto front against brute force, legend groups, empty input."""

from __future__ import annotations

import itertools

from matplotlib.figure import Figure

from esa.plots.quantize import pareto_front, plot_quantization, protection_kind


def test_pareto_front_is_what_no_point_dominates():
    points = [(3.3, 40.0), (4.0, 25.0), (4.3, 26.0), (3.5, 30.0), (8.3, 22.7), (3.3, 45.0), (5.0, 25.0)]
    brute = sorted(p for p in points if not any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in points))
    assert pareto_front(points) == brute


def test_protection_kinds():
    assert protection_kind({"budget_bits": 3.5, "allocate_by": "grad_squared"}) == "mixed precision (grad_squared)"
    assert protection_kind({"keep_metric": "magnitude", "keep_superweights": True}) == "top magnitude + super weights"
    assert protection_kind({}) == "no protection"


def test_renders_and_skips():
    rows = [{"method": m, "bits": b, "effective_bits": b + 0.3, "ppl": 20 + 10 / b, "keep_superweights": s}
            for m, b, s in itertools.product(("rtn", "gptq"), (3, 4, 8), (False, True))]
    fig = plot_quantization({"configurations": rows, "baseline": {"ppl": 20.0}}, "ctx")
    assert isinstance(fig, Figure) and len(fig.axes[0].collections) == len(rows)
    assert plot_quantization(None) is None and plot_quantization({"configurations": []}) is None
