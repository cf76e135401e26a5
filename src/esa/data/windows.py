"""Token windows: the exact unit of data every ESA number is computed on.

A corpus is tokenized once into one stream; a window is `seq_len` consecutive tokens starting at a
recorded offset. Recording offsets (not texts) lets a third party recompute every figure.

Token perplexity depends on the tokenizer; bits per byte and word perplexity do not, so a WindowSet
can carry, per window, the UTF-8 bytes and whitespace-split words of the text its predicted tokens
decode to (`with_text_measures`, computed once; the definition is `TEXT_MEASURES_RULE`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch

TEXT_MEASURES_RULE = (
    "a window's predicted tokens are its tokens at positions 1..seq_len-1 (stream[offset+1:offset+span] "
    "without BOS, stream[offset:offset+span] with BOS); its text is tokenizer.decode(predicted tokens, "
    "skip_special_tokens=False, clean_up_tokenization_spaces=False); n_bytes = len(text.encode('utf-8')), "
    "n_words = len(text.split()), both summed over windows (a word cut by a window edge counts in each window "
    "holding part of it); total NLL = sum of the next-token NLL (nats) of every predicted token; "
    "bits_per_byte = total NLL / (ln 2 * n_bytes); word_ppl = exp(total NLL / n_words)"
)


@dataclass(frozen=True)
class WindowSet:
    """Calibration and evaluation windows cut from one token stream.

    Calibration windows feed the sensitivity metrics; evaluation windows measure perplexity. The two
    sets never share a token. With `bos_id` set, every window is the BOS token followed by
    `seq_len - 1` stream tokens; otherwise it is `seq_len` stream tokens (the SparseGPT/Wanda protocol).
    `text_measures` maps an offset to (n_bytes, n_words) of its predicted text (None: not measured).
    """

    tokens: torch.Tensor  # 1-D int64 stream
    seq_len: int
    calib_offsets: tuple[int, ...]
    eval_offsets: tuple[int, ...]
    bos_id: int | None
    protocol_info: dict[str, Any]
    text_measures: dict[int, tuple[int, int]] | None = None

    @property
    def span(self) -> int:
        """Stream tokens consumed by one window."""
        return self.seq_len - (1 if self.bos_id is not None else 0)

    def window(self, offset: int) -> torch.Tensor:
        body = self.tokens[offset : offset + self.span]
        if self.bos_id is None:
            return body
        return torch.cat([torch.tensor([self.bos_id], dtype=body.dtype), body])

    def predicted_tokens(self, offset: int) -> torch.Tensor:
        """The stream tokens of a window that get a next-token prediction (all but the window's first)."""
        start = offset if self.bos_id is not None else offset + 1
        return self.tokens[start : offset + self.span]

    def with_text_measures(self, tokenizer: Any) -> WindowSet:
        """This WindowSet with the bytes and words of every window's predicted text (TEXT_MEASURES_RULE)."""
        measures = {}
        for offset in sorted(set(self.calib_offsets) | set(self.eval_offsets)):
            ids = self.predicted_tokens(offset).tolist()
            text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            measures[offset] = (len(text.encode("utf-8")), len(text.split()))
        return replace(self, text_measures=measures)

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
            "text_measures": TEXT_MEASURES_RULE if self.text_measures is not None else None,
        }
