"""The dequantized-GGUF cache: damaged entries are found and rebuilt (with a note), an unwritable cache
root falls back to a temporary cache with one warning, and a CLI run through either ends cleanly."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from support.tiny_gguf import write_tiny_llama_gguf

import esa.models.gguf as gguf_module
from esa.models import load_model
from esa.models.gguf import CACHE_META, GgufSource
from esa.models.tiny import build_tiny_model

TINY_RUN = ["--seq-len", "16", "--max-samples", "2", "--eval-samples", "2", "--topk", "3", "--quiet"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny GGUF and one good cache entry for it (the conversion is the slow part: done once)."""
    root = tmp_path_factory.mktemp("gguf")
    gguf = write_tiny_llama_gguf(build_tiny_model("tiny-llama"), root / "tiny.gguf")
    cache = root / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESA_CACHE_DIR", str(cache))
        load_model(str(gguf))
    return gguf, cache / GgufSource.file(gguf).cache_key()


@pytest.fixture
def cache(built, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(gguf, entry): a private copy of the good entry under this test's ESA_CACHE_DIR."""
    gguf, entry = built
    root = tmp_path / "cache"
    shutil.copytree(entry, root / entry.name)
    monkeypatch.setenv("ESA_CACHE_DIR", str(root))
    return gguf, root / entry.name


def weights(lm) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in lm.model.state_dict().items()}


def _truncate(entry: Path) -> None:
    path = entry / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])


def _flip_tokenizer_byte(entry: Path) -> None:
    path = entry / "tokenizer.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def _delete_weights(entry: Path) -> None:
    (entry / "model.safetensors").unlink()


def _garble_meta(entry: Path) -> None:
    (entry / CACHE_META).write_bytes(b"\x00\xff")


@pytest.mark.parametrize("damage", [_truncate, _flip_tokenizer_byte, _delete_weights, _garble_meta])
def test_damaged_entry_is_rebuilt(cache, caplog, damage):
    gguf, entry = cache
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="esa"):
        lm = load_model(str(gguf))
    assert any("damaged" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    assert all(torch.equal(a, b) for a, b in zip(lm.model.parameters(), build_tiny_model("tiny-llama").parameters()))
    gguf_module.verify_entry(entry)  # the rebuilt entry is whole again


def test_entry_without_records_is_checked_and_upgraded(cache, monkeypatch):
    gguf, entry = cache
    meta = json.loads((entry / CACHE_META).read_text())
    del meta["files"]
    (entry / CACHE_META).write_text(json.dumps(meta))
    monkeypatch.setattr(gguf_module, "build_cache", lambda *a: pytest.fail("a good legacy entry must be reused"))
    load_model(str(gguf))
    assert "model.safetensors" in json.loads((entry / CACHE_META).read_text())["files"]


@pytest.mark.parametrize("where", ["cache dir is a file", "home is not writable"])
def test_unwritable_cache_root_falls_back_to_a_temporary_cache(built, tmp_path, monkeypatch, caplog, where):
    gguf, _ = built
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    if where == "cache dir is a file":
        monkeypatch.setenv("ESA_CACHE_DIR", str(blocker))
    else:  # HOME under a file: nothing can be created there (root ignores permission bits, not this)
        monkeypatch.delenv("ESA_CACHE_DIR", raising=False)
        monkeypatch.setenv("HOME", str(blocker / "home"))
    monkeypatch.setattr(gguf_module, "_fallback", None)
    with caplog.at_level(logging.WARNING, logger="esa"):
        lm = load_model(str(gguf))
        again = load_model(str(gguf))  # the same temporary cache, warned once
    temporary = gguf_module._fallback
    warnings = [r.getMessage() for r in caplog.records if "temporary cache" in r.getMessage()]
    assert len(warnings) == 1 and str(gguf_module.cache_dir()) in warnings[0]
    assert blocker.read_text() == "not a directory"
    assert all(torch.equal(a, b) for a, b in zip(lm.model.parameters(), again.model.parameters()))
    assert temporary is not None and any(temporary.iterdir())


def test_cli_run_with_a_cache_dir_that_is_a_file(esa, built, tmp_path, monkeypatch):
    gguf, _ = built
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    monkeypatch.setenv("ESA_CACHE_DIR", str(blocker))
    monkeypatch.setattr(gguf_module, "_fallback", None)
    result = esa("run", "--model", gguf, *TINY_RUN, "--out-dir", tmp_path / "out")
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    assert (tmp_path / "out" / "experiment_manifest.json").is_file()
