"""One pass over some token sequences, summarising the activations of every MLP output projection.

For each projection and side (input = columns of the weight, output = rows) the pass keeps:
- the median |activation| over every (token, channel) entry the projection saw: the layer's "typical"
  activation. It comes from a streaming histogram of log10|a| (LOG_BINS bins over 10^LOG_MIN..10^LOG_MAX),
  read at the bin's geometric centre, so it is exact to within ±0.6% whatever the data size;
- per token, its largest |activation| and that channel (massive activations are each token's maximum);
- the single largest input entry (its signed value, channel, token) and the whole output vector at that
  token, so a candidate's output can be read at the very token where its input spikes.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from esa.analysis.projections import OutputProjection, attach_recorders

LOG_MIN, LOG_MAX, LOG_BINS = -12.0, 8.0, 4000
_BIN_WIDTH = (LOG_MAX - LOG_MIN) / LOG_BINS
MEDIAN_RULE = (
    f"median |activation| over every (token, channel) of the projection, from a {LOG_BINS}-bin log10 histogram "
    f"over 1e{LOG_MIN:.0f}..1e{LOG_MAX:.0f} (within ±{50 * (10 ** _BIN_WIDTH - 1):.1f}%)"
)


@dataclass
class SideStats:
    """Streaming summary of one side (input or output) of one projection."""

    counts: torch.Tensor = field(default_factory=lambda: torch.zeros(LOG_BINS, dtype=torch.int64))
    token_max: list[torch.Tensor] = field(default_factory=list)  # per token: max |a| over channels
    token_arg: list[torch.Tensor] = field(default_factory=list)  # per token: that channel
    tokens: list[torch.Tensor] = field(default_factory=list)  # per token: index into the pass's token stream

    def add(self, a: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold in activations [n, channels] of stream tokens [n]; returns the per-token (max, argmax)."""
        mag = a.float().abs()
        bins = ((mag.clamp_min(1e-30).log10() - LOG_MIN) / _BIN_WIDTH).floor().clamp(0, LOG_BINS - 1).long()
        self.counts += torch.bincount(bins.reshape(-1), minlength=LOG_BINS).cpu()
        peak, channel = mag.max(dim=1)
        self.token_max.append(peak.cpu())
        self.token_arg.append(channel.cpu())
        self.tokens.append(tokens.cpu())
        return peak, channel

    def median(self) -> float | None:
        n = int(self.counts.sum())
        if n == 0:
            return None
        b = int(torch.searchsorted(self.counts.cumsum(0), torch.tensor((n + 1) // 2)))
        return 10 ** (LOG_MIN + (b + 0.5) * _BIN_WIDTH)

    def per_token(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(stream token index, max |a|, channel) of every token seen, in stream order."""
        if not self.tokens:
            empty = torch.empty(0)
            return empty.long(), empty, empty.long()
        return torch.cat(self.tokens), torch.cat(self.token_max), torch.cat(self.token_arg)


@dataclass
class ProjectionStats:
    """Both sides of one projection, plus its largest input entry and the outputs at that token."""

    inputs: SideStats = field(default_factory=SideStats)
    outputs: SideStats = field(default_factory=SideStats)
    spike_value: float = 0.0  # signed input activation of the largest |input| entry
    spike_channel: int = -1
    spike_token: int = -1
    outputs_at_spike: torch.Tensor | None = None  # signed outputs [out] at spike_token

    def add(self, x: torch.Tensor, y: torch.Tensor, tokens: torch.Tensor) -> None:
        peak, channel = self.inputs.add(x, tokens)
        self.outputs.add(y, tokens)
        row = int(peak.argmax())
        if float(peak[row]) > abs(self.spike_value) or self.spike_channel < 0:
            self.spike_channel = int(channel[row])
            self.spike_value = float(x[row, self.spike_channel])
            self.spike_token = int(tokens[row])
            self.outputs_at_spike = y[row].float().cpu()


@dataclass
class ActivationPass:
    """What one pass saw: the token stream (ids and positions) and the statistics of every projection."""

    token_ids: torch.Tensor  # [n_tokens] int64
    positions: torch.Tensor  # [n_tokens] position of each token inside its sequence
    stats: dict[OutputProjection, ProjectionStats]


@torch.no_grad()
def activation_pass(
    model: nn.Module, projections: list[OutputProjection], sequences: Iterable[torch.Tensor]
) -> ActivationPass:
    """Run every [b, s] batch of `sequences` through `model`, recording all projections' activations."""
    stats = {p: ProjectionStats() for p in projections}
    offset = 0
    ids: list[torch.Tensor] = []
    positions: list[torch.Tensor] = []

    def sink(proj: OutputProjection, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor) -> None:
        stats[proj].add(x, y, rows + offset)

    was_training = model.training
    model.eval()
    with ExitStack() as stack:
        for handle in attach_recorders(model, projections, sink):
            stack.callback(handle.remove)
        stack.callback(model.train, was_training)
        for batch in sequences:
            model(input_ids=batch, use_cache=False)
            ids.append(batch.reshape(-1).cpu())
            positions.append(torch.arange(batch.shape[1]).repeat(batch.shape[0]))
            offset += batch.numel()
    return ActivationPass(torch.cat(ids), torch.cat(positions), stats)
