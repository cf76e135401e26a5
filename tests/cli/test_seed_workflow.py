"""Every `esa_runner.py` command line of the research workflow (seeds/004) runs as written, with only
`--model` replaced by a small local model, and leaves a complete run directory."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

SEED_COMMANDS = [
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode per_layer --topk 100 --max-samples 200 --seeds 1337,123,999 --stability-check --dtype bf16 --save-plots --out-dir outputs/esa/llama31_8b/gradxw_perlayer_k100",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric act_mag --mode per_layer --topk 100 --max-samples 200 --seeds 1337,123,999 --stability-check --save-plots --out-dir outputs/esa/llama31_8b/actmag_perlayer_k100",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_squared --mode per_layer --topk 100 --max-samples 200 --seeds 1337,123,999 --stability-check --save-plots --out-dir outputs/esa/llama31_8b/gradsq_perlayer_k100",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric hutchinson_diag --mode global --topk 300 --max-samples 120 --seeds 1337,123,999 --stability-check --save-plots --out-dir outputs/esa/llama31_8b/hutch_global_k300",
    "python esa_runner.py --model mistralai/Mistral-7B-v0.3 --metric grad_x_weight --mode per_layer --topk 100 --seeds 1337,123,999 --stability-check",
    "python esa_runner.py --model microsoft/Phi-3-mini-4k-instruct --metric grad_x_weight --mode per_layer --topk 100 --seeds 1337,123,999 --stability-check",
    "python esa_runner.py --model EleutherAI/pythia-1.4b --metric grad_x_weight --mode per_layer --topk 100 --seeds 1337,123,999 --stability-check",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode global --topk 300 --seeds 1337,123,999 --stability-check",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode per_layer --topk 500 --max-samples 500 --seeds 1337,123,999,42,2023 --stability-check",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode per_layer --topk 100 --max-samples 200 --seeds 1337,123,999 --weight-analysis --architecture-analysis",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode per_layer --topk 100 --max-samples 200 --perturb sign_flip --perturb-scale 1.0 --controls random_k,bottom_k --seeds 1337,123,999 --stability-check --save-plots --out-dir outputs/esa/llama31_8b/signflip_k100",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode per_layer --topk 100 --max-samples 200 --perturb gauss_noise --perturb-scale 0.02 --controls random_k,bottom_k --seeds 1337,123,999 --stability-check --save-plots --out-dir outputs/esa/llama31_8b/gauss_0p02_k100",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode per_layer --topk 100 --max-samples 200 --perturb zero --controls random_k,bottom_k --seeds 1337,123,999 --stability-check --save-plots --out-dir outputs/esa/llama31_8b/zero_k100",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode per_layer --topk 100 --max-samples 200 --perturb bit_flip --perturb-prob 0.05 --controls random_k,bottom_k --seeds 1337,123,999 --stability-check --save-plots --out-dir outputs/esa/llama31_8b/bitflip_p005_k100",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --perturb gauss_noise --perturb-scale 0.005 --controls random_k,bottom_k --seeds 1337,123,999",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --perturb gauss_noise --perturb-scale 0.01 --controls random_k,bottom_k --seeds 1337,123,999",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --perturb gauss_noise --perturb-scale 0.05 --controls random_k,bottom_k --seeds 1337,123,999",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --perturb gauss_noise --perturb-scale 0.1 --controls random_k,bottom_k --seeds 1337,123,999",
    "python esa_runner.py --model mistralai/Mistral-7B-v0.3 --metric grad_x_weight --perturb sign_flip --controls random_k,bottom_k --seeds 1337,123,999",
    "python esa_runner.py --model microsoft/Phi-3-mini-4k-instruct --metric grad_x_weight --perturb sign_flip --controls random_k,bottom_k --seeds 1337,123,999",
    "python esa_runner.py --model EleutherAI/pythia-1.4b --metric grad_x_weight --perturb sign_flip --controls random_k,bottom_k --seeds 1337,123,999",
    "python esa_runner.py --model mistralai/Mixtral-8x7B-v0.1 --metric grad_x_weight --perturb sign_flip --controls random_k,bottom_k --seeds 1337,123,999",
    "python esa_runner.py --model EleutherAI/pythia-1.4b --metric grad_x_weight --mode per_layer --topk 100 --seeds 1337,123,999 --stability-check",
    "python esa_runner.py --model microsoft/Phi-3-mini-4k-instruct --metric grad_x_weight --mode per_layer --topk 100 --seeds 1337,123,999 --stability-check",
    "python esa_runner.py --model mistralai/Mistral-7B-v0.3 --metric grad_x_weight --mode per_layer --topk 100 --seeds 1337,123,999 --stability-check",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode per_layer --topk 100 --seeds 1337,123,999 --stability-check",
    "python esa_runner.py --model mistralai/Mixtral-8x7B-v0.1 --metric grad_x_weight --mode per_layer --topk 100 --seeds 1337,123,999 --stability-check",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --topk 50 --max-samples 50 --seeds 1337 --verbose",
    "python esa_runner.py --model meta-llama/Llama-3.1-8B --metric grad_x_weight --mode per_layer --topk 100 --max-samples 200 --seeds 1337,123,999 --stability-check --save-plots",
]


# Each command's model swapped for the tiny model of its family, with --max-samples 4 --seq-len 32 (the
# tiny models are 32 wide, so per-layer top-100 selects whole norm tensors and the matched random controls
# must borrow from other tensors: the core issue's fix 4).
FAMILY = {"meta-llama/": "tiny-llama", "mistralai/Mistral": "tiny-mistral", "microsoft/Phi-3": "tiny-phi3",
          "EleutherAI/pythia": "tiny-gptneox", "mistralai/Mixtral": "tiny-mixtral"}


def tiny_command(command: str) -> tuple[str, ...]:
    words = shlex.split(command)[2:]
    model = words[words.index("--model") + 1]
    words[words.index("--model") + 1] = next(t for prefix, t in FAMILY.items() if model.startswith(prefix))
    for flag, value in (("--max-samples", "4"), ("--seq-len", "32")):
        if flag in words:
            words[words.index(flag) + 1] = value
        else:
            words += [flag, value]
    return tuple(words)


UNIQUE = sorted({tiny_command(c) for c in SEED_COMMANDS})


@pytest.mark.parametrize("argv", UNIQUE, ids=[" ".join(a[1:8]) for a in UNIQUE])
def test_seed_command_runs_on_its_tiny_family(esa, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    result = esa("run", *argv, "--quiet")
    assert result.code == 0, result.err
    out = Path(argv[argv.index("--out-dir") + 1]) if "--out-dir" in argv else Path("outputs/esa/run")
    for name in ("config.json", "experiment_manifest.json", "top_weights.csv", "sensitivity_stats.json"):
        assert (out / name).is_file(), name
    stats = json.loads((out / "sensitivity_stats.json").read_text())
    if "--stability-check" in argv:
        assert stats["stability"]["mean_jaccard"] is not None
    if "--perturb" in argv:
        results = json.loads((out / "perturbation_results.json").read_text())
        if "--mode" in argv and argv[argv.index("--mode") + 1] == "per_layer":
            assert results["control_matching"], "whole norm tensors are selected: their controls were borrowed"
            assert "controls  " in result.out
    if "--save-plots" in argv:
        assert any((out / "plots").glob("*.png"))
    if "--weight-analysis" in argv:
        assert "weight_analysis" in stats and "architecture_analysis" in stats


def test_esa_runner_shim(tmp_path):
    """The root-level esa_runner.py forwards to `esa run` (a real subprocess, as users call it)."""
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "shim"
    proc = subprocess.run(
        [sys.executable, str(root / "esa_runner.py"), "--model", "tiny-llama", "--metric", "magnitude",
         "--topk", "5", "--quiet", "--out-dir", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "top_weights.csv").is_file()
