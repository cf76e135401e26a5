"""Time the figures and the report of one run directory (target: < 5 s together for SmolLM2-135M).

Makes a run directory first, e.g. the bundled model, global top-20, zero-perturbation:

    PYTHONPATH=src python -m esa.cli.main run --model smollm2-135m --metric grad_x_weight --mode global \
        --topk 20 --max-samples 8 --seq-len 128 --perturb zero --trials 5 --out-dir /tmp/smol_run
    PYTHONPATH=src python benchmarks/bench_plots.py /tmp/smol_run [--repeats 3]

Reports the import cost (matplotlib, pandas and the esa modules the figures need), then per repeat:
plot_run_dir (every figure, PNG + PDF) and write_report (Markdown + HTML + LaTeX, reusing the
figures just drawn), plus each figure's draw / PNG / PDF time. The run directory's plots/ and
report files are overwritten.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    t = time.perf_counter()
    from esa.pipeline.plotting import plot_run_dir
    from esa.plots.style import figure_bytes
    from esa.reports import load_run, write_report
    from esa.reports.figures import FIGURES
    print(f"import (matplotlib, pandas, torch via esa.artifacts, esa): {time.perf_counter() - t:.2f} s")

    totals, plots, reports, cpu = [], [], [], []
    for _ in range(args.repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        paths = plot_run_dir(args.run_dir)
        t1 = time.perf_counter()
        write_report([args.run_dir], latex=True)
        t2 = time.perf_counter()
        plots.append(t1 - t0)
        reports.append(t2 - t1)
        totals.append(t2 - t0)
        cpu.append(time.process_time() - c0)
    print(f"{len(paths)} figure files; median of {args.repeats}: plot_run_dir {statistics.median(plots):.2f} s, "
          f"write_report {statistics.median(reports):.2f} s, together {statistics.median(totals):.2f} s wall "
          f"(min {min(totals):.2f} s), {statistics.median(cpu):.2f} s CPU")

    run = load_run(args.run_dir)
    context = run.context()
    print(f"{'figure':18s} {'draw':>6s} {'png':>6s} {'pdf':>6s}")
    for spec in FIGURES:
        t0 = time.perf_counter()
        fig = spec.draw(run, context)
        if fig is None:
            continue
        t1 = time.perf_counter()
        figure_bytes(fig, "png")
        fig.set_layout_engine("none")  # as save_figure does: the layout is solved once
        t2 = time.perf_counter()
        figure_bytes(fig, "pdf")
        t3 = time.perf_counter()
        print(f"{spec.name:18s} {t1 - t0:6.2f} {t2 - t1:6.2f} {t3 - t2:6.2f}")


if __name__ == "__main__":
    main()
