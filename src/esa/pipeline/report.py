"""`esa report`: a readable report (Markdown + self-contained HTML, optional LaTeX tables) for run directories."""

from __future__ import annotations

from pathlib import Path

from esa.reports import write_report
from esa.reports.rundata import load_run
from esa.reports.sections import verdict_summary


def report_command(run_dirs: list[Path | str], latex: bool = False, out: Path | str | None = None) -> str:
    """Write the report and return a one-paragraph summary naming the files and each run's verdicts."""
    paths = write_report([Path(d) for d in run_dirs], Path(out) if out is not None else None, latex)
    lines = [f"report    {paths[1].resolve()} (self-contained HTML)",
             f"          {paths[0].resolve()} (Markdown, figures linked from each run's plots/)"]
    if latex:
        lines.append(f"          {paths[2].resolve()} (LaTeX tables, booktabs)")
    for d in run_dirs:
        run = load_run(Path(d))
        verdict = verdict_summary(run) or ("no perturbation results" if run.command == "run" else f"{run.command} results")
        lines.append(f"run       {Path(d)}: {run.model_id}; {verdict}")
    return "\n".join(lines)
