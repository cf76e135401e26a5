"""`esa plan` on malformed configs and numeric options: exit 2, one line naming the field, no traceback,
no JSON written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esa.scale.configs import resolve_config

GOOD = {"model_type": "llama", "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}

CONFIGS = {
    "unknown model_type": ({**GOOD, "model_type": "no_such_arch"}, "no_such_arch"),
    "no model_type": ({k: v for k, v in GOOD.items() if k != "model_type"}, "no model_type"),
    "a JSON list": ([GOOD], "JSON list"),
    "zero heads": ({**GOOD, "num_attention_heads": 0}, "num_attention_heads is 0"),
    "negative hidden size": ({**GOOD, "hidden_size": -32}, "hidden_size is -32"),
    "negative layers": ({**GOOD, "num_hidden_layers": -1}, "num_hidden_layers is -1"),
    "text size": ({**GOOD, "vocab_size": "many"}, "vocab_size is 'many'"),
    "fractional size": ({**GOOD, "intermediate_size": 63.5}, "intermediate_size is 63.5"),
    "heads not dividing": ({**GOOD, "num_attention_heads": 3, "num_key_value_heads": 3}, "not divisible"),
    "kv heads not dividing": ({**GOOD, "num_key_value_heads": 3}, "num_key_value_heads"),
    "not JSON": (None, "cannot read"),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_malformed_config(esa, tmp_path, case):
    config, needle = CONFIGS[case]
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{not json" if config is None else json.dumps(config))
    resolve_config.cache_clear()
    esa("plan", "--model", model, "--json", tmp_path / "plan.json").assert_clean_failure(needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf"])
def test_gpu_memory_must_be_positive_and_finite(esa, tmp_path, value):
    esa("plan", "--model", "tiny-llama", "--gpu-memory", value, "--json", tmp_path / "p.json").assert_clean_failure("--gpu-memory")
    assert list(tmp_path.iterdir()) == []


def test_json_pointing_at_a_directory(esa, tmp_path):
    target = tmp_path / "plans"
    target.mkdir()
    esa("plan", "--model", "tiny-llama", "--json", target).assert_clean_failure(str(target), "is a directory")
    assert list(target.iterdir()) == []


def test_good_config_still_plans(esa, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(GOOD))
    resolve_config.cache_clear()
    result = esa("plan", "--model", model, "--gpu-memory", "1.5", "--json", tmp_path / "plan.json")
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "plan.json").read_text())["capacity_gib"] == 1.5
