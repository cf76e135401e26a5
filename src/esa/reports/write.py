"""`write_report`: one Markdown + one self-contained HTML report (and LaTeX tables) for one or more runs."""

from __future__ import annotations

import os
from pathlib import Path

from esa.artifacts import atomic_write_text
from esa.errors import EsaError
from esa.plots import plot_compare
from esa.plots.values import fmt, num, pct
from esa.reports.document import Block, Code, Document, FigureBlock, Heading, Inline, Para, Table, to_html, to_latex, to_markdown
from esa.reports.figures import current_figures
from esa.reports.rundata import RunData, load_run
from esa.reports.sections import run_blocks, verdict_summary

REPORT_MD, REPORT_HTML, REPORT_TEX = "report.md", "report.html", "report_tables.tex"


def write_report(run_dirs: list[Path], out: Path | None = None, latex: bool = False) -> list[Path]:
    """Write report.md and report.html (plus report_tables.tex with `latex`) into `out`; returns their paths.

    `out` defaults to the run directory (one run) or the runs' common parent directory (several).
    Figures come from each run's plots/, redrawn there first when missing or older than the run's files.
    """
    if not run_dirs:
        raise EsaError("give at least one run directory to report on")
    runs = [load_run(Path(d)) for d in run_dirs]
    out_dir = Path(out) if out is not None else _default_out(runs)
    if out_dir.exists() and not out_dir.is_dir():
        raise EsaError(f"--out {out_dir} is a file; give a directory for the report")
    labels = _labels(runs)
    first = runs[0]
    title = (f"ESA report: {first.model_id}" + (f" · {first.config['metric']}" if first.config and "metric" in first.config else "")
             if len(runs) == 1 else f"ESA report: {len(runs)} runs")
    doc = Document(title)
    if len(runs) > 1:
        doc.add(*_comparison(runs, labels, out_dir))
    for run, label in zip(runs, labels):
        doc.add(*run_blocks(run, current_figures(run), label))
    paths = [out_dir / REPORT_MD, out_dir / REPORT_HTML]
    atomic_write_text(paths[0], to_markdown(doc, out_dir))
    atomic_write_text(paths[1], to_html(doc))
    if latex:
        paths.append(out_dir / REPORT_TEX)
        atomic_write_text(paths[2], to_latex(doc))
    return paths


def _default_out(runs: list[RunData]) -> Path:
    if len(runs) == 1:
        return runs[0].path
    return Path(os.path.commonpath([r.path.resolve() for r in runs]))


def _labels(runs: list[RunData]) -> list[str]:
    """Each run's directory name, or its full path where two runs share a name."""
    names = [r.path.resolve().name for r in runs]
    return [n if names.count(n) == 1 else str(r.path) for n, r in zip(names, runs)]


def _comparison(runs: list[RunData], labels: list[str], out_dir: Path) -> list[Block]:
    """A table of the runs side by side and, for runs of one model, the overlap of their top-k."""
    blocks: list[Block] = [Heading(1, "Comparison of runs", anchor="comparison")]
    rows: list[list[Inline]] = []
    for run, label in zip(runs, labels):
        cfg, g = run.config or {}, (run.stats or {}).get("global", {})
        stab = (run.stats or {}).get("stability") or {}
        base = (run.perturbation or {}).get("baseline") or (run.baseline or {}).get("fixed") or {}
        rows.append([label, run.model_id, str(cfg.get("metric", "-")),
                     f"{cfg.get('mode')} top-{cfg.get('topk')}" if "mode" in cfg else "-",
                     fmt(g.get("gini"), 3), fmt(g.get("max_over_median")), pct(g.get("top_share", {}).get("0.1%")),
                     fmt(stab.get("mean_jaccard"), 3), fmt(base.get("ppl")), verdict_summary(run) or "-"])
    blocks.append(Table(["run", "model", "metric", "selection", "Gini", "max / median", "top 0.1% share",
                         "mean Jaccard (seeds)", "baseline PPL", "perturbation criteria"], rows,
                        "Runs side by side (first seed)", "llllrrrrrl", "tab:comparison"))
    blocks += _overlap(runs, labels, out_dir)
    return blocks


def _overlap(runs: list[RunData], labels: list[str], out_dir: Path) -> list[Block]:
    from esa.statistics import stability_report

    tables = {label: run.first_seed_top() for run, label in zip(runs, labels)}
    sets = {label: set(zip(t["param"], t["index"])) for label, t in tables.items() if t is not None}
    models = {run.model_id for run, label in zip(runs, labels) if label in sets}
    if len(sets) < 2:
        return []
    if len(models) > 1:
        return [Para([f"The runs use different models ({', '.join(sorted(models))}): their selected weights are not compared."],
                     kind="note")]
    report = stability_report(sets)
    blocks: list[Block] = [Table(
        ["run A", "run B", "Jaccard", "shared", "union"],
        [[Code(p["a"]), Code(p["b"]), fmt(p["jaccard"], 3), fmt(p["intersection"]), fmt(p["union"])] for p in report["pairs"]],
        "Overlap of the selected weights between runs (first seed of each)", "llrrr")]
    paths = plot_compare(report, out_dir / "plots", context=f"{runs[0].model_id} · first seed of each run")
    png = next((p for p in paths if p.suffix == ".png"), None)
    if png is not None:
        blocks.append(FigureBlock(png, f"Jaccard overlap of the top-k between runs (mean {num(report['mean_jaccard']):.3g})."))
    return blocks
