"""grad_x_weight: |w · ḡ|, the first-order Taylor estimate of the loss change when w is zeroed.

ḡ is the gradient of the mean next-token loss over every calibration token. Each batch backpropagates
its summed NLL divided by the total token count, so the folded gradients add up to ḡ exactly, whatever
the batch size.
"""

from __future__ import annotations

import torch

from esa.metrics._accumulate import (
    add, calibration, check_finite, filled, folded_gradients, loss_share, progress, scoring_session, with_aliases,
)
from esa.metrics.base import MetricCost, MetricResult, ScoringContext


class GradXWeight:
    name = "grad_x_weight"
    needs_backward = True
    cost = MetricCost(data=True, backward=True, accumulators=1, results=1, passes=3)  # scores in place

    def __call__(self, ctx: ScoringContext) -> MetricResult:
        with scoring_session(ctx, grad=True) as params, folded_gradients(params, add, ctx.accumulate_on) as g_mean:
            with progress(ctx, self.name) as bar:
                for ids in calibration(ctx, bar):
                    loss_share(ctx.model, ids, ctx.n_tokens).backward()
        g_mean = filled(g_mean, params, ctx.accumulate_on)
        check_finite(g_mean)
        # In place: a second model-sized float32 buffer (signed and absolute) would not fit an 8B model
        # beside its accumulators on an 80 GB GPU (see `esa plan`).
        for n, g in g_mean.items():
            g.mul_(params[n].detach().to(g.device, torch.float32)).abs_()
        return MetricResult(scores=with_aliases(ctx, g_mean))
