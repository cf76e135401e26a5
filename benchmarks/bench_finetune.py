"""Critical-weight fine-tuning on SmolLM2-135M: what each mode learns and forgets, and what a step costs.

    python benchmarks/bench_finetune.py probe [--lrs 3e-5,1e-4,3e-4]   # full FT, target domain only: pick lr
    python benchmarks/bench_finetune.py grid OUT.jsonl RUN... [--lr-full LR]   # one JSON line per run
    python benchmarks/bench_finetune.py cost                             # one sparse step vs one full step

Data (`--domains`, esa.finetune.DOMAINS): "names-vs-docs" (default here) trains on Unicode character names
and measures forgetting on the pydoc prose; "code-vs-docs" trains on Python standard-library code instead
(it did not forget: the retain PPL fell); "topics" is the earlier split of the prose into two topic halves. Runs: full, sparse-0.1, random-0.1, lora-0.1, sparse-1, random-1, lora-1, frozen (top 1,000
grad_squared of the retain data), frozen-sw (the same ∪ every super-weight candidate), ewc.
Learning-rate rule, fixed before any run: lr = lr_full / sqrt(share), share = the budget's fraction of the
weights (1 for full, frozen and ewc), so a 0.1% mask steps 31.6x and a 1% mask 10x larger than full;
`--lr` replaces the rule by one lr for every run of the invocation (a control).
`probe` only reads the training domain (training loss, target PPL), never the retain text.
Peak memory is the process's peak RSS (VmHWM, reset through /proc/self/clear_refs before each run)
minus its RSS before the run.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

import esa
from esa.data import make_windows
from esa.finetune import builtin_domains, finetune, preserved, superweight_candidates, watched_weight
from esa.finetune.masks import score, weight_params

SEQ_LEN, BATCH, STEPS, N_TRAIN, N_EVAL, N_RETAIN_CALIB, FROZEN_K = 128, 2, 40, 64, 16, 16, 1000
RUNS = {
    "full": dict(mode="full"),
    "frozen": dict(mode="frozen-critical", budget_k=FROZEN_K),
    "frozen-sw": dict(mode="frozen-critical", budget_k=FROZEN_K, superweights=True),
    "ewc": dict(mode="full", protect="ewc"),
    **{f"{kind}-{pct:g}": dict(mode="lora" if kind == "lora" else "sparse", budget=pct / 100,
                               **({"mask_metric": "random"} if kind == "random" else {}))
       for pct in (0.1, 1) for kind in ("sparse", "random", "lora")},
}


def lr_for(run: dict, lr_full: float) -> float:
    """The stated rule: lr_full / sqrt(budget share)."""
    return lr_full / math.sqrt(run.get("budget", 1.0))


def _rss(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def setup(domains: str):
    torch.manual_seed(0)
    lm = esa.load_model("smollm2-135m")
    a, b = builtin_domains(domains, lm.tokenizer)
    bos = lm.tokenizer.bos_token_id
    train = make_windows(a, SEQ_LEN, N_TRAIN, N_EVAL, 0, bos_id=bos)
    retain = make_windows(b, SEQ_LEN, N_RETAIN_CALIB, N_EVAL, 0, bos_id=bos)
    return lm, train, retain


def probe(domains: str, lrs: list[float], steps: int) -> None:
    """Full fine-tuning at each lr on the training domain only: last-5-step training loss and target PPL."""
    lm, train, _ = setup(domains)
    for lr in lrs:
        with preserved(lm):
            r = finetune(lm, train, train, mode="full", lr=lr, steps=steps, batch_size=BATCH, eval_every=steps,
                         seed=0, superweight=None)
        tail = sum(row["loss"] for row in r.curve[-5:]) / 5
        print(json.dumps({"lr": lr, "steps": steps, "loss_last5": tail, "target_ppl_before": r.train_ppl_before,
                          "target_ppl_after": r.train_ppl_after, "s_per_step": r.time_s / steps}), flush=True)


def grid(out: str, names: list[str], domains: str, lr_full: float, steps: int, lr: float | None) -> None:
    lm, train, retain = setup(domains)
    sw = watched_weight(lm, "detect")
    watch = (sw["param"], sw["flat_index"]) if sw else None
    params = weight_params(lm)
    cache: dict[str, object] = {}

    def cached(key: str, make):
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def scores(on: str) -> dict:
        windows = train if on == "train" else retain
        return cached(on, lambda: score(lm, params, "grad_squared", windows, seed=0, batch_size=BATCH, progress=False))

    for name in names:
        kw = dict(RUNS[name])
        if kw.pop("superweights", False):
            kw["protect_superweights"] = cached("sw", lambda: superweight_candidates(lm))
        if kw.get("mode") == "sparse" and kw.get("mask_metric") != "random":
            kw["mask_scores"] = scores("train")
        if kw.get("mode") == "frozen-critical":
            kw["mask_scores"] = scores("retain")
        if kw.get("protect") == "ewc":
            kw["fisher"] = scores("retain")
        t = time.perf_counter()
        with preserved(lm):
            result = finetune(lm, train, train, retain_windows=retain, steps=steps, batch_size=BATCH,
                              lr=lr or lr_for(RUNS[name], lr_full), eval_every=steps // 2, seed=0, superweight=watch,
                              **kw)
        row = {"run": name, "domains": domains, "wall_s": time.perf_counter() - t, **result.to_dict()}
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: lr {result.lr:.3g}, target ppl {result.train_ppl_before:.3f} -> {result.train_ppl_after:.3f}, "
              f"retain {result.retain_ppl_before:.3f} -> {result.retain_ppl_after:.3f}, trainable "
              f"{result.trainable:,}, frozen {result.n_frozen:,}, state {result.optimizer_state_bytes:,} B, "
              f"sw {result.superweight}", flush=True)


def cost(domains: str) -> None:
    """Time and peak-RSS growth of training steps: sparse (1% random mask) vs full, same batches."""
    lm, train, _ = setup(domains)
    runs = {"sparse": dict(mode="sparse", budget=0.01, mask_metric="random"), "full": dict(mode="full")}
    with preserved(lm):  # warm-up: allocator, kernels
        finetune(lm, train, train, steps=1, batch_size=BATCH, superweight=None, **runs["sparse"])
    measured = {}
    for name, kw in runs.items():
        with preserved(lm):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _rss("VmRSS")
            result = finetune(lm, train, train, steps=3, batch_size=BATCH, eval_every=3, superweight=None, **kw)
            peak = _rss("VmHWM") - base
        measured[name] = (result.time_s / 3, peak, result.optimizer_state_bytes)
        print(f"{name}: {result.time_s / 3:.2f} s/step, peak RSS growth {peak / 2**20:.0f} MiB, "
              f"optimizer state {result.optimizer_state_bytes / 2**20:.2f} MiB", flush=True)
    (ts, ms, ss), (tf, mf, sf) = measured["sparse"], measured["full"]
    print(f"sparse/full: time {ts / tf:.2f}x, peak memory growth {ms / mf:.2f}x, optimizer state {ss / sf:.4f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("probe", "grid", "cost"))
    parser.add_argument("out", nargs="?", help="grid: the JSONL file to append to")
    parser.add_argument("runs", nargs="*", help=f"grid: runs, in order ({', '.join(RUNS)})")
    parser.add_argument("--domains", default="names-vs-docs")
    parser.add_argument("--lr-full", type=float, default=1e-4)
    parser.add_argument("--lr", type=float, help="grid: this lr for every run, instead of the rule")
    parser.add_argument("--lrs", default="3e-5,1e-4,3e-4")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if set(args.runs) - set(RUNS):
        parser.error(f"unknown runs {sorted(set(args.runs) - set(RUNS))}; choose from {', '.join(RUNS)}")
    torch.set_num_threads(args.threads)
    if args.what == "probe":
        probe(args.domains, [float(x) for x in args.lrs.split(",")], args.steps)
    elif args.what == "grid":
        grid(args.out, args.runs, args.domains, args.lr_full, args.steps, args.lr)
    else:
        cost(args.domains)


if __name__ == "__main__":
    main()
