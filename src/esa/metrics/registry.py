"""The metric registry: built-in metrics by name, plus user metrics (any object or plain function).

A user metric is a callable `f(ctx) -> MetricResult`. Wrapped with `as_metric` it runs inside the same
scoring session as the built-ins (eval mode, gradients only for scored parameters, model restored after)
and its result is checked against the contract, so a broken user metric fails with one clear line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from esa.errors import EsaError
from esa.metrics._accumulate import scoring_session
from esa.metrics.act_mag import ActMag
from esa.metrics.base import DEFAULT_COST, Metric, MetricCost, MetricResult, ScoringContext
from esa.metrics.grad_squared import GradSquared
from esa.metrics.grad_x_weight import GradXWeight
from esa.metrics.hutchinson import HutchinsonDiag
from esa.metrics.magnitude import Magnitude

METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Make `metric` available to `get_metric` (and `esa run --metric`) under `metric.name`."""
    if not isinstance(metric, Metric):
        raise TypeError(f"{metric!r} has no name/needs_backward/__call__; wrap a function with as_metric")
    if metric.name in METRICS and not replace:
        raise EsaError(f"a metric named {metric.name!r} is already registered; pass replace=True to override it")
    METRICS[metric.name] = metric
    return metric


def get_metric(metric: str | Metric | Callable[[ScoringContext], MetricResult]) -> Metric:
    """The registered metric of that name; a Metric object as is; a plain function via `as_metric`."""
    if isinstance(metric, str):
        if metric not in METRICS:
            raise EsaError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
        return METRICS[metric]
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return as_metric(metric)
    raise TypeError(f"not a metric: {metric!r}")


@dataclass(frozen=True)
class FunctionMetric:
    """A user function behind the Metric contract (see `as_metric`)."""

    fn: Callable[[ScoringContext], MetricResult]
    name: str
    needs_backward: bool = True
    cost: MetricCost = DEFAULT_COST

    def __call__(self, ctx: ScoringContext) -> MetricResult:
        with scoring_session(ctx, grad=self.needs_backward):
            result = self.fn(ctx)
        check_result(ctx, result, self.name)
        return result


def as_metric(
    fn: Callable[[ScoringContext], MetricResult], name: str | None = None, needs_backward: bool = True,
    cost: MetricCost | None = None,
) -> Metric:
    """Wrap `fn(ctx) -> MetricResult` as a Metric named `name` (default: the function's name).

    `needs_backward=False` runs `fn` under torch.no_grad(); with True, autograd is on and only the
    parameters in `ctx.params` require grad. `cost` feeds `esa plan` (default: one gradient pass).
    """
    if cost is None:
        cost = DEFAULT_COST if needs_backward else MetricCost(data=True, backward=False, accumulators=0, results=1, passes=1)
    return FunctionMetric(fn, name or getattr(fn, "__name__", "user_metric"), needs_backward, cost)


def check_result(ctx: ScoringContext, result: MetricResult, name: str) -> None:
    """Raise EsaError unless `result` keeps the contract: float32, finite, >= 0, shaped like each parameter."""
    if not isinstance(result, MetricResult):
        raise EsaError(f"metric {name!r} returned {type(result).__name__}, not a MetricResult")
    for param, score in result.scores.items():
        info = ctx.params.get(param)
        problem = (
            "is not a parameter being scored" if info is None
            else f"has shape {tuple(score.shape)}, not {info.shape}" if tuple(score.shape) != info.shape
            else f"is {score.dtype}, not torch.float32" if score.dtype != torch.float32
            else "is not finite" if not bool(torch.isfinite(score).all())
            else "is negative" if bool((score < 0).any())
            else None
        )
        if problem:
            raise EsaError(f"metric {name!r}: the score for {param} {problem}")


for _metric in (Magnitude(), GradXWeight(), GradSquared(), ActMag(), HutchinsonDiag()):
    register_metric(_metric)
