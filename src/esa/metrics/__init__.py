"""Sensitivity metrics: one module per metric behind the contract in `base`, one registry.

Built-ins: magnitude, grad_x_weight, grad_squared, act_mag, hutchinson_diag. `get_metric(name)` returns
one; `register_metric` / `as_metric` add a user's own.
"""

from esa.metrics.act_mag import ActMag
from esa.metrics.base import Metric, MetricCost, MetricResult, ScoringContext, metric_cost, metric_options
from esa.metrics.grad_squared import GradSquared
from esa.metrics.grad_x_weight import GradXWeight
from esa.metrics.hutchinson import HutchinsonDiag
from esa.metrics.magnitude import Magnitude
from esa.metrics.registry import METRICS, FunctionMetric, as_metric, check_result, get_metric, register_metric
from esa.metrics.score import score_model

__all__ = [
    "METRICS",
    "ActMag",
    "FunctionMetric",
    "GradSquared",
    "GradXWeight",
    "HutchinsonDiag",
    "Magnitude",
    "Metric",
    "MetricCost",
    "MetricResult",
    "ScoringContext",
    "as_metric",
    "check_result",
    "get_metric",
    "metric_cost",
    "metric_options",
    "register_metric",
    "score_model",
]
