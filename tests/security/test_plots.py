"""The fault figure draws from a saved faults.json (and nothing without campaigns)."""

from __future__ import annotations

import json

from esa.plots.security import plot_fault_bits
from esa.security import fault_campaign, side_by_side


def test_fault_bits_figure(tiny, windows, tmp_path) -> None:
    res = fault_campaign(tiny, windows, injections=4, bits="exponent", seed=0)
    saved = json.loads(json.dumps({"campaigns": {"random": res.to_dict()},
                                   "side_by_side": side_by_side({"random": res}).to_dict(orient="records")}))
    fig = plot_fault_bits(saved, "tiny-llama")
    assert fig is not None and len(fig.axes[0].lines) >= 1
    assert plot_fault_bits({"campaigns": {}}) is None and plot_fault_bits(None) is None
