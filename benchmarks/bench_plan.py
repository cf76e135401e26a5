"""Planner vs measurement: predicted and measured peak memory of gradient passes on the bundled SmolLM2-135M.

Two passes per setting, fp32 on CPU, two calibration batches each (the second runs with every
accumulator allocated, the steady state of a real run):
  fold    a plain loop whose post-accumulate-grad hooks fold each gradient into a float32 accumulator
          (esa.scale.folded_backward), against the plan's pass peak (its "results" phase left out: the
          loop returns no second buffer);
  metric  ESA's grad_x_weight metric itself, against the plan's full "allocated" figure.
Measured = weights + the profiler's peak of live CPU tensor bytes above them (esa.scale.measure_peak_memory);
predicted = tensor bytes, without the fragmentation margin or CUDA context the plan adds for a GPU.
Target: within 20%.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_plan.py [--seq-lens 128,256] [--batch-sizes 1,4] [--no-metric]
"""

from __future__ import annotations

import argparse
import time

import torch

from esa.metrics import ScoringContext, get_metric
from esa.models import load_model
from esa.scale import folded_backward, measure_peak_memory, plan_run

MODEL = "smollm2-135m"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", default="128,256")
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--no-metric", action="store_true", help="only the plain folding loop")
    args = parser.parse_args()
    lm = load_model(MODEL, dtype="fp32", device="cpu")
    model = lm.model
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    vocab = model.config.vocab_size
    print(f"{MODEL}: {lm.n_params / 1e6:.1f} M parameters, fp32 on CPU, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'pass':7s} {'batch':>5s} {'seq':>5s} {'predicted MiB':>14s} {'measured MiB':>13s} {'error':>8s} "
          f"{'peak phase':>18s} {'seconds':>8s}")
    errors = []
    for seq_len in (int(s) for s in args.seq_lens.split(",")):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            gen = torch.Generator().manual_seed(0)
            batches = [torch.randint(0, vocab, (batch, seq_len), generator=gen) for _ in range(2)]
            plan = plan_run(MODEL, "grad_x_weight", dtype="fp32", seq_len=seq_len, batch_size=batch, gpu="cpu")
            mem = plan["memory_gib"]
            pass_phases = {k: v for k, v in mem["phases"].items() if k != "results"}
            runs = [("fold", mem["weights"] + mem["accumulators"] + max(pass_phases.values()),
                     max(pass_phases, key=pass_phases.get), lambda: folded_backward(model, batches))]
            if not args.no_metric:
                ctx = ScoringContext(
                    model=model, params=lm.params, batches=lambda: iter(batches), n_windows=2 * batch,
                    n_tokens=2 * batch * (seq_len - 1),
                )
                runs.append(("metric", mem["allocated"], mem["peak_phase"], lambda: get_metric("grad_x_weight")(ctx)))
            for name, predicted_gib, phase, fn in runs:
                start = time.perf_counter()
                measured = (weights + measure_peak_memory(fn)) / 2**20
                seconds = time.perf_counter() - start
                predicted = predicted_gib * 1024
                error = 100 * (predicted - measured) / measured
                errors.append(abs(error))
                print(f"{name:7s} {batch:5d} {seq_len:5d} {predicted:14.1f} {measured:13.1f} {error:+7.1f}% "
                      f"{phase:>18s} {seconds:8.1f}", flush=True)
    print(f"largest |error|: {max(errors):.1f}% (target 20%)")


if __name__ == "__main__":
    main()
