"""`esa faults / attack / fingerprint / verify / diff` end to end on tiny models: files, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

SMALL = ("--max-samples", "2", "--eval-samples", "1", "--seq-len", "24", "--device", "cpu")
DOWN = "model.layers.1.mlp.down_proj.weight"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """tiny-llama saved as a directory, and a copy with one weight of DOWN changed by one ulp."""
    import esa

    root = tmp_path_factory.mktemp("models")
    lm = esa.load_model("tiny-llama")
    lm.model.save_pretrained(root / "base")
    lm.tokenizer.save_pretrained(root / "base")
    with torch.no_grad():
        dict(lm.model.named_parameters())[DOWN].view(-1).view(torch.int32)[40] += 1
    lm.model.save_pretrained(root / "edited")
    lm.tokenizer.save_pretrained(root / "edited")
    return root / "base", root / "edited"


def test_faults_random_vs_critical(esa, tmp_path) -> None:
    out = tmp_path / "out"
    result = esa("faults", "--model", "tiny-llama", "--sites", "random,topk:magnitude:20", "--injections", "6",
                 "--bits", "exponent", "--save-plots", *SMALL, "--out-dir", str(out))
    assert result.code == 0, result.err
    data = json.loads((out / "faults.json").read_text())
    assert set(data["campaigns"]) == {"random", "topk_magnitude_20"}
    assert all(c["overall"]["n"] == 6 for c in data["campaigns"].values())
    assert (out / "faults.csv").exists() and (out / "plots" / "fault_bits.png").exists() and "P(fail)" in result.out


def test_faults_in_integer_codes(esa, tmp_path) -> None:
    out = tmp_path / "out"
    result = esa("faults", "--model", "tiny-llama", "--quantize-bits", "3", "--quantize-group-size", "16",
                 "--sites", "random,topk:magnitude:20", "--injections", "5", *SMALL, "--out-dir", str(out))
    assert result.code == 0, result.err
    data = json.loads((out / "faults.json").read_text())
    assert data["quantization"]["label"] == "rtn 3b g16 asym" and data["quantization"]["n_kept"] == 0
    for campaign in data["campaigns"].values():
        assert campaign["dtype"].startswith("uint3 codes") and campaign["overall"]["n"] == 5
        assert all(0 <= t["bit"] < 3 and t["new_code"] == t["code"] ^ (1 << t["bit"]) for t in campaign["trials"])
    assert "code bit" in result.out and "code" in (out / "faults.csv").read_text().splitlines()[0].split(",")


def test_bad_code_faults_are_one_line_and_exit_2(esa, tmp_path) -> None:
    out = tmp_path / "out"
    for args, words in ((("--quantize-bits", "7"), "not supported"), (("--quantize-bits", "4", "--bits", "4"), "outside"),
                        (("--quantize-bits", "4", "--bits", "sign"), "no 'sign' bits"),
                        (("--quantize-bits", "4", "--quantize-group-size", "24"), "--quantize-group-size 24 does not divide")):
        result = esa("faults", "--model", "tiny-llama", *args, "--injections", "2", *SMALL, "--out-dir", str(out))
        assert result.code == 2 and words in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1 and result.err.startswith("esa: error:")
    assert not out.exists()


def test_attack_with_defence(esa, tmp_path) -> None:
    out = tmp_path / "out"
    result = esa("attack", "--model", "tiny-llama", "--target-ppl", "1e9", "--max-flips", "1", "--protect-topk", "5",
                 "--tries", "1", *SMALL, "--out-dir", str(out))
    assert result.code == 0, result.err
    data = json.loads((out / "attack.json").read_text())
    assert data["open"]["n_flips"] == 1 and data["defended"]["n_protected"] == 5


def test_fingerprint_verify_and_diff(esa, tmp_path, model_dirs) -> None:
    base, edited = model_dirs
    fp = tmp_path / "fp.json"
    assert esa("fingerprint", "--model", str(base), "--out", str(fp), "--topk", "10", *SMALL).code == 0
    intact = esa("verify", "--model", str(base), "--against", str(fp), "--device", "cpu")
    assert intact.code == 0 and "intact" in intact.out
    tampered = esa("verify", "--model", str(edited), "--against", str(fp), "--reference", str(base), "--device", "cpu")
    assert tampered.code == 1 and f"{DOWN}[0,40]" in tampered.out
    out = tmp_path / "diff"
    result = esa("diff", str(base), str(edited), "--topk", "10", *SMALL, "--out-dir", str(out))
    assert result.code == 0, result.err
    assert json.loads((out / "diff.json").read_text())["tensors"][0]["param"] == DOWN


def test_bad_input_is_one_line_and_exit_2(esa, tmp_path, model_dirs) -> None:
    base, _ = model_dirs
    fp = tmp_path / "fp.json"
    assert esa("fingerprint", "--model", "tiny-llama", "--out", str(fp), "--topk", "5", *SMALL).code == 0
    other = esa("verify", "--model", "tiny-mistral", "--against", str(fp), "--device", "cpu")
    broken = tmp_path / "broken.json"
    broken.write_text(fp.read_text().replace("model.layers.0", "model.layers.9", 1))
    corrupted = esa("verify", "--model", "tiny-llama", "--against", str(broken), "--device", "cpu")
    out = tmp_path / "out"
    bad_bit = esa("faults", "--model", "tiny-llama", "--bits", "32", "--injections", "2", *SMALL, "--out-dir", str(out))
    empty = esa("faults", "--model", "tiny-llama", "--sites", "topk:magnitude:0", "--injections", "2", *SMALL,
                "--out-dir", str(out))
    for result, words in ((other, "another model"), (corrupted, "corrupted"), (bad_bit, "outside"), (empty, "empty")):
        assert result.code == 2 and words in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1 and result.err.startswith("esa: error:")
    assert not out.exists()
