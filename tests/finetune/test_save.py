from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from esa.errors import EsaError
from esa.finetune import DELTA_FILE, apply_delta, finetune, preserved, save_finetuned
from esa.models import load_model


def test_sparse_delta_round_trips_to_the_same_model(bits, lm, domains, tmp_path):
    train, _ = domains
    with preserved(lm):
        result = finetune(lm, train, train, superweight=None, mode="sparse", budget_k=500, steps=3, lr=1e-2, batch_size=2)
        tuned = bits(lm)
        path = save_finetuned(lm, result, tmp_path)
    assert path.name == DELTA_FILE
    with safe_open(str(path), framework="pt") as f:
        n_stored = sum(f.get_tensor(key).numel() for key in f.keys() if key.endswith("::indices"))
    assert 0 < n_stored <= 500  # only changed weights are stored
    base = load_model("tiny-llama")
    assert apply_delta(base.model, path) == n_stored
    assert all(torch.equal(v, tuned[n]) for n, v in bits(base).items())


def test_dense_modes_save_a_hugging_face_directory(bits, lm, domains, tmp_path):
    from transformers import AutoModelForCausalLM

    train, _ = domains
    with preserved(lm):
        result = finetune(lm, train, train, superweight=None, mode="full", steps=1, batch_size=2)
        tuned = bits(lm)
        save_finetuned(lm, result, tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert all(torch.equal(p.detach().view(torch.int32), tuned[n]) for n, p in loaded.named_parameters())


def test_a_delta_for_another_model_is_refused_without_writing(bits, lm, domains, tmp_path):
    train, _ = domains
    with preserved(lm):
        result = finetune(lm, train, train, superweight=None, mode="sparse", budget_k=200, steps=2, lr=1e-2, batch_size=2)
        path = save_finetuned(lm, result, tmp_path)
    other = load_model("tiny-gptneox")
    before = bits(other)
    with pytest.raises(EsaError, match="base model"):
        apply_delta(other.model, path)
    assert all(torch.equal(v, before[n]) for n, v in bits(other).items())
