"""Scaling series of tiny random models at five widths, run end to end: models -> `esa run` -> study.

Random weights, so the fitted laws mean nothing about real models: this checks the machinery (run
directories, the table, fits with intervals, LOO, breakpoint test, figures) on real pipeline output.
Each width is a Llama-architecture model (2 layers, intermediate = 2 x width, 4 heads, the byte
tokenizer of esa.models.tiny), saved as a local model directory and profiled by the `esa` command.

    .venv/bin/python benchmarks/bench_studies.py OUT_DIR [--widths 16,32,64,128,256]

With --families MODEL,... it runs the family comparison instead: each model through `esa run` (the
same flags, --topk 100, --architecture-analysis, --seeds), real models also through `esa superweights`,
then `esa study families` on all of them, printing one line per group:

    .venv/bin/python benchmarks/bench_studies.py OUT_DIR --families smollm2-135m,gemma3-270m,tiny-mixtral --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ESA = [sys.executable, "-c", "from esa.cli.main import main; main()"]
RUN_FLAGS = ["--metric", "grad_x_weight", "--max-samples", "4", "--eval-samples", "4", "--seq-len", "64",
             "--topk", "10", "--perturb", "zero", "--trials", "3", "-q"]


def build_model(width: int, folder: Path, seed: int = 0) -> Path:
    """A random tiny Llama of the given width, saved with the byte tokenizer (no download)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from esa.models.tiny import BOS, EOS, PAD, VOCAB, byte_tokenizer

    config = AutoConfig.for_model(
        "llama", vocab_size=VOCAB, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, bos_token_id=BOS,
        eos_token_id=EOS, pad_token_id=PAD, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


FAMILY_FLAGS = [*RUN_FLAGS[:RUN_FLAGS.index("--topk")], "--topk", "100", "--perturb", "zero", "--trials", "3",
                "--architecture-analysis", "-q"]
SUPERWEIGHT_FLAGS = ["--seq-len", "64", "--max-samples", "2", "--eval-samples", "4", "--max-iter", "3",
                     "--controls", "2", "--metrics", "magnitude", "--seed", "1", "-q"]


def families(out: Path, models: list[str], seeds: str) -> None:
    """Run every model, scan the real ones for super weights, and compare the families."""
    from esa.models.tiny import TINY_CONFIGS

    runs = []
    for model in models:
        steps = [("run", [*FAMILY_FLAGS, "--seeds", seeds], out / "runs" / model)]
        if model not in TINY_CONFIGS:  # random tiny models have no super weights to find
            steps.append(("superweights", SUPERWEIGHT_FLAGS, out / "runs" / f"{model}-sw"))
        for command, flags, run in steps:
            t = time.perf_counter()
            subprocess.run([*ESA, command, "-m", model, *flags, "-o", str(run)], check=True)
            print(f"{model}: esa {command} {time.perf_counter() - t:.1f} s", flush=True)
            runs.append(run)
    study = out / "families"
    subprocess.run([*ESA, "study", "families", *map(str, runs), "-q", "-o", str(study)], check=True)
    saved = json.loads((study / "families.json").read_text())
    names = ("attention_vs_mlp", "early_concentration", "embed_head_share", "gini", "top_share_0.1%")
    print(f"{'group':36s} " + " ".join(f"{n:>19s}" for n in names) + "  super weights (relative depth)")
    for g in saved["groups"]:
        q = g["quantities"]
        cells = " ".join(f"{q[n]['mean']:19.4g}" if n in q else f"{'-':>19s}" for n in names)
        sw = ", ".join(f"{p['param']}[{p['index']}] ({p['relative_depth']:.2f})" for p in g["superweights"]) or "none"
        print(f"{g['name']:36s} {cells}  {sw}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--widths", default="16,32,64,128,256")
    parser.add_argument("--families", default="", help="comma-separated models: run the family comparison instead")
    parser.add_argument("--seeds", default="1,2,3", help="seeds of each family run")
    args = parser.parse_args()
    if args.families:
        families(args.out, args.families.split(","), args.seeds)
        return
    widths = [int(w) for w in args.widths.split(",")]
    runs = []
    for width in widths:
        model = build_model(width, args.out / "models" / f"llama-w{width}")
        run = args.out / "runs" / f"llama-w{width}"
        t = time.perf_counter()
        subprocess.run([*ESA, "run", "-m", str(model), *RUN_FLAGS, "-o", str(run)], check=True)
        print(f"width {width}: esa run {time.perf_counter() - t:.1f} s", flush=True)
        runs.append(run)
    for size in ("params", "nonembedding"):
        subprocess.run([*ESA, "study", "scaling", *map(str, runs), "--size", size,
                        "-o", str(args.out / f"scaling-{size}")], check=True)
    fits = json.loads((args.out / "scaling-params" / "scaling.json").read_text())["fits"]
    print(f"{'quantity':42s} {'n':>2s} {'alpha':>8s} {'95% CI':>20s} {'R2':>6s} {'LOO':>6s} crit(R2,LOO) break")
    for f in fits:
        if f["alpha"] is None:
            print(f"{f['quantity']:42s} {f['n']:2d}  no fit: {f['reason']}")
            continue
        lo, hi = f["alpha_ci95"]
        loo = "n/a" if f["loo_error"] is None else f"{f['loo_error']:.3f}"
        bp = f["breakpoint"]
        brk = f"p={bp['p_value']:.2f}" if "p_value" in bp else bp.get("reason", "")
        print(f"{f['quantity']:42s} {f['n']:2d} {f['alpha']:8.3f} [{lo:8.3f}, {hi:8.3f}] {f['r2']:6.3f} {loo:>6s} "
              f"{f['criteria']['r2']},{f['criteria']['loo']} {brk}")


if __name__ == "__main__":
    main()
