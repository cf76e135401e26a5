"""Readable reports of run directories: Markdown, self-contained HTML, LaTeX tables.

`write_report(run_dirs, out, latex)` is the entry point; `load_run` reads a run directory once for
both the report and the figures (esa.plots).
"""

from esa.reports.rundata import RunData, load_run
from esa.reports.write import write_report

__all__ = ["RunData", "load_run", "write_report"]
