"""The command skeleton's shared decisions: BOS by model convention, recorded in the manifest."""

from __future__ import annotations

import json

import pytest

from esa.errors import EsaError
from esa.pipeline.command import decide_bos


class FakeTokenizer:
    """What decide_bos reads from a Hugging Face tokenizer: bos_token_id, add_bos_token, __call__."""

    def __init__(self, bos_token_id, prepends: bool, add_bos_token: bool = False) -> None:
        self.bos_token_id, self.prepends, self.add_bos_token = bos_token_id, prepends, add_bos_token

    def __call__(self, text: str) -> dict:
        return {"input_ids": ([self.bos_token_id] if self.prepends else []) + [42]}


def test_llama3_like_tokenizer_gets_bos():
    decision = decide_bos(FakeTokenizer(128000, prepends=True), "auto")
    assert decision.bos_id == 128000 and "prepends BOS" in decision.reason


def test_gemma_like_add_bos_token_flag():
    assert decide_bos(FakeTokenizer(2, prepends=False, add_bos_token=True), "auto").bos_id == 2


def test_smollm_like_tokenizer_gets_none():
    decision = decide_bos(FakeTokenizer(1, prepends=False), "auto")
    assert decision.bos_id is None and "does not prepend" in decision.reason


def test_forced_modes():
    assert decide_bos(FakeTokenizer(1, prepends=False), "on").bos_id == 1
    assert decide_bos(FakeTokenizer(128000, prepends=True), "off").bos_id is None
    with pytest.raises(EsaError, match="no BOS token"):
        decide_bos(FakeTokenizer(None, prepends=False), "on")


def test_manifest_records_the_decision(esa, tmp_path):
    out = tmp_path / "b"
    result = esa("baseline", "--model", "tiny-llama", "--seq-len", "16", "--eval-samples", "2", "--out-dir", str(out))
    assert result.code == 0, result.err
    manifest = json.loads((out / "experiment_manifest.json").read_text())
    assert manifest["data"]["bos"]["mode"] == "auto" and manifest["data"]["bos"]["prepended"] is False
    assert "BOS none" in result.out
