"""Token windows: the exact unit of data every ESA number is computed on.

A corpus is tokenized once into one stream; a window is `seq_len` consecutive tokens starting at a
recorded offset. Recording offsets (not texts) lets a third party recompute every figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch


@dataclass(frozen=True)
class WindowSet:
    """Calibration and evaluation windows cut from one token stream.

    Calibration windows feed the sensitivity metrics; evaluation windows measure perplexity. The two
    sets never share a token. With `bos_id` set, every window is the BOS token followed by
    `seq_len - 1` stream tokens; otherwise it is `seq_len` stream tokens (the SparseGPT/Wanda protocol).
    """

    tokens: torch.Tensor  # 1-D int64 stream
    seq_len: int
    calib_offsets: tuple[int, ...]
    eval_offsets: tuple[int, ...]
    bos_id: int | None
    protocol_info: dict[str, Any]

    @property
    def span(self) -> int:
        """Stream tokens consumed by one window."""
        return self.seq_len - (1 if self.bos_id is not None else 0)

    def window(self, offset: int) -> torch.Tensor:
        body = self.tokens[offset : offset + self.span]
        if self.bos_id is None:
            return body
        return torch.cat([torch.tensor([self.bos_id], dtype=body.dtype), body])

    def batches(self, split: str, batch_size: int, device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
        """Yield [b, seq_len] int64 batches of the 'calib' or 'eval' windows, in recorded order."""
        offsets = {"calib": self.calib_offsets, "eval": self.eval_offsets}[split]
        for i in range(0, len(offsets), batch_size):
            yield torch.stack([self.window(o) for o in offsets[i : i + batch_size]]).to(device)

    def n_predicted_tokens(self, split: str) -> int:
        """Tokens that get a next-token prediction (seq_len - 1 per window)."""
        offsets = {"calib": self.calib_offsets, "eval": self.eval_offsets}[split]
        return len(offsets) * (self.seq_len - 1)

    def protocol(self) -> dict[str, Any]:
        """JSON-ready protocol: everything needed to rebuild these windows."""
        return {
            **self.protocol_info,
            "seq_len": self.seq_len,
            "bos": "prepended to every window" if self.bos_id is not None else "none (stream tokens only)",
            "bos_id": self.bos_id,
            "stream_tokens": int(self.tokens.numel()),
            "calib_offsets": list(self.calib_offsets),
            "eval_offsets": list(self.eval_offsets),
            "n_calib_windows": len(self.calib_offsets),
            "n_eval_windows": len(self.eval_offsets),
        }
