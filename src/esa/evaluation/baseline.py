"""Baseline perplexity of an unmodified model: named presets and a spread over seeds.

The evaluation set of every ESA run is fixed (the last `n_eval` aligned windows), so a single
number says nothing about how much perplexity depends on which text was picked. Here each seed
draws its own `n_eval` windows from a held-out pool (the last `EVAL_POOL_FACTOR * n_eval` aligned
windows), and the report gives the fixed-set result, each seed's result and the spread across seeds.
Under the `full` protocol (esa.data.protocols) the fixed set is every aligned window of the text and
each seed draws its `n_eval` windows from all of them. With a tokenizer every result also carries
bits per byte and word perplexity (esa.data.windows.TEXT_MEASURES_RULE).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch

from esa.data.corpus import Corpus
from esa.data.protocols import EVAL_PROTOCOLS, full_windows
from esa.data.sampling import make_windows
from esa.data.windows import TEXT_MEASURES_RULE
from esa.errors import EsaError
from esa.evaluation.perplexity import EvalResult, evaluate

EVAL_POOL_FACTOR = 4
SEED_RULE = (
    "fixed = last n_eval aligned windows (the evaluation set of every ESA run); each seed draws n_eval "
    "windows without replacement from the pool of the last EVAL_POOL_FACTOR * n_eval aligned windows "
    "(all windows if fewer) with torch.Generator().manual_seed(seed); every window is scored once, alone"
)
FULL_SEED_RULE = (
    "fixed = every aligned window of the text (--eval-protocol full); each seed draws n_eval windows without "
    "replacement from all of them with torch.Generator().manual_seed(seed); every window is scored once, alone"
)


@dataclass(frozen=True)
class BaselinePreset:
    """Window length and count of a baseline run; `seq_len=None` means the model's context, capped."""

    name: str
    seq_len: int | None
    n_eval: int
    seq_len_cap: int | None
    purpose: str

    def resolve_seq_len(self, max_seq_len: int | None) -> int:
        """The window length for a model whose context is `max_seq_len` (None: unknown)."""
        if self.seq_len is not None:
            return self.seq_len
        assert self.seq_len_cap is not None
        return self.seq_len_cap if max_seq_len is None else min(max_seq_len, self.seq_len_cap)


PRESETS: dict[str, BaselinePreset] = {
    "smoke": BaselinePreset("smoke", 128, 4, None, "seconds on CPU: 4 windows of 128 tokens (508 predicted)"),
    "standard": BaselinePreset(
        "standard", 512, 32, None, "the default: 32 windows of 512 tokens (16,352 predicted tokens)"
    ),
    "extended": BaselinePreset(
        "extended",
        None,
        16,
        4096,
        "long context: 16 windows of the model's context length capped at 4096 tokens (up to 65,520 predicted)",
    ),
}


def run_baseline(
    model: torch.nn.Module,
    corpus: Corpus,
    preset: str = "standard",
    seq_len: int | None = None,
    n_eval: int | None = None,
    seeds: Sequence[int] = (0,),
    batch_size: int = 1,
    bos_id: int | None = None,
    max_seq_len: int | None = None,
    progress: bool = False,
    protocol: str = "last",
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Perplexity and accuracy on the fixed evaluation set and on one seeded draw per seed.

    `seq_len` and `n_eval` override the preset's; `protocol` is "last" or "full"; with `tokenizer`
    every result has bits_per_byte and word_ppl (else None). Returns a JSON-ready dict: the protocol, `fixed`
    and `seeds` (EvalResult dicts, offsets included) and `across_seeds` (mean, std, min, max of ppl,
    mean_nll and accuracy; std is the sample standard deviation, None with fewer than two seeds).
    """
    if preset not in PRESETS:
        raise EsaError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    seq_len = chosen.resolve_seq_len(max_seq_len) if seq_len is None else seq_len
    n_eval = chosen.n_eval if n_eval is None else n_eval
    if n_eval < 1:
        raise EsaError(f"--eval-samples must be at least 1, got {n_eval}")
    if protocol not in EVAL_PROTOCOLS:
        raise EsaError(f"unknown --eval-protocol '{protocol}'; choose one of {', '.join(EVAL_PROTOCOLS)}")
    if protocol == "full":
        pool = full_windows(corpus, seq_len, bos_id, max_seq_len)
    else:
        pool = make_windows(corpus, seq_len, 0, EVAL_POOL_FACTOR * n_eval, 0, bos_id, max_seq_len)
    if tokenizer is not None:
        pool = pool.with_text_measures(tokenizer)
    n_used = min(n_eval, len(pool.eval_offsets))
    fixed = pool.eval_offsets if protocol == "full" else pool.eval_offsets[-n_used:]
    draws = {seed: _draw(pool.eval_offsets, n_used, seed) for seed in seeds}
    scored = tuple(sorted(set(fixed).union(*draws.values())))
    result = evaluate(model, replace(pool, eval_offsets=scored), "eval", batch_size, progress)
    per_seed = [{"seed": seed, **result.subset(offsets).to_dict()} for seed, offsets in draws.items()]
    info = pool.protocol_info
    return {
        "preset": chosen.name,
        "seq_len": seq_len,
        "bos_id": bos_id,
        "n_eval_requested": n_eval,
        "n_eval_used": n_used,
        "batch_size": batch_size,
        "dataset": info["dataset"],
        "eval_protocol": protocol,
        "rule": FULL_SEED_RULE if protocol == "full" else SEED_RULE,
        "text_measures": TEXT_MEASURES_RULE if tokenizer is not None else None,
        "window_span": info["window_span"],
        "n_aligned_windows": info["n_aligned_windows"],
        "pool_offsets": list(pool.eval_offsets),
        "fixed": result.subset(fixed).to_dict(),
        "seeds": per_seed,
        "across_seeds": _spread(per_seed),
    }


def _draw(pool: tuple[int, ...], n: int, seed: int) -> tuple[int, ...]:
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(pool), generator=generator)[:n]
    return tuple(pool[i] for i in sorted(picked.tolist()))


def _spread(per_seed: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not per_seed:
        return None
    spread: dict[str, Any] = {"n_seeds": len(per_seed)}
    for key in ("ppl", "mean_nll", "accuracy", "bits_per_byte", "word_ppl"):
        values = [r[key] for r in per_seed]
        if None in values:
            spread[key] = None
            continue
        spread[key] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values),
            "max": max(values),
        }
    return spread
