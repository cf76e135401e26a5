"""magnitude: exactly |w| in float32, wherever the accumulators live."""

from __future__ import annotations

import pytest
import torch

from esa.metrics import get_metric
from esa.models.tiny import build_tiny_model


@pytest.mark.parametrize("accumulate_on", ["param", "cpu"])
def test_magnitude_is_abs_weight(accumulate_on: str, make_ctx) -> None:
    model = build_tiny_model("tiny-gptneox", dtype=torch.bfloat16)
    result = get_metric("magnitude")(make_ctx(model, accumulate_on=accumulate_on))
    named = dict(model.named_parameters())
    for name, score in result.scores.items():
        assert torch.equal(score, named[name].detach().float().abs())
        assert score.data_ptr() != named[name].data_ptr()
