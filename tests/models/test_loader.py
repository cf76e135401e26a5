"""load_model: every spec kind, its options, and the errors a user can fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from esa.errors import EsaError
from esa.models import BUNDLED_ALIASES, describe_parameters, input_device, load_model
from esa.models.tiny import TINY_CONFIGS, build_tiny_model, byte_tokenizer


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_tiny_alias_facts(name: str) -> None:
    lm = load_model(name)
    model = lm.model
    assert lm.source == "tiny" and lm.model_id == name
    assert lm.family == TINY_CONFIGS[name][0]
    assert lm.n_layers == model.config.num_hidden_layers
    assert lm.n_params == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert lm.max_seq_len == model.config.max_position_embeddings
    assert list(lm.params) == list(describe_parameters(model))
    assert lm.device == torch.device("cpu") and lm.dtype == torch.float32
    assert not model.training and all(p.requires_grad for p in model.parameters())
    assert lm.extra["tied_embeddings"] is False
    assert lm.tokenizer("ab").input_ids == [97, 98]
    ref = build_tiny_model(name)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))


def test_dtype_option() -> None:
    lm = load_model("tiny-llama", dtype="bf16")
    assert lm.dtype == torch.bfloat16
    assert {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}
    assert lm.summary()["dtype"] == "bfloat16"


def test_bad_dtype() -> None:
    with pytest.raises(EsaError, match="unknown dtype 'int8': use one of fp32, bf16, fp16"):
        load_model("tiny-llama", dtype="int8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_cuda_without_cuda() -> None:
    with pytest.raises(EsaError, match=r"CUDA was requested but torch.cuda.is_available\(\) is False; use --device cpu"):
        load_model("tiny-llama", device="cuda")


def test_bad_device() -> None:
    with pytest.raises(EsaError, match="unknown device 'tpu'"):
        load_model("tiny-llama", device="tpu")


def test_auto_device_and_device_map() -> None:
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    for lm in (load_model("tiny-llama", device="auto"), load_model("tiny-llama", device_map="auto")):
        assert lm.device.type == expected.type
        assert input_device(lm.model) == lm.device


@pytest.mark.parametrize("spec", ["not a model!", "no/such/local/dir", "missing.gguf"])
def test_unknown_model_is_clear(spec: str) -> None:
    with pytest.raises(EsaError, match="not found"):
        load_model(spec)


def test_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EsaError) as err:
        load_model("someone/no-such-model")
    message = str(err.value)
    assert message.startswith("model 'someone/no-such-model' not found: not a local path, bundled alias (")
    assert all(alias in message for alias in BUNDLED_ALIASES)
    assert "\n" not in message


def test_local_directory(tmp_path: Path) -> None:
    build_tiny_model("tiny-mistral").save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    lm = load_model(str(tmp_path), device_map="auto")
    assert lm.source == "local" and lm.family == "mistral"
    ref = build_tiny_model("tiny-mistral")
    assert all(torch.equal(a, b.to(a.device)) for a, b in zip(ref.parameters(), lm.model.parameters()))
    assert lm.tokenizer("hi").input_ids == [104, 105]


def test_bundled_aliases_listed() -> None:
    assert {"smollm2-135m", "gemma3-270m", *TINY_CONFIGS} <= set(BUNDLED_ALIASES)
    assert all(desc and "\n" not in desc for desc in BUNDLED_ALIASES.values())
