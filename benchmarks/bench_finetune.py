"""Critical-weight fine-tuning on SmolLM2-135M: what each mode learns and forgets, and what a step costs.

    python benchmarks/bench_finetune.py cost                    # one sparse step vs one full step
    python benchmarks/bench_finetune.py grid OUT.jsonl RUN...   # quality runs, one JSON line each

Data: the built-in corpus in two topic domains (esa.finetune.topic_domains): train/eval on domain a,
retain (forgetting) on domain b. Runs: full, sparse-0.1, random-0.1, lora-0.1, sparse-1, random-1,
lora-1, frozen, ewc. Peak memory is the process's peak RSS (VmHWM, reset through /proc/self/clear_refs
before each step) minus its RSS before the step.
"""

from __future__ import annotations

import json
import sys
import time

import torch

import esa
from esa.data import make_windows
from esa.finetune import finetune, preserved, topic_domains, watched_weight
from esa.finetune.masks import score, weight_params

SEQ_LEN, BATCH, STEPS, N_TRAIN, N_EVAL, N_RETAIN_CALIB = 64, 2, 10, 8, 4, 8
LR_SPARSE, LR_DENSE = 1e-3, 1e-4  # adapters and masks train few weights: the usual 10x larger step
RUNS = {
    "full": dict(mode="full", lr=LR_DENSE),
    "frozen": dict(mode="frozen-critical", budget_k=1000, lr=LR_DENSE),
    "ewc": dict(mode="full", protect="ewc", lr=LR_DENSE),
    **{f"{kind}-{pct:g}": dict(mode="lora" if kind == "lora" else "sparse", budget=pct / 100, lr=LR_SPARSE,
                               **({"mask_metric": "random"} if kind == "random" else {}))
       for pct in (0.1, 1) for kind in ("sparse", "random", "lora")},
}


def _rss(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def setup():
    torch.manual_seed(0)
    lm = esa.load_model("smollm2-135m")
    a, b = topic_domains(lm.tokenizer)
    bos = lm.tokenizer.bos_token_id
    train = make_windows(a, SEQ_LEN, N_TRAIN, N_EVAL, 0, bos_id=bos)
    retain = make_windows(b, SEQ_LEN, N_RETAIN_CALIB, N_EVAL, 0, bos_id=bos)
    return lm, train, retain


def grid(out: str, names: list[str]) -> None:
    lm, train, retain = setup()
    sw = watched_weight(lm, "detect")
    watch = (sw["param"], sw["flat_index"]) if sw else None
    params = weight_params(lm)
    cache: dict[str, dict] = {}

    def scores(on: str) -> dict:
        if on not in cache:
            windows = train if on == "train" else retain
            cache[on] = score(lm, params, "grad_squared", windows, seed=0, batch_size=BATCH, progress=False)
        return cache[on]

    for name in names:
        kw = dict(RUNS[name])
        if kw.get("mode") == "sparse" and kw.get("mask_metric") != "random":
            kw["mask_scores"] = scores("train")
        if kw.get("mode") == "frozen-critical":
            kw["mask_scores"] = scores("retain")
        if kw.get("protect") == "ewc":
            kw["fisher"] = scores("retain")
        t = time.perf_counter()
        with preserved(lm):
            result = finetune(lm, train, train, retain_windows=retain, steps=STEPS, batch_size=BATCH,
                              eval_every=STEPS, seed=0, superweight=watch, **kw)
        row = {"run": name, "wall_s": time.perf_counter() - t, **result.to_dict()}
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: target ppl {result.train_ppl_before:.3f} -> {result.train_ppl_after:.3f}, retain "
              f"{result.retain_ppl_before:.3f} -> {result.retain_ppl_after:.3f}, trainable {result.trainable:,}, "
              f"state {result.optimizer_state_bytes:,} B, sw {result.superweight}", flush=True)


def cost() -> None:
    """Time and peak-RSS growth of training steps: sparse (1% random mask) vs full, same batch."""
    lm, train, _ = setup()
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


if __name__ == "__main__":
    torch.set_num_threads(2)
    if sys.argv[1] == "cost":
        cost()
    else:
        grid(sys.argv[2], sys.argv[3:])
