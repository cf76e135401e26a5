from __future__ import annotations

import pytest

from esa.errors import EsaError
from esa.ranking import filter_params

NAMES = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
    "model.layers.1.self_attn.q_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
    "model.norm.weight",
]


def test_no_patterns_keep_everything_in_order():
    assert filter_params(NAMES, None, None) == NAMES
    assert filter_params({n: None for n in NAMES}, [], []) == NAMES  # a dict of ParamInfo works too


def test_include_any_then_exclude_any():
    assert filter_params(NAMES, ["mlp", "q_proj"], [r"layers\.1\."]) == NAMES[1:3]
    assert filter_params(NAMES, None, ["embed", "norm"]) == NAMES[1:5]
    assert filter_params(NAMES, [r"^model\.layers\.\d+\.mlp"], None) == [NAMES[2], NAMES[4]]


def test_include_matching_nothing_shows_a_real_name():
    with pytest.raises(EsaError, match=r"--include 'foo' matches no parameter; parameter names look like "
                                       r"'model\.layers\.0\.self_attn\.q_proj\.weight'"):
        filter_params(NAMES, ["foo"], None)


def test_exclude_removing_everything():
    with pytest.raises(EsaError, match="--exclude 'weight' removes every selected parameter"):
        filter_params(NAMES, None, ["weight"])


@pytest.mark.parametrize("flag, kwargs", [("--include", {"include": ["("]}), ("--exclude", {"exclude": ["[a-"]})])
def test_invalid_regex(flag, kwargs):
    with pytest.raises(EsaError, match=f"{flag} .* is not a valid regular expression"):
        filter_params(NAMES, **kwargs)
