"""Cutting a corpus into calibration and evaluation windows, by one recorded rule.

The stream is cut into aligned, non-overlapping windows of `span` tokens starting at offset 0. The
last `n_eval` of them are the evaluation set: fixed, whatever the seed, so runs that differ in seed
or metric are evaluated on the same text. Calibration windows are a seeded draw from the windows
before the evaluation region, so the two sets never share a token.
"""

from __future__ import annotations

import torch

from esa.data.corpus import Corpus
from esa.data.windows import WindowSet
from esa.errors import EsaError

RULE = "eval = last N aligned windows; calib = seeded draw from the aligned windows before them"


def make_windows(
    corpus: Corpus,
    seq_len: int,
    n_calib: int,
    n_eval: int,
    seed: int,
    bos_id: int | None = None,
    max_seq_len: int | None = None,
) -> WindowSet:
    """Calibration and evaluation windows of `seq_len` tokens (BOS included when `bos_id` is set).

    Asking for more evaluation or calibration windows than the corpus holds uses all there are;
    the protocol records requested and used counts. The draw uses its own
    `torch.Generator().manual_seed(seed)`, so the global random state is neither read nor changed.
    """
    if seq_len < 2:
        raise EsaError(f"--seq-len must be at least 2 (one token predicts the next), got {seq_len}")
    if max_seq_len is not None and seq_len > max_seq_len:
        raise EsaError(f"--seq-len {seq_len} exceeds the model's context of {max_seq_len} tokens")
    if n_eval < 1:
        raise EsaError(f"--eval-samples must be at least 1, got {n_eval}")
    if n_calib < 0:
        raise EsaError(f"--max-samples must be at least 0, got {n_calib}")
    span = seq_len - (1 if bos_id is not None else 0)
    n_tokens = int(corpus.tokens.numel())
    n_windows = n_tokens // span
    if n_windows == 0:
        raise EsaError(
            f"the corpus has {n_tokens} tokens, fewer than one window of {span}; "
            "use a larger dataset or a smaller --seq-len"
        )
    n_eval_used = min(n_eval, n_windows)
    n_before = n_windows - n_eval_used
    if n_calib > 0 and n_before == 0:
        raise EsaError(
            f"the corpus has {n_windows} window(s) of {span} tokens and {n_eval_used} are for evaluation, "
            "leaving none for calibration; lower --eval-samples or --seq-len, or use a larger dataset"
        )
    n_calib_used = min(n_calib, n_before)
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randperm(n_before, generator=generator)[:n_calib_used]
    calib_offsets = tuple(int(i) * span for i in sorted(drawn.tolist()))
    eval_offsets = tuple(i * span for i in range(n_before, n_windows))
    protocol_info = {
        "dataset": corpus.description,
        "rule": RULE,
        "seed": seed,
        "window_span": span,
        "n_aligned_windows": n_windows,
        "unused_tail_tokens": n_tokens - n_windows * span,
        "n_calib_requested": n_calib,
        "n_calib_used": n_calib_used,
        "n_eval_requested": n_eval,
        "n_eval_used": n_eval_used,
    }
    return WindowSet(
        tokens=corpus.tokens,
        seq_len=seq_len,
        calib_offsets=calib_offsets,
        eval_offsets=eval_offsets,
        bos_id=bos_id,
        protocol_info=protocol_info,
    )
