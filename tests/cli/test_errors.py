"""Bad input: one clear line on stderr, exit code 2, no traceback, no files left behind."""

from __future__ import annotations

import pytest

TINY = ["--model", "tiny-llama", "--seq-len", "16", "--max-samples", "2", "--eval-samples", "2", "--quiet"]


def assert_clean_failure(result, out_dir, *needles: str) -> None:
    assert result.code == 2, (result.code, result.err)
    lines = [line for line in result.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("esa: error: ")
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out_dir.exists()
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}")]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--metric", "nope"], ["nope", "grad_x_weight"]),
        (["--topk", "0"], ["--topk"]),
        (["--mode", "global", "--topk", "999999999"], ["999999999"]),
        (["--include", "no_such_param"], ["no_such_param"]),
        (["--mode", "sideways"], ["--mode"]),
        (["--perturb", "melt"], ["melt"]),
        (["--perturb", "gauss_noise", "--perturb-scale", "-1"], ["scale"]),
        (["--perturb", "bit_flip", "--perturb-prob", "1.5"], ["prob"]),
        (["--dtype", "fp8"], ["fp8"]),
        (["--device", "tpu"], ["tpu"]),
        (["--seq-len", "100000"], ["100000"]),
        (["--dataset", "/no/such/file.txt"], ["/no/such/file.txt"]),
        (["--seeds", "1,x"], ["--seeds"]),
    ],
)
def test_run_bad_input(esa, tmp_path, args, needles):
    out = tmp_path / "out"
    result = esa("run", *TINY, *args, "--out-dir", out)
    assert_clean_failure(result, out, *needles)


def test_unknown_model(esa, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    assert_clean_failure(esa("baseline", "--model", "no-such-model-xyz", "--out-dir", out), out, "no-such-model-xyz")


def test_cuda_without_cuda(esa, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    assert_clean_failure(esa("baseline", "--model", "tiny-llama", "--device", "cuda", "--out-dir", out), out, "CUDA")


@pytest.mark.parametrize("content, needle", [("", "empty"), ("too short", "fewer than one window")])
def test_bad_text_file(esa, tmp_path, content, needle):
    text = tmp_path / "corpus.txt"
    text.write_text(content)
    out = tmp_path / "out"
    assert_clean_failure(esa("baseline", "--model", "tiny-llama", "--dataset", text, "--out-dir", out), out, needle)


def test_unreadable_text_file(esa, tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_bytes(b"\xff\xfe\x00bad")
    out = tmp_path / "out"
    result = esa("baseline", "--model", "tiny-llama", "--dataset", text, "--out-dir", out)
    assert_clean_failure(result, out, "corpus.txt")


def test_out_dir_not_writable(esa, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = esa("baseline", "--model", "tiny-llama", "--preset", "smoke", "--out-dir", blocker / "sub")
    assert result.code == 2 and result.err.startswith("esa: error: ") and "Traceback" not in result.err


def test_non_finite_gradients_fail_cleanly(esa, tmp_path):
    """fp16 overflow: a model whose logits overflow gives a clear error and no output."""
    import torch

    from esa.models.tiny import build_tiny_model, byte_tokenizer

    model = build_tiny_model("tiny-llama")
    with torch.no_grad():
        model.lm_head.weight.mul_(1e4)
        model.model.norm.weight.mul_(1e3)
    saved = tmp_path / "overflow-model"
    model.save_pretrained(saved)
    byte_tokenizer().save_pretrained(saved)
    out = tmp_path / "out"
    result = esa("run", "--model", saved, "--dtype", "fp16", "--seq-len", "16", "--max-samples", "2",
                 "--eval-samples", "2", "--quiet", "--out-dir", out)
    assert_clean_failure(result, out, "non-finite")


def test_usage_error_exit_code(esa, tmp_path):
    result = esa("run", "--no-such-flag")
    assert result.code == 2
    assert "Traceback" not in result.err


def test_out_of_memory_is_one_line_with_advice(esa, tmp_path, monkeypatch):
    """A CUDA out-of-memory during scoring is answered with settings that would fit, not a trace."""
    import torch

    import esa.pipeline.run as run_module

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.91 GiB")

    monkeypatch.setattr(run_module, "profile_seed", oom)
    out = tmp_path / "out"
    result = esa("run", *TINY, "--out-dir", out)
    assert_clean_failure(result, out, "out of", "memory")
