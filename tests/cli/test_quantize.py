"""`esa quantize` end to end on a tiny model: files, GGUF save, and bad input as one line with no output."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from esa.artifacts import schema

COMMON = ("--model", "tiny-llama", "--seq-len", "32", "--max-samples", "2", "--eval-samples", "2", "--quiet")


def test_grid_writes_results_plan_and_table(esa, tmp_path):
    out = tmp_path / "q"
    r = esa("quantize", *COMMON, "--bits", "4,3", "--group-size", "16", "--method", "rtn,gptq",
            "--keep-topk", "3", "--keep-metric", "magnitude", "--budget-bits", "4.25", "--allocate-by", "magnitude",
            "--out-dir", str(out))
    assert r.code == 0, r.err
    doc = json.loads((out / schema.QUANT).read_text())
    assert len(doc["configurations"]) == 6 and doc["baseline"]["ppl"] > 0
    table = pd.read_csv(out / schema.QUANT_TABLE)
    assert {"effective_bits", "ppl", "bits_per_byte", "n_kept", "seconds"} <= set(table.columns)
    assert (table["n_kept"] == 3).all() and (table.loc[table["bits"].isna(), "effective_bits"] <= 4.25).all()
    plans = json.loads((out / schema.PRECISION_PLAN).read_text())["configurations"]
    assert [p["label"] for p in plans] == list(table["label"])
    assert (out / schema.MANIFEST).is_file()


def test_save_model_writes_hf_directory_and_gguf(esa, tmp_path):
    out = tmp_path / "q"
    r = esa("quantize", *COMMON, "--bits", "4", "--group-size", "32", "--symmetric", "--save-model",
            "--out-dir", str(out))
    assert r.code == 0, r.err
    saved = json.loads((out / schema.QUANT).read_text())["saved_model"]
    assert saved["gguf_type"] == "Q4_0" and (out / saved["gguf"]).is_file()
    assert (out / "quantized_model" / "config.json").is_file() and (out / "quantized_model" / schema.PRECISION_PLAN).is_file()


@pytest.mark.parametrize("args,message", [
    (("--bits", "7"), "--bits 7 is not supported"),
    (("--group-size", "24"), "does not divide"),
    (("--budget-bits", "1.5", "--allocate-by", "magnitude"), "below the smallest width"),
    (("--keep-topk", "100000000", "--keep-metric", "magnitude"), "cannot keep"),
    (("--method", "awq"), "unknown --method"),
    (("--bits", "4,3", "--save-model"), "saves one configuration"),
])
def test_bad_input_is_one_line_and_no_output(esa, tmp_path, args, message):
    out = tmp_path / "q"
    r = esa("quantize", *COMMON, "--group-size", "16", *args, "--out-dir", str(out))  # a later flag wins
    assert r.code == 2
    assert r.err.strip().startswith("esa: error:") and message in r.err and len(r.err.strip().splitlines()) == 1
    assert not out.exists()
