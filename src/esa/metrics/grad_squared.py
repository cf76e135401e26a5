"""grad_squared: the empirical Fisher diagonal, mean over calibration windows of (∂ window loss / ∂w)².

Each window's gradient is that of its own mean next-token loss, so windows are backpropagated one at a
time (micro-batch 1) inside every batch: squaring the gradient of a batch's mean loss would square a sum
of per-window gradients and add their cross terms. The cost is one forward+backward per window, i.e. the
price of batch size 1 whatever `batch_size` says (exactly the cost of batch 1 on CPU; slower than large
batches on a GPU, which batch 1 leaves underused). Per-sample-gradient tricks (vmap) would keep batching
but hold batch-size copies of the gradients, which this tool avoids.
"""

from __future__ import annotations

from esa.metrics._accumulate import (
    add_square, calibration, check_finite, filled, folded_gradients, loss_share, progress, scoring_session,
    with_aliases,
)
from esa.metrics.base import MetricCost, MetricResult, ScoringContext


class GradSquared:
    name = "grad_squared"
    needs_backward = True
    cost = MetricCost(data=True, backward=True, accumulators=1, results=1, passes=3, micro_batch=1)

    def __call__(self, ctx: ScoringContext) -> MetricResult:
        fold = add_square(1.0 / ctx.n_windows)
        with scoring_session(ctx, grad=True) as params, folded_gradients(params, fold, ctx.accumulate_on) as fisher:
            with progress(ctx, self.name) as bar:
                for ids in calibration(ctx, bar):
                    for window in ids.split(1):
                        loss_share(ctx.model, window, window.shape[1] - 1).backward()
        fisher = filled(fisher, params, ctx.accumulate_on)
        check_finite(fisher)
        return MetricResult(scores=with_aliases(ctx, fisher))
