"""Damaged or unusable model files, through `esa run`: exit 2, one line naming the file, no traceback,
nothing written; plus the library checks they rest on (esa.models.files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from support.tiny_gguf import write_tiny_llama_gguf

import esa.models.hf as hf
from esa.errors import EsaError
from esa.models import load_model
from esa.models.tiny import build_tiny_model, byte_tokenizer

TINY_RUN = ["--seq-len", "16", "--max-samples", "2", "--eval-samples", "2", "--topk", "3", "--quiet"]
WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "good"
    build_tiny_model("tiny-llama").save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    return write_tiny_llama_gguf(build_tiny_model("tiny-llama"), tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _cut_half(d: Path) -> None:
    data = (d / WEIGHTS).read_bytes()
    (d / WEIGHTS).write_bytes(data[: len(data) // 2])


def _absurd_header(d: Path) -> None:
    data = (d / WEIGHTS).read_bytes()
    (d / WEIGHTS).write_bytes((2**62).to_bytes(8, "little") + data[8:])


def _wrong_shape(d: Path) -> None:
    tensors = load_file(d / WEIGHTS)
    key = "model.layers.0.mlp.up_proj.weight"
    tensors[key] = tensors[key][:-1].clone()
    save_file(tensors, d / WEIGHTS, metadata={"format": "pt"})


def _no_weights(d: Path) -> None:
    (d / WEIGHTS).unlink()


def _no_config(d: Path) -> None:
    (d / "config.json").unlink()


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def _refused_pickle(d: Path) -> None:
    (d / WEIGHTS).unlink()
    torch.save({"model.embed_tokens.weight": _Evil()}, d / "pytorch_model.bin")


def _custom_code(d: Path) -> None:
    config = json.loads((d / "config.json").read_text())
    config.update(model_type="my_arch", auto_map={"AutoModelForCausalLM": "modeling_my.MyModel"})
    (d / "config.json").write_text(json.dumps(config))


def _config_is_a_list(d: Path) -> None:
    (d / "config.json").write_text("[1, 2]")


DAMAGE = {
    "cut in half": (_cut_half, [WEIGHTS, "cut short"]),
    "absurd header length": (_absurd_header, [WEIGHTS, "header length"]),
    "shape disagrees with config.json": (_wrong_shape, ["up_proj", "(63, 32)", "config.json"]),
    "config but no weights": (_no_weights, ["has config.json but no weight files (*.safetensors, *.bin, *.gguf)"]),
    "no config.json": (_no_config, ["no config.json"]),
    "pickle torch refuses": (_refused_pickle, ["pytorch_model.bin", "safely"]),
    "custom code": (_custom_code, ["--trust-remote-code"]),
    "config is a JSON list": (_config_is_a_list, ["config.json", "not a JSON object"]),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_model_directory(esa, saved, tmp_path, case):
    damage, needles = DAMAGE[case]
    model = tmp_path / "model"
    shutil.copytree(saved, model)
    damage(model)
    before = sorted(p.name for p in model.iterdir())
    out = tmp_path / "out"
    result = esa("run", "--model", model, *TINY_RUN, "--out-dir", out)
    result.assert_clean_failure(*needles)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in model.iterdir()) == before
    assert "this must never run" not in result.out


def _truncate(path: Path, size: int | None) -> None:
    data = path.read_bytes()
    path.write_bytes(b"" if size is None else data[:size])


@pytest.mark.parametrize("size, needle", [(None, "empty"), (16, "only 16 bytes"), (200, "damaged"), (-100, "damaged")])
def test_damaged_gguf(esa, gguf_file, tmp_path, monkeypatch, size, needle):
    monkeypatch.setenv("ESA_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "bad.gguf"
    data = gguf_file.read_bytes()
    bad.write_bytes(b"" if size is None else data[:size])
    out = tmp_path / "out"
    esa("run", "--model", bad, *TINY_RUN, "--out-dir", out).assert_clean_failure("bad.gguf", needle)
    assert not out.exists()
    assert not any((tmp_path / "cache").rglob("*.safetensors"))  # no cache entry for a bad file


@pytest.mark.parametrize("args, needles", [
    (["--model", ""], ["--model is empty"]),
    (["--model", "   "], ["--model is empty"]),
    (["--model", "tiny-llama", "--device-map", "garbage"], ["--device-map", "garbage"]),
])
def test_bad_model_options(esa, tmp_path, args, needles):
    out = tmp_path / "out"
    esa("run", *args, *TINY_RUN, "--out-dir", out).assert_clean_failure(*needles)
    assert list(tmp_path.iterdir()) == []


def test_unknown_hub_id_offline_is_one_fast_line(esa, tmp_path, monkeypatch, caplog):
    """No network: the hub client is switched to offline mode, so no retries and no warnings."""
    import huggingface_hub.constants as hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hf.hub_reachable.cache_clear()
    out = tmp_path / "out"
    try:
        result = esa("run", "--model", "no-such-org/no-such-model", *TINY_RUN, "--out-dir", out)
    finally:
        hf.hub_reachable.cache_clear()
    result.assert_clean_failure("no-such-org/no-such-model", "unreachable")
    assert hub.HF_HUB_OFFLINE is True
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_checks_accept_good_files(saved, tmp_path):
    """The checks must not refuse what loads: a safetensors dir, a weights-only pickle, a dir with one GGUF."""
    pickled = tmp_path / "pickled"
    shutil.copytree(saved, pickled)
    torch.save(load_file(pickled / WEIGHTS), pickled / "pytorch_model.bin")
    (pickled / WEIGHTS).unlink()
    for path in (saved, pickled):
        lm = load_model(str(path))
        ref = build_tiny_model("tiny-llama")
        assert all(torch.equal(a, b) for a, b in zip(lm.model.parameters(), ref.parameters()))


def test_custom_code_is_not_run_even_with_a_known_loader(saved, tmp_path):
    model = tmp_path / "custom"
    shutil.copytree(saved, model)
    _custom_code(model)
    (model / "modeling_my.py").write_text("raise SystemExit('foreign code ran')\n")
    with pytest.raises(EsaError, match="--trust-remote-code"):
        load_model(str(model))


def test_dataset_that_is_a_directory(esa, tmp_path):
    (tmp_path / "texts").mkdir()
    out = tmp_path / "out"
    esa("run", "--model", "tiny-llama", *TINY_RUN, "--dataset", tmp_path / "texts", "--out-dir", out).assert_clean_failure(
        "is a directory", ".txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts"]
