"""RTN vs GPTQ, critical-weight protection and mixed precision on the bundled SmolLM2-135M.

Windows: the builtin corpus (pydoc topics), seq_len 128, 8 calibration and 8 evaluation windows,
seed 1 (calibration and evaluation never share a token). Every configuration is one esa.quantize call
on the same model, restored bit-exactly in between; scores and the super weight are computed once.
Prints one table row per configuration (PPL and its ratio to the unquantized model, effective bits,
kept weights, seconds) and the timing ratios; writes every row as JSON with --out.

    PYTHONPATH=src python benchmarks/bench_quantize.py [--subset small|full] [--out rows.json] [--threads 1]
    PYTHONPATH=src python benchmarks/bench_quantize.py --configs '[{"method": "gptq", "bits": 3, "group_size": 64}]'
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

import esa
from esa.quantize import ScoreCache, find_targets

METRICS = ("grad_squared", "magnitude")
GRIDS = ("small", "full")


def grid(full: bool) -> list[dict[str, Any]]:
    """The configurations, cheapest first. small: RTN at 8 (g64), 4 and 3 bits (g64 and per channel) with
    every protection (none, super weights, top 0.01%/0.1% grad_squared, top 0.1% magnitude); GPTQ at
    4/3-bit g64 and 3-bit g64 + super weights; mixed precision (RTN) at 3.5, 4.25 and at exactly the
    effective bits of uniform 3-bit g64. full: every protection for both methods, all bits and groups."""
    protections: list[dict[str, Any]] = [{}, {"keep_superweights": True}]
    protections += [{"keep_fraction": f, "keep_metric": "grad_squared"} for f in (1e-4, 1e-3)]
    protections += [{"keep_fraction": f, "keep_metric": "magnitude"} for f in ((1e-4, 1e-3) if full else (1e-3,))]
    out: list[dict[str, Any]] = []
    for method in ("rtn", "gptq") if full else ("rtn",):
        for bits in (8, 4, 3):
            for group in (64, 0):
                if full or bits < 8:
                    out += [{"method": method, "bits": bits, "group_size": group, **p} for p in protections]
    out += [{"method": "rtn", "bits": 8, "group_size": 64, **p} for p in protections[:2]] if not full else []
    mixed = [3.5, 4.25, 3 + 19 / 64]  # the last: exactly the effective bits of uniform 3-bit g64 (asymmetric)
    out += [{"method": "rtn", "bits": None, "group_size": 64, "budget_bits": b, "allocate_by": "grad_squared"} for b in mixed]
    if not full:
        out += [{"method": "gptq", "bits": b, "group_size": 64} for b in (4, 3)]
        out += [{"method": "gptq", "bits": 3, "group_size": 64, "keep_superweights": True}]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", choices=("small", "full"), default="small")
    ap.add_argument("--out", default=None)
    ap.add_argument("--sw-iter", type=int, default=3, help="super-weight detection iterations (max candidates)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=("rtn", "gptq"), default=None, help="run only this method's configurations")
    ap.add_argument("--no-superweights", action="store_true", help="skip configurations that keep super weights")
    ap.add_argument("--configs", default=None,
                    help="a JSON list of esa.quantize keyword sets to run instead of the grid (e.g. one missing row)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = esa.load_model("smollm2-135m")
    windows = esa.make_windows(esa.load_corpus("builtin", lm.tokenizer), 128, 8, 8, 1).with_text_measures(lm.tokenizer)
    base = esa.evaluate(lm.model, windows, "eval", 4)
    print(f"unquantized PPL {base.ppl:.4f} on {base.n_tokens} tokens", flush=True)
    chosen = json.loads(args.configs) if args.configs else grid(args.subset == "full")
    configs = [c for c in chosen if args.only in (None, c["method"])
               and not (args.no_superweights and c.get("keep_superweights"))]
    cache = ScoreCache()
    start = time.perf_counter()
    sw: list[str] = []
    if any(c.get("keep_superweights") for c in configs):
        found = esa.detect_superweights(lm, windows, max_iter=args.sw_iter, n_controls=1, seed=1, batch_size=4)
        cache.superweights = [(c["param"], int(c["flat_index"])) for c in found.super_weights()]
        sw = [f"{c['param']}[{c['index']}]" for c in found.super_weights()]
        print(f"super weights detected and validated: {sw} ({time.perf_counter() - start:.1f}s)", flush=True)
    rows = []
    print("| method | bits | group | protection | effective bits | PPL | PPL / fp32 | kept | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for config in configs:
        r = esa.quantize(lm, windows, seed=1, batch_size=4, cache=cache, **config)
        row = r.row() | {"ppl_ratio": r.ppl / base.ppl, "layer_seconds": [v for k, v in r.seconds.items() if k.startswith("layer.")],
                         "quantize_seconds": r.seconds["quantize"], "config": config}
        rows.append(row)
        protection = ("super weights" if config.get("keep_superweights") else
                      f"top {config['keep_fraction']:.2%} {config['keep_metric']}" if "keep_fraction" in config else
                      f"mixed {config['budget_bits']:.4g} by grad_squared" if "budget_bits" in config else "none")
        print(f"| {r.method} | {r.bits or 'mixed'} | {r.group_size or 'channel'} | {protection} | {r.effective_bits:.4f} | "
              f"{r.ppl:.3f} | {r.ppl / base.ppl:.3f} | {r.n_kept} | {r.seconds['quantize']:.1f} |", flush=True)
        if args.out:  # after every configuration, so a partial run keeps what it measured
            with open(args.out, "w") as f:
                json.dump({"baseline_ppl": base.ppl, "superweights": sw, "windows": windows.protocol(), "rows": rows}, f, indent=1)
    rtn_s = [r["quantize_seconds"] for r in rows if r["method"] == "rtn" and r["budget_bits"] is None]
    layer_s = [s for r in rows if r["method"] == "gptq" for s in r["layer_seconds"]]
    if rtn_s:
        print(f"RTN over all {len(find_targets(lm))} linear layers of the decoder blocks: "
              f"median {statistics.median(rtn_s):.2f}s per configuration")
    if layer_s:
        print(f"GPTQ per decoder block (7 linear layers, its Hessian pass included): median "
              f"{statistics.median(layer_s):.2f}s, whole model {sum(layer_s) / len([r for r in rows if r['method'] == 'gptq']):.1f}s")

if __name__ == "__main__":
    main()
