"""Cost of each sensitivity metric on the bundled SmolLM2-135M, relative to the passes it is built from.

Time: every task runs in this process, interleaved round by round (one warm-up round, then the median of
`--repeats` rounds), so slow drift in machine load hits all tasks alike. Medians and minima of wall-clock
time are both reported, with the load average. Ratios compare each metric with the plain pass over the
same tokens at the same batch size (grad_squared also with batch 1, the batch it really runs at).
hutchinson_diag runs with 1 and with 2 probes: the first includes its one-off buffers (mean, M2, probe),
the difference is the cost of one more probe; both are compared with one gradient.
On a machine shared with other jobs, two intra-op threads wait on each other at every parallel op;
`--threads 1` then gives steadier ratios.

Peak memory: a child process (glibc told to mmap every allocation >= 64 KiB, so freed tensors leave the
resident set at once) resets the kernel's RSS high-water mark (`/proc/self/clear_refs` = 5) before each
task and reads `VmHWM` after it; the figure is that peak minus the resident size before the task,
relative to the model's parameter bytes. It includes the tensors a metric returns.

    .venv/bin/python benchmarks/bench_metrics.py [--windows 4 --seq-len 64 --batch-size 4 --repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

from esa.data import load_corpus, make_windows
from esa.evaluation.nll import next_token_nll
from esa.metrics import ScoringContext, get_metric
from esa.models import LoadedModel, load_model

MODEL = "smollm2-135m"
METRIC_TASKS = {  # task -> (metric, probes)
    "grad_x_weight": ("grad_x_weight", 1),
    "grad_squared": ("grad_squared", 1),
    "act_mag": ("act_mag", 1),
    "hutchinson 1 probe": ("hutchinson_diag", 1),
    "hutchinson 2 probes": ("hutchinson_diag", 2),
}
MARGINAL_PROBE = "hutchinson +1 probe"  # derived: 2 probes minus 1 probe
# (task, baseline task, target ratio)
RATIOS = (
    ("grad_x_weight", "fwd+bwd", 1.10),
    ("grad_squared", "fwd+bwd@1", 1.25),
    ("grad_squared", "fwd+bwd", 1.25),
    ("hutchinson 1 probe", "fwd+bwd", 3.5),
    (MARGINAL_PROBE, "fwd+bwd", 3.5),
    ("act_mag", "forward", None),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(MODEL)
    tasks = make_tasks(lm, args)
    if args.memory_child:
        for p in lm.model.parameters():  # page in weights the loader may have memory-mapped
            p.detach().sum()
        print(json.dumps({name: peak_rss_bytes(task) for name, task in tasks.items()}))
        return

    print(f"{MODEL}: {lm.n_params / 1e6:.1f}M params, {args.windows} windows x {args.seq_len} tokens, "
          f"batch {args.batch_size}, {args.threads} threads, torch {torch.__version__}")
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for round_ in range(1 + args.repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            if round_ > 0:
                times[name].append(time.perf_counter() - start)
    times[MARGINAL_PROBE] = [two - one for one, two in zip(times["hutchinson 1 probe"], times["hutchinson 2 probes"])]
    stats = {
        "median": {n: statistics.median(t) for n, t in times.items()},
        "min": {n: min(t) for n, t in times.items()},
    }
    load_after = os.getloadavg()[0]
    peaks = memory_in_child(args)
    model_bytes = sum(p.numel() * p.element_size() for p in lm.model.parameters())

    print(f"\n{'task':<18}{'median s':>10}{'min s':>8}{'peak extra RSS':>16}{'x model':>9}")
    for name in times:
        peak = peaks.get(name)
        mem = f"{peak / 2**20:>12.0f} MiB{peak / model_bytes:>9.2f}" if peak is not None else f"{'n/a':>16}"
        print(f"{name:<18}{stats['median'][name]:>10.2f}{stats['min'][name]:>8.2f}{mem}")
    print(f"(wall clock over {args.repeats} rounds; model parameters {model_bytes / 2**20:.0f} MiB; "
          f"1-min load average {load_before:.1f} before, {load_after:.1f} after timing on {os.cpu_count()} CPUs)\n")
    for task, base, target in RATIOS:
        goal = f"  (target <= {target:.2f}x)" if target else ""
        ratios = "  ".join(f"{stat} {stats[stat][task] / stats[stat][base]:.2f}x" for stat in stats)
        print(f"{task + ' / ' + base:<38}{ratios}{goal}")


def make_tasks(lm: LoadedModel, args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """Each task is one full pass over the same calibration windows."""
    corpus = load_corpus("builtin", lm.tokenizer)
    windows = make_windows(corpus, args.seq_len, args.windows, 1, seed=0)  # only calibration windows are used
    model = lm.model

    def metric(name: str, probes: int) -> Callable[[], object]:
        ctx = ScoringContext(
            model=model, params=lm.params, batches=lambda: windows.batches("calib", args.batch_size),
            n_windows=len(windows.calib_offsets), n_tokens=windows.n_predicted_tokens("calib"), probes=probes,
        )
        return lambda: get_metric(name)(ctx)

    def forward() -> None:
        with torch.no_grad():
            for ids in windows.batches("calib", args.batch_size):
                next_token_nll(model, ids)

    def forward_backward(batch_size: int) -> Callable[[], None]:
        def run() -> None:
            n_tokens = windows.n_predicted_tokens("calib")
            for ids in windows.batches("calib", batch_size):
                nll, _ = next_token_nll(model, ids)
                (nll.sum() / n_tokens).backward()
            model.zero_grad(set_to_none=True)

        return run

    return {
        "forward": forward,
        "fwd+bwd": forward_backward(args.batch_size),
        "fwd+bwd@1": forward_backward(1),
        **{task: metric(name, probes) for task, (name, probes) in METRIC_TASKS.items()},
    }


def peak_rss_bytes(task: Callable[[], object]) -> int:
    """Resident-set growth at the peak of `task` (the kernel's high-water mark, reset just before)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    task()
    return (_status_kib("VmHWM") - before) * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1])


def memory_in_child(args: argparse.Namespace) -> dict[str, int]:
    """Run every task once in a fresh process whose allocator returns freed memory to the OS at once."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    argv = [sys.executable, __file__, "--memory-child", "--windows", str(args.windows), "--seq-len",
            str(args.seq_len), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    try:
        out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.CalledProcessError, OSError, ValueError) as err:  # e.g. /proc/self/clear_refs not writable
        print(f"peak memory not measured: {err}", file=sys.stderr)
        return {}


if __name__ == "__main__":
    main()
