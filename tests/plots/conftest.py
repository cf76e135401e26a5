"""Saved-summary inputs for the figure tests, made by the real producers on fast synthetic inputs.

Scores are seeded random tensors over tiny-llama's parameters (no forward pass); the statistics,
top-k table, stability report and perturbation summary come from the pipeline's own functions, so
the figures are tested against the schema the pipeline writes. "by_layer_component" is the
grouping the figures ask the statistics to add; it is added here the way it would be added there.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import esa.statistics.distribution as distribution
from esa.analysis.superweights import SuperweightResult
from esa.models.layout import describe_parameters
from esa.models.tiny import build_tiny_model
from esa.statistics.validation import summarize
from esa.ranking import top_k
from esa.statistics import score_statistics, stability_report, topk_distribution

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def heavy_tailed_scores(params: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Log-normal scores with some exact zeros: a distribution spanning many decades, like real ones."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, info in params.items():
        x = torch.exp(torch.randn(info.shape, generator=g) * 3.0 - 10.0)
        x.view(-1)[:: 17] = 0.0
        out[name] = x
    return out


def layer_component(info: Any) -> str:
    return f"{'none' if info.layer is None else info.layer}/{info.component}"


def perturbation_summary(scales: list[float], ks: list[int], seeds: list[int], trials: int) -> dict[str, Any]:
    """perturbation_results.json content from esa.statistics.validation.summarize on synthetic ΔPPL rows."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for scale in scales:
            for k in ks:
                for set_name, (center, n) in {"target": (5.0 * scale * np.log10(10 * k), 1), "random_k": (0.3 * scale, trials),
                                              "bottom_k": (0.01, 1)}.items():
                    for trial in range(n):
                        d = float(center + rng.normal(0, 0.1 * center + 0.01))
                        rows.append({"perturbation": "gauss_noise", "scale": scale, "set": set_name, "trial": trial,
                                     "seed": seed, "k": k, "n_weights": k, "ppl": 20.0 + d, "accuracy": 0.3,
                                     "delta_ppl": d, "delta_accuracy": -0.01, "n_changed": k, "n_nan": 0, "n_inf": 0,
                                     "bit_flips": {}})
    table = pd.DataFrame(rows)
    return {
        "protocol": {"perturbation": "gauss_noise", "scales": scales, "ks": ks, "mode": "global",
                     "controls": ["random_k", "bottom_k"], "trials": trials, "target_trials": 1,
                     "definitions": {str(float(s)): f"w + N(0, ({s:g}|w|)^2)" for s in scales}},
        "baseline": {"ppl": 20.0, "accuracy": 0.3, "n_tokens": 1000, "n_windows": 8},
        "summary": summarize(table, seeds[0]),
        "rows": rows,
    }


def superweights_result() -> dict[str, Any]:
    """superweights.json content: a 6-layer series with a spike at layer 2 and one validated candidate."""
    series = []
    for layer in range(6):
        spike = 5000.0 if layer == 2 else 3.0
        series.append({"layer": layer, "expert": None, "param": f"model.layers.{layer}.mlp.down_proj.weight",
                       "input_max": spike, "input_channel": 7, "input_median": 0.5, "input_ratio": spike / 0.5,
                       "input_token": {"id": 1, "token": "<s>", "text": "<s>", "position": 0},
                       "output_max": spike / 2, "output_channel": 3, "output_median": 0.2, "output_ratio": spike / 0.4,
                       "output_token": {"id": 1, "token": "<s>", "text": "<s>", "position": 0}, "n_tokens": 100})
    candidate = {"iteration": 0, "layer": 2, "expert": None, "param": "model.layers.2.mlp.down_proj.weight",
                 "index": "3,7", "row": 3, "col": 7, "flat_index": 3 * 64 + 7, "value": -1.5, "input_spike": 5000.0,
                 "output_spike": -2500.0, "input_median": 0.5, "output_median": 0.2, "input_ratio": 10000.0,
                 "output_ratio": 12500.0, "spike_token": {"id": 1, "token": "<s>", "text": "<s>", "position": 0},
                 "ppl_baseline": 20.0, "ppl_zeroed": 900.0, "delta_ppl": 880.0, "verdict": "super weight",
                 "is_super_weight": True}
    result = SuperweightResult(model_id="tiny-llama", protocol={"threshold": 1000.0, "method": "test"},
                               candidates=[candidate], series=series, iterations=[], baseline_ppl=20.0,
                               stopped="no spike above the threshold remains")
    return asdict(result)


@pytest.fixture(scope="session")
def parts() -> dict[str, Any]:
    """Every saved part a run can have, for a 2-layer model, 3 seeds, global top-50."""
    params = describe_parameters(build_tiny_model("tiny-llama"))
    seeds = [1337, 123, 999]
    scores = {seed: heavy_tailed_scores(params, seed) for seed in seeds}
    selections = {seed: top_k(scores[seed], 50, "global") for seed in seeds}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(distribution.GROUPINGS, "by_layer_component", layer_component)
        stats = score_statistics(scores[seeds[0]], params)
        stats["topk"] = topk_distribution(selections[seeds[0]], params)
    stats.update(metric="grad_x_weight", mode="global", k=50)
    stats["stability"] = stability_report({str(s): selections[s].keys() for s in seeds},
                                          {str(s): scores[s] for s in seeds})
    sel = selections[seeds[0]]
    rows = []
    for rank, (pid, flat, score) in enumerate(zip(sel.param_ids.tolist(), sel.flat_index.tolist(), sel.score.tolist())):
        info = params[sel.param_names[pid]]
        rows.append({"seed": seeds[0], "rank": rank + 1, "param": info.name, "index": str(flat),
                     "layer": -1 if info.layer is None else info.layer, "component": info.component,
                     "role": info.role or "", "score": score, "weight": 0.1, "token": ""})
    return {
        "stats": stats,
        "top": pd.DataFrame(rows),
        "perturbation": perturbation_summary([1.0], [50], seeds, trials=4),
        "dose_scale": perturbation_summary([0.01, 0.1, 1.0], [50], seeds[:1], trials=3),
        "dose_k": perturbation_summary([1.0], [1, 10, 100], seeds[:1], trials=3),
        "superweights": superweights_result(),
        "params": params,
        "scores": scores[seeds[0]],
    }


def assert_valid_files(paths: list[Any]) -> None:
    """PNG: signature and a decodable RGB(A) image of sensible size; PDF: header and EOF marker."""
    import matplotlib.image

    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE)
            image = matplotlib.image.imread(path)
            assert image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) > 200
        elif path.suffix == ".pdf":
            assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:]
        else:
            raise AssertionError(f"unexpected figure file {path}")


@pytest.fixture
def render(tmp_path):
    """Save a figure as PNG + PDF under tmp_path, check both files, return their paths."""
    from esa.plots import save_figure

    def _render(fig: Any, name: str = "figure") -> list[Any]:
        assert fig is not None
        paths = save_figure(fig, tmp_path, name)
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        assert_valid_files(paths)
        return paths

    return _render
