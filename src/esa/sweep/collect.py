"""One table of a sweep: a row per finished cell, its axis values and the headline figures of its files.

Headline figures (flat columns, scalars only, so the table loads anywhere):
- sensitivity_stats.json: the top-level scalars of its `global` statistics (`global.gini`, ...) and of
  its cross-seed `stability` (`stability.mean_jaccard`, ...);
- baseline.json: the scalars of its `fixed` protocol (`baseline.ppl`, ...);
- perturbation_results.json: the unperturbed `baseline.ppl` / `baseline.accuracy`, and per summary row
  (set, k, scale) the median and mean of delta_ppl (`perturb.target.k100.s1.delta_ppl_median`, ...).
Cells that are not done are left out; the table is empty (with its axis columns) when none is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from esa.artifacts import schema
from esa.sweep.grid import Cell, cell_status

_FILES = (schema.SENSITIVITY_STATS, schema.BASELINE, schema.PERTURBATION)


def _scalars(d: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {}
    return {f"{prefix}{k}": v for k, v in d.items() if isinstance(v, (int, float, str, bool)) or v is None}


def _scale(x: Any) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


def headline_figures(results: Mapping[str, Any]) -> dict[str, Any]:
    """The flat headline columns of one run directory's parsed result files (name -> JSON)."""
    row: dict[str, Any] = {}
    stats = results.get(schema.SENSITIVITY_STATS)
    if isinstance(stats, Mapping):
        row.update(_scalars({k: stats.get(k) for k in ("metric", "mode", "k")}, ""))
        row.update(_scalars(stats.get("global"), "global."))
        row.update(_scalars(stats.get("stability"), "stability."))
    base = results.get(schema.BASELINE)
    if isinstance(base, Mapping):
        row.update(_scalars(base.get("fixed"), "baseline."))
    pert = results.get(schema.PERTURBATION)
    if isinstance(pert, Mapping):
        row.update(_scalars(pert.get("baseline"), "baseline."))
        for s in pert.get("summary") or []:
            for set_name, figures in (s.get("sets") or {}).items():
                delta = (figures or {}).get("delta_ppl") or {}
                tag = f"perturb.{set_name}.k{s.get('k')}.s{_scale(s.get('scale'))}"
                row[f"{tag}.delta_ppl_median"] = delta.get("median")
                row[f"{tag}.delta_ppl_mean"] = delta.get("mean")
    return row


def collect_cells(cells: Sequence[Cell]) -> pd.DataFrame:
    """A row per done cell: `cell`, `run_dir`, the axis values, then its headline figures."""
    rows = []
    for cell in cells:
        if cell_status(cell) != "done":
            continue
        results = {}
        for name in _FILES:
            path = cell.run_dir / name
            if path.is_file():
                results[name] = json.loads(path.read_text())
        axes = {f"axis.{k}": (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in cell.axes.items()}
        rows.append({"cell": cell.name, "run_dir": str(cell.run_dir), **axes, **headline_figures(results)})
    columns = ["cell", "run_dir", *(f"axis.{k}" for k in (cells[0].axes if cells else {}))]
    return pd.DataFrame(rows, columns=None if rows else columns)
