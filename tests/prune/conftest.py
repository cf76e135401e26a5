"""Shared tiny models and windows for the pruning tests (built once per session)."""

from __future__ import annotations

import pytest
import torch

from esa.data.windows import WindowSet
from esa.models import load_model
from esa.models.layout import describe_parameters
from esa.models.tiny import byte_tokenizer
from esa.models.types import LoadedModel

SEQ_LEN = 16


def random_windows(n_calib: int = 8, n_eval: int = 4, seq_len: int = SEQ_LEN, seed: int = 0) -> WindowSet:
    """Disjoint calibration and evaluation windows of random byte tokens."""
    n = n_calib + n_eval
    tokens = torch.randint(0, 256, (n * seq_len,), generator=torch.Generator().manual_seed(seed))
    offsets = tuple(range(0, n * seq_len, seq_len))
    return WindowSet(tokens, seq_len, offsets[:n_calib], offsets[n_calib:], None, {})


def checksums(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    from esa.perturb import tensor_checksum

    return {n: tensor_checksum(p) for n, p in model.named_parameters()}


@pytest.fixture(scope="session")
def llama() -> LoadedModel:
    return load_model("tiny-llama")


@pytest.fixture(scope="session")
def windows() -> WindowSet:
    return random_windows()


@pytest.fixture(scope="session")
def gpt2() -> LoadedModel:
    """A tiny GPT-2 (Conv1D projections, [in, out] weights) wrapped as a LoadedModel."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("gpt2", vocab_size=259, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
    params = describe_parameters(model)
    return LoadedModel(model, byte_tokenizer(), "tiny-gpt2", "tiny", "gpt2", sum(p.numel() for p in model.parameters()),
                       2, params, torch.float32, torch.device("cpu"), 64)
