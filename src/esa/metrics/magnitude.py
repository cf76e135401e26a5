"""magnitude: |w|, the data-free baseline every other metric should beat."""

from __future__ import annotations

import torch

from esa.metrics._accumulate import accumulator_device, scoring_session, with_aliases
from esa.metrics.base import MetricCost, MetricResult, ScoringContext


class Magnitude:
    name = "magnitude"
    needs_backward = False
    cost = MetricCost(data=False, backward=False, accumulators=1, results=1, passes=0)

    def __call__(self, ctx: ScoringContext) -> MetricResult:
        with scoring_session(ctx, grad=False) as params:
            scores = {
                n: p.detach().to(accumulator_device(p, ctx.accumulate_on), torch.float32).abs()
                for n, p in params.items()
            }
        return MetricResult(scores=with_aliases(ctx, scores))
