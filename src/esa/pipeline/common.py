"""Steps every command shares: progress policy, model + data set-up, and the run's protocol record."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import torch

from esa.data import Corpus, load_corpus
from esa.models import LoadedModel, load_model
from esa.pipeline.config import ModelOptions

log = logging.getLogger("esa")


def show_progress(quiet: bool) -> bool:
    """Progress bars only on a terminal, never with --quiet (logs and CI stay clean)."""
    return not quiet and sys.stderr.isatty()


@dataclass
class Session:
    """A loaded model and its tokenized corpus: the inputs of every stage."""

    lm: LoadedModel
    corpus: Corpus


def open_session(model: ModelOptions, dataset: str, progress: bool, attn_implementation: str | None = None) -> Session:
    log.info("loading model %s (%s, %s)", model.model, model.dtype, model.device)
    lm = load_model(
        model.model, dtype=model.dtype, device=model.device, device_map=model.device_map,
        trust_remote_code=model.trust_remote_code, attn_implementation=attn_implementation, progress=progress,
    )
    log.info("loaded %s: %s parameters, %d layers", lm.family, f"{lm.n_params:,}", lm.n_layers)
    corpus = load_corpus(dataset, lm.tokenizer)
    log.info("dataset %s: %s tokens", dataset, f"{int(corpus.tokens.numel()):,}")
    return Session(lm=lm, corpus=corpus)


def bos_id_for(lm: LoadedModel, bos: bool) -> int | None:
    if not bos:
        return None
    bos_id = getattr(lm.tokenizer, "bos_token_id", None)
    if bos_id is None:
        from esa.errors import EsaError

        raise EsaError(f"--bos was given but the tokenizer of {lm.model_id} has no BOS token; drop --bos")
    return int(bos_id)


def set_determinism(seed: int) -> None:
    """Seed every generator ESA does not pass explicitly (dropout is off in eval mode anyway)."""
    torch.manual_seed(seed)


def fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)
