"""The metric contract: given a model and calibration batches, return a score tensor per parameter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import torch

from esa.models.types import ParamInfo


@dataclass
class ScoringContext:
    """Everything a metric may use. `batches()` can be called again for a fresh pass over the data."""

    model: torch.nn.Module
    params: dict[str, ParamInfo]  # the parameters to score (after --include/--exclude)
    batches: Callable[[], Iterator[torch.Tensor]]  # calibration windows, [b, seq_len] int64 on the model's input device
    n_windows: int
    n_tokens: int  # predicted tokens over all calibration windows
    seed: int = 0
    probes: int = 8
    accumulate_on: str = "param"  # "param": accumulator on the parameter's device; "cpu"
    progress: bool = False
    checkpointing: bool = False  # recompute each decoder block's activations in backward (saves memory)


@dataclass
class MetricResult:
    """Float32 scores (>= 0, shaped like each parameter) plus optional per-weight extras.

    `extras` maps an extra's name (e.g. "signed", "stderr") to tensors shaped like the scores;
    `notes` are sentences for the output (e.g. which parameters a metric cannot score).
    """

    scores: dict[str, torch.Tensor]
    extras: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MetricCost:
    """What one metric keeps and computes, in parameter-sized buffers and forward-pass equivalents.

    Declared by each metric beside its arithmetic; `esa plan` and the OOM advice read it from there.
    """

    data: bool  # reads calibration windows
    backward: bool
    accumulators: int  # float32 parameter-sized buffers during the pass
    results: int  # float32 parameter-sized buffers when it returns (scores + extras)
    passes: int  # forward-equivalents of compute per window (per probe when per_probe)
    gradient_copies: int = 0  # model-dtype parameter-sized buffers alive during the pass
    activation_factor: float = 1.0  # saved activations relative to one plain backward
    math_attention: bool = False  # runs attention on the s²-memory math kernel
    micro_batch: int | None = None  # windows per backward, whatever the batch size
    linear_only: bool = False  # scores only weights that multiply an activation
    per_probe: bool = False


# The cost assumed for a user metric that declares none: one float32 accumulator and a gradient pass.
DEFAULT_COST = MetricCost(data=True, backward=True, accumulators=1, results=1, passes=3)


@runtime_checkable
class Metric(Protocol):
    """A scoring method. Built-ins also declare `cost` (MetricCost) and `options` (name -> help text
    of the ScoringContext fields they read beyond the data, e.g. hutchinson_diag's `probes`)."""

    name: str
    needs_backward: bool

    def __call__(self, ctx: ScoringContext) -> MetricResult: ...


def metric_cost(metric: Any) -> MetricCost:
    return getattr(metric, "cost", None) or DEFAULT_COST


def metric_options(metric: Any) -> dict[str, str]:
    return dict(getattr(metric, "options", None) or {})
