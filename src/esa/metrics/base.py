"""The metric contract: given a model and calibration batches, return a score tensor per parameter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, runtime_checkable

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


@runtime_checkable
class Metric(Protocol):
    name: str
    needs_backward: bool

    def __call__(self, ctx: ScoringContext) -> MetricResult: ...
