from __future__ import annotations

import importlib
import json

import pandas as pd
import pytest

from esa.artifacts import schema

TINY = ("--model", "tiny-llama", "--seq-len", "32", "--max-samples", "4", "--eval-samples", "2",
        "--batch-size", "2", "--steps", "2", "--quiet")


def test_finetune_end_to_end_on_builtin_domains(esa, tmp_path):
    out = tmp_path / "out"
    result = esa("finetune", *TINY, "--mode", "sparse,full", "--budget", "1%", "--lr", "1e-3", "--save-plots",
                 "--out-dir", str(out))
    assert result.code == 0, result.err
    saved = json.loads((out / schema.FINETUNE).read_text())
    assert [r["mode"] for r in saved["runs"]] == ["sparse", "full"]
    sparse, full = saved["runs"]
    assert sparse["trainable"] == sparse["budget_k"] == round(0.01 * sparse["n_weights"])
    assert full["trainable"] == full["n_weights"] and sparse["train_ppl_before"] == full["train_ppl_before"]
    assert sparse["retain_ppl_before"] is not None and len(sparse["curve"]) == 2
    table = pd.read_csv(out / schema.FINETUNE_TABLE)
    assert list(table["mode"]) == ["sparse", "full"] and "retain_ppl_after" in table
    assert (out / schema.PLOTS_DIR / "finetune_curves.png").is_file()
    assert (out / schema.PLOTS_DIR / "finetune_tradeoff.png").is_file()
    assert "target PPL" in result.out


def test_finetune_files_and_sparse_delta(esa, tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("The quick brown fox jumps over the lazy dog. " * 20)
    out = tmp_path / "out"
    result = esa("finetune", *TINY, "--train", str(train), "--budget-k", "50", "--lr", "1e-2", "--save", "tuned",
                 "--out-dir", str(out))
    assert result.code == 0, result.err
    assert (out / "tuned" / "sparse_delta.safetensors").is_file()
    run = json.loads((out / schema.FINETUNE).read_text())["runs"][0]
    assert run["retain_ppl_before"] is None and 0 < run["n_changed"] <= 50


@pytest.mark.parametrize("args, match", [
    (("--budget", "0%"), "above 0"),
    (("--budget", "150%"), "at most 100%"),
    (("--mode", "full", "--budget", "1%"), "trains every weight"),
    (("--mode", "lora", "--protect", "ewc"), "LoRA never moves"),
    (("--mode", "warp"), "unknown fine-tuning mode"),
    (("--train", "missing.txt"), "does not exist"),
    (("--domains", "poetry"), "unknown built-in domains"),
    (("--domains", "code-vs-docs", "--train", __file__), "with --train give --retain"),
    (("--mode", "sparse", "--protect-superweights"), "give only those modes"),
])
def test_bad_input_is_one_line_and_no_output(esa, tmp_path, args, match):
    out = tmp_path / "out"
    result = esa("finetune", *TINY, *args, "--out-dir", str(out))
    assert result.code == 2 and match in result.err and len(result.err.strip().splitlines()) == 1
    assert not out.exists()


def test_empty_and_too_short_training_files(esa, tmp_path):
    empty, short = tmp_path / "empty.txt", tmp_path / "short.txt"
    empty.write_text("")
    short.write_text("too short")
    for path, match in ((empty, "no text"), (short, "fewer than")):
        out = tmp_path / f"out_{path.stem}"
        result = esa("finetune", *TINY, "--train", str(path), "--out-dir", str(out))
        assert result.code == 2 and match in result.err
        assert not out.exists()


def test_code_vs_docs_domains_and_protected_superweights(esa, tmp_path, monkeypatch):
    pinned = [("model.layers.0.mlp.down_proj.weight", 5)]
    monkeypatch.setattr(importlib.import_module("esa.finetune"), "superweight_candidates", lambda lm: pinned)
    out = tmp_path / "out"
    result = esa("finetune", *TINY, "--domains", "code-vs-docs", "--mode", "full,frozen-critical", "--budget-k", "10",
                 "--protect-superweights", "--out-dir", str(out))
    assert result.code == 0, result.err
    saved = json.loads((out / schema.FINETUNE).read_text())
    full, frozen = saved["runs"]
    assert full["n_frozen"] == 1 and 10 <= frozen["n_frozen"] <= 11
    assert full["protocol"]["protected_superweights"] == ["model.layers.0.mlp.down_proj.weight[0,5]"]
    manifest = json.loads((out / schema.MANIFEST).read_text())
    assert "builtin-code" in json.dumps(manifest)


def test_no_superweight_candidate_is_one_line_and_no_output(esa, tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.import_module("esa.finetune"), "superweight_candidates", lambda lm: [])
    out = tmp_path / "out"
    result = esa("finetune", *TINY, "--mode", "full", "--protect-superweights", "--out-dir", str(out))
    assert result.code == 2 and "no super-weight candidate" in result.err and not out.exists()
