"""Pruning on the bundled SmolLM2-135M: perplexity per (score, sparsity/pattern), and what pruning costs.

Quality: calibration and evaluation windows are disjoint (esa.make_windows, seed 0, no BOS; defaults
8 x 128 calibration and 4 x 128 evaluation windows, sized for a 2-core machine shared by many jobs).
Every score prunes the linear layers of the 30 decoder blocks, one-shot from the dense model, each output row on its own (Wanda's group) unless stated; the model is
restored bit-exactly between conditions (checked by checksum at the end). Scores of the registered metrics
are computed once and reused across sparsities; SparseGPT takes its Hessians afresh per condition.
ESA's score (`esa`: Wanda's order in rows, per-tensor sparsity from grad_squared) reuses the act_mag and
grad_squared scores. The criterion is esa.prune.FORMULA.

Cost: `prune(score="act_mag")` (no evaluation) against one plain Wanda procedure written inline here
(hooks for ‖X_j‖², one forward pass, |W|·‖X‖, stable sort per row, zero, restore), same windows,
interleaved, on `--time-windows` calibration windows, median of `--repeats` after a warm-up round.
SparseGPT: seconds per layer (Hessians + solve, one-shot), and optionally (`--sequential`) one sequential SparseGPT condition. Peak memory: the process's resident-set
high-water mark (VmHWM) after each part, minus the resident size after loading the model.

    .venv/bin/python benchmarks/bench_prune.py [--out /tmp/prune_bench] [--repeats 1] [--sequential]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from esa.data import load_corpus, make_windows
from esa.evaluation import evaluate
from esa.models import load_model
from esa.perturb import tensor_checksum
from esa.prune import ESA_ALLOCATE_BY, ESA_RANK, FORMULA, find_targets, gap_improvement, prune, weight_scores

SPARSITIES = (0.3, 0.5, 0.6, 0.7)
METRIC_SCORES = ("magnitude", "act_mag", "grad_squared", "grad_x_weight")  # the gradient scores beside Wanda's


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def plain_wanda(lm, windows, sparsity: float, batch_size: int) -> None:
    """One Wanda pass without ESA: hooks, one forward, |W|·‖X‖, per-row sort, zero, then restore."""
    modules = {n: m for n, m in lm.model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}
    sq = {n: torch.zeros(m.in_features) for n, m in modules.items()}
    def hook(name: str):
        def add(module: torch.nn.Module, args: tuple) -> None:  # must return None: a value would replace the input
            sq[name].add_(args[0].reshape(-1, args[0].shape[-1]).float().square().sum(0))
        return add

    hooks = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    with torch.no_grad():
        for ids in windows.batches("calib", batch_size):
            lm.model(input_ids=ids, use_cache=False)
        for h in hooks:
            h.remove()
        saved = {}
        for n, m in modules.items():
            metric = m.weight.abs() * sq[n].sqrt()
            idx = torch.sort(metric, dim=-1, stable=True).indices[:, : int(m.in_features * sparsity)]
            saved[n] = m.weight.clone()
            m.weight.scatter_(1, idx, 0.0)
        for n, m in modules.items():
            m.weight.copy_(saved[n])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/prune_bench")
    ap.add_argument("--calib", type=int, default=8)
    ap.add_argument("--eval", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--time-windows", type=int, default=4, help="calibration windows of the timing comparison")
    ap.add_argument("--sequential", action="store_true")
    ap.add_argument("--cost-only", action="store_true", help="skip the quality table, measure the cost part only")
    ap.add_argument("--scores", default=",".join(METRIC_SCORES), help="registered metrics to prune with (comma list)")
    ap.add_argument("--no-esa", action="store_true", help="skip ESA's score (it needs act_mag and grad_squared)")
    ap.add_argument("--no-sparsegpt", action="store_true", help="skip SparseGPT (its own Hessian pass per condition)")
    ap.add_argument("--sparsities", default=",".join(map(str, SPARSITIES)), help="unstructured sparsities (comma list)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lm = load_model("smollm2-135m")
    windows = make_windows(load_corpus("builtin", lm.tokenizer), args.seq_len, args.calib, args.eval, 0)
    bs = args.batch_size
    before = {n: tensor_checksum(p) for n, p in lm.model.named_parameters()}
    rss0 = rss_kib("VmRSS")
    memory = {}
    dense = evaluate(lm.model, windows, "eval", bs).ppl
    print(f"dense ppl {dense:.3f}  ({args.calib} x {args.seq_len} calib, {args.eval} x {args.seq_len} eval, disjoint)")
    names = [t.name for t in find_targets(lm)]
    conditions = [dict(sparsity=float(s)) for s in args.sparsities.split(",")] + [dict(pattern="2:4")]
    rows = []
    scores, times = {}, {}
    wanted = [] if args.cost_only else args.scores.split(",")
    needed = list(dict.fromkeys(wanted + ([] if args.cost_only or args.no_esa else [ESA_RANK, ESA_ALLOCATE_BY])))
    for score in needed:
        t = time.perf_counter()
        scores[score], _ = weight_scores(lm, windows, score, names, seed=0, batch_size=bs)
        times[score] = time.perf_counter() - t
        memory[f"score:{score}"] = rss_kib("VmHWM") - rss0
        print(f"scored {score} in {times[score]:.1f} s", flush=True)
    labels = list(wanted)
    if not (args.cost_only or args.no_esa):  # right after Wanda's rows, which it is measured against
        labels.insert(labels.index("act_mag") + 1 if "act_mag" in labels else len(labels), "esa")
    for label in labels:
        for cond in conditions:
            extra = dict(scores=scores[ESA_RANK], allocation_scores=scores[ESA_ALLOCATE_BY]) if label == "esa" \
                else dict(scores=scores[label])
            r = prune(lm, windows, score=label, batch_size=bs, **extra, **cond)
            spread = r.allocation["sparsity"] if r.allocation else None
            rows.append({**r.row(), "score_time_s": times.get(label),
                         **({"allocation_min": min(spread.values()), "allocation_max": max(spread.values())} if spread else {})})
            print(f"{label:16s} {r.pattern:12s} {r.sparsity:.1f} ppl {r.ppl:9.3f} achieved {r.achieved_sparsity:.4f}", flush=True)
            save(out, dense, windows, rows, {})
    for cond in () if args.cost_only or args.no_sparsegpt else conditions:
        r = prune(lm, windows, score="sparsegpt", batch_size=bs, **cond)
        rows.append({**r.row(), "score_time_s": None, "prune_s": r.timings["prune_s"]})
        print(f"{'sparsegpt':16s} {r.pattern:12s} {r.sparsity:.1f} ppl {r.ppl:9.3f} achieved {r.achieved_sparsity:.4f} "
              f"({r.timings['prune_s'] / len(names):.3f} s per layer)", flush=True)
        memory["sparsegpt"] = rss_kib("VmHWM") - rss0
        save(out, dense, windows, rows, {})
    if args.sequential and not args.cost_only:
        for score in ("act_mag", "sparsegpt"):
            r = prune(lm, windows, score=score, sparsity=0.5, sequential=True, batch_size=bs)
            rows.append({**r.row(), "score_time_s": None})
            print(f"{score + ' seq':16s} {r.pattern:12s} {r.sparsity:.1f} ppl {r.ppl:9.3f} ({r.timings['prune_s']:.1f} s)")

    timing = make_windows(load_corpus("builtin", lm.tokenizer), args.seq_len, args.time_windows, 1, 0)
    esa_t, plain_t = [], []
    for _ in range(args.repeats + 1):  # the first round warms up
        t = time.perf_counter()
        prune(lm, timing, score="act_mag", sparsity=0.5, batch_size=bs, evaluate=False)
        esa_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        plain_wanda(lm, timing, 0.5, bs)
        plain_t.append(time.perf_counter() - t)
    esa_med, plain_med = statistics.median(esa_t[1:]), statistics.median(plain_t[1:])
    after = {n: tensor_checksum(p) for n, p in lm.model.named_parameters()}
    cost = {
        "prune_act_mag_s": esa_med, "plain_wanda_s": plain_med, "ratio": esa_med / plain_med,
        "sparsegpt_s_per_layer": {r["pattern"] + f"@{r['sparsity']}": r["prune_s"] / len(names)
                                  for r in rows if r["score"] == "sparsegpt" and r["mode"] == "one-shot"},
        "peak_rss_over_model_mib": {k: v / 1024 for k, v in memory.items()},
        "restored_bit_exact": before == after,
    }
    print(f"act_mag prune {esa_med:.2f} s vs plain Wanda pass {plain_med:.2f} s: ratio {cost['ratio']:.3f}")
    print(json.dumps(cost, indent=1))
    save(out, dense, windows, rows, cost)


def save(out: Path, dense: float, windows, rows: list[dict], cost: dict) -> None:
    """Write what is measured so far (a slow run leaves its partial table behind)."""
    for r in rows:
        mag = [m for m in rows if m["score"] == "magnitude" and m["pattern"] == r["pattern"] and m["sparsity"] == r["sparsity"]]
        if r["score"] != "magnitude" and mag:
            r["improvement_vs_magnitude"] = gap_improvement(r["ppl"], mag[0]["ppl"], dense)
    (out / "prune_bench.json").write_text(json.dumps(
        {"dense_ppl": dense, "windows": windows.protocol(), "formula": FORMULA, "rows": rows, "cost": cost}, indent=1))


if __name__ == "__main__":
    main()
