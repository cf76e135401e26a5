"""Evaluation protocols: which windows of the text a perplexity is computed on.

- `last` (ESA's default): the last `n_eval` aligned windows; calibration windows come from before
  them, so the two never share a token (`make_windows`).
- `full`: every aligned, non-overlapping window of the whole text, the trailing partial window
  dropped, no BOS unless asked: the loop SparseGPT's and Wanda's `eval_ppl` run on WikiText-2 test
  (n = len(tokens) // seq_len windows, window i = tokens[i*seq_len:(i+1)*seq_len]). It leaves no text for
  calibration, so it is for baselines, or for runs that calibrate on another dataset.

The protocol's name and rule go into the WindowSet's protocol (and so into every manifest).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from esa.data.corpus import Corpus
from esa.data.sampling import make_windows
from esa.data.windows import WindowSet
from esa.errors import EsaError

EVAL_PROTOCOLS = {
    "last": "eval = last N aligned windows; calib = seeded draw from the aligned windows before them",
    "full": "eval = every aligned non-overlapping window of the text (trailing partial window dropped), "
    "as SparseGPT/Wanda eval_ppl; no calibration windows",
}


def full_windows(corpus: Corpus, seq_len: int, bos_id: int | None = None, max_seq_len: int | None = None) -> WindowSet:
    """Every aligned window of `corpus` as evaluation windows (the `full` protocol), none for calibration."""
    span = seq_len - (1 if bos_id is not None else 0)
    n_windows = max(int(corpus.tokens.numel()) // max(span, 1), 1)  # make_windows rejects a too-short corpus
    windows = make_windows(corpus, seq_len, 0, n_windows, 0, bos_id, max_seq_len)
    info = {**windows.protocol_info, "rule": EVAL_PROTOCOLS["full"], "eval_protocol": "full", "n_eval_requested": "all"}
    return replace(windows, protocol_info=info)


def make_protocol_windows(
    corpus: Corpus,
    seq_len: int,
    n_calib: int,
    n_eval: int,
    seed: int,
    protocol: str = "last",
    bos_id: int | None = None,
    max_seq_len: int | None = None,
    tokenizer: Any = None,
) -> WindowSet:
    """`make_windows` under a named protocol; with `tokenizer`, the windows carry bytes and words too.

    `n_eval` is ignored by `full` (it takes every window); `full` with `n_calib > 0` is an error, since
    calibration windows would then share tokens with the evaluation.
    """
    if protocol not in EVAL_PROTOCOLS:
        raise EsaError(f"unknown --eval-protocol '{protocol}'; choose one of {', '.join(EVAL_PROTOCOLS)}")
    if protocol == "full":
        if n_calib > 0:
            raise EsaError(
                "--eval-protocol full evaluates every window of the text, leaving none for calibration; "
                "use --eval-protocol last, or calibrate on another dataset"
            )
        windows = full_windows(corpus, seq_len, bos_id, max_seq_len)
    else:
        windows = make_windows(corpus, seq_len, n_calib, n_eval, seed, bos_id, max_seq_len)
        windows = replace(windows, protocol_info={**windows.protocol_info, "eval_protocol": "last"})
    return windows.with_text_measures(tokenizer) if tokenizer is not None else windows
