"""Perplexity and next-token accuracy of a model on a set of windows.

Each window is scored on its own (the SparseGPT/Wanda non-overlapping-window protocol) with
`next_token_nll`, the one definition of the loss. Per-window results are kept, so a result can be
restricted to a subset of its windows (`EvalResult.subset`) and resampled for confidence intervals.

When the WindowSet carries text measures (`WindowSet.with_text_measures`), the result also gives the
tokenizer-free figures of `esa.data.windows.TEXT_MEASURES_RULE`: bits per byte = total NLL /
(ln 2 * bytes) and word perplexity = exp(total NLL / words), over the text the predicted tokens decode to.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from tqdm import tqdm

from esa.data.windows import WindowSet
from esa.errors import EsaError
from esa.evaluation.nll import next_token_nll

_SPLIT_NAMES = {"calib": "calibration", "eval": "evaluation"}


@dataclass(frozen=True)
class EvalResult:
    """Perplexity = exp(mean next-token NLL over every predicted token of every window).

    Every window predicts `seq_len - 1` tokens, so token means equal means of the per-window values.
    `bits_per_byte` and `word_ppl` are None when the windows carry no text measures.
    """

    split: str
    seq_len: int
    n_windows: int
    n_tokens: int
    mean_nll: float
    ppl: float
    accuracy: float
    offsets: tuple[int, ...]
    window_nll: tuple[float, ...]  # mean NLL of each window, in `offsets` order
    window_accuracy: tuple[float, ...]  # top-1 accuracy of each window, in `offsets` order
    n_bytes: int | None = None  # UTF-8 bytes of the predicted text, all windows
    n_words: int | None = None  # whitespace-split words of the predicted text, all windows
    bits_per_byte: float | None = None
    word_ppl: float | None = None
    window_bytes: tuple[int, ...] = ()  # per window, in `offsets` order (empty: not measured)
    window_words: tuple[int, ...] = ()

    @classmethod
    def from_windows(
        cls,
        split: str,
        seq_len: int,
        offsets: Sequence[int],
        window_nll: Sequence[float],
        window_accuracy: Sequence[float],
        window_bytes: Sequence[int] = (),
        window_words: Sequence[int] = (),
    ) -> EvalResult:
        """Aggregate per-window values (each over `seq_len - 1` predicted tokens)."""
        n = len(offsets)
        mean_nll = math.fsum(window_nll) / n
        total_nll = math.fsum(window_nll) * (seq_len - 1)
        n_bytes = sum(window_bytes) if window_bytes else None
        n_words = sum(window_words) if window_words else None
        return cls(
            split=split,
            seq_len=seq_len,
            n_windows=n,
            n_tokens=n * (seq_len - 1),
            mean_nll=mean_nll,
            ppl=_exp(mean_nll),
            accuracy=math.fsum(window_accuracy) / n,
            offsets=tuple(offsets),
            window_nll=tuple(window_nll),
            window_accuracy=tuple(window_accuracy),
            n_bytes=n_bytes,
            n_words=n_words,
            bits_per_byte=total_nll / (math.log(2) * n_bytes) if n_bytes else None,
            word_ppl=_exp(total_nll / n_words) if n_words else None,
            window_bytes=tuple(window_bytes),
            window_words=tuple(window_words),
        )

    def subset(self, offsets: Sequence[int]) -> EvalResult:
        """The result these windows alone would give (each window is scored independently)."""
        index = {o: i for i, o in enumerate(self.offsets)}
        missing = [o for o in offsets if o not in index]
        if missing:
            raise ValueError(f"offsets {missing[:5]} were not evaluated")
        rows = [index[o] for o in offsets]
        return EvalResult.from_windows(
            self.split,
            self.seq_len,
            offsets,
            [self.window_nll[i] for i in rows],
            [self.window_accuracy[i] for i in rows],
            [self.window_bytes[i] for i in rows] if self.window_bytes else (),
            [self.window_words[i] for i in rows] if self.window_words else (),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, per-window lists included."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}


def evaluate(
    model: torch.nn.Module,
    windows: WindowSet,
    split: str = "eval",
    batch_size: int = 1,
    progress: bool = False,
    allow_nonfinite: bool = False,
) -> EvalResult:
    """Score every `split` window of `windows`; the model is put in eval mode for the call.

    A non-finite loss is an error for a model as loaded; a perturbed model (a bit flip to inf, say) may
    legitimately produce one, and with `allow_nonfinite` its perplexity is then reported as inf/NaN.
    """
    offsets = {"calib": windows.calib_offsets, "eval": windows.eval_offsets}[split]
    if not offsets:
        raise EsaError(f"there are no '{split}' windows to evaluate")
    if batch_size < 1:
        raise EsaError(f"--batch-size must be at least 1, got {batch_size}")
    device = _input_device(model)
    window_nll: list[float] = []
    window_accuracy: list[float] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batches = windows.batches(split, batch_size, device)
            total = math.ceil(len(offsets) / batch_size)
            for batch in tqdm(batches, total=total, desc=f"evaluating {split}", disable=not progress):
                nll, correct = next_token_nll(model, batch)
                window_nll += (nll.double().sum(dim=1) / nll.shape[1]).tolist()
                window_accuracy += (correct.double().sum(dim=1) / correct.shape[1]).tolist()
    finally:
        model.train(was_training)
    for offset, value in zip(offsets, window_nll):
        if not allow_nonfinite and not math.isfinite(value):
            raise EsaError(
                f"non-finite loss on {_SPLIT_NAMES[split]} window at offset {offset}: "
                "the model produced NaN/inf (try --dtype fp32)"
            )
    measures = windows.text_measures
    if measures is not None:
        unmeasured = [o for o in offsets if o not in measures]
        if unmeasured:
            raise ValueError(f"windows at offsets {unmeasured[:5]} carry no text measures; call with_text_measures")
    return EvalResult.from_windows(
        split,
        windows.seq_len,
        offsets,
        window_nll,
        window_accuracy,
        [measures[o][0] for o in offsets] if measures is not None else (),
        [measures[o][1] for o in offsets] if measures is not None else (),
    )


def _exp(x: float) -> float:
    """exp that gives inf instead of raising on overflow (NaN stays NaN)."""
    return math.exp(x) if x < 709.0 or math.isnan(x) else math.inf


def _input_device(model: torch.nn.Module) -> torch.device:
    """Where input ids must go: the embedding's device (differs from the first parameter's when sharded)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embedding is not None:
        return embedding.weight.device
    return next(model.parameters()).device
