"""`esa compare`: do runs with different metrics (or settings) select the same weights?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import safe_open

from esa.artifacts import atomic_write_json, is_run_dir, read_json
from esa.errors import EsaError
from esa.statistics import stability_report


def _label(run: Path, config: dict[str, Any], taken: set[str]) -> str:
    label = f"{config.get('metric', '?')}:{run.name}"
    return label if label not in taken else str(run)


def _keys(table: pd.DataFrame, shapes: dict[str, tuple[int, ...]] | None) -> set[tuple[str, Any]]:
    """Selected weights as (param, flat index) when shapes are known, else (param, 'row,col')."""
    if shapes is None:
        return set(zip(table["param"], table["index"].astype(str)))
    keys = set()
    for param, index in zip(table["param"], table["index"].astype(str)):
        flat = 0
        for size, i in zip(shapes[param], (int(x) for x in index.split(","))):
            flat = flat * size + i
        keys.add((param, flat))
    return keys


def load_selection(run: Path) -> tuple[dict[str, Any], pd.DataFrame, dict[str, tuple[int, ...]] | None, Any]:
    """A run's config, the first seed's top-k rows, and parameter shapes + a score lookup when scores were saved."""
    if not is_run_dir(run):
        raise EsaError(f"{run} is not an ESA run directory (no experiment_manifest.json)")
    config = read_json(run / "config.json")
    csv = run / "top_weights.csv"
    if not csv.is_file():
        raise EsaError(f"{run} has no top_weights.csv: it is not an `esa run` directory")
    table = pd.read_csv(csv, keep_default_na=False)
    seed = int(table["seed"].iloc[0])
    table = table[table["seed"] == seed]
    score_file = run / "scores" / f"scores_seed{seed}.safetensors"
    if not score_file.is_file():
        return config, table, None, None
    with safe_open(str(score_file), framework="pt") as f:
        shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}

    def lookup(index: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with safe_open(str(score_file), framework="pt") as f:
            return {name: f.get_tensor(name).reshape(-1)[idx] for name, idx in index.items()}

    return config, table, shapes, lookup


def compare_runs(run_dirs: list[str], out: str | None = None) -> str:
    """Pairwise Jaccard of the runs' top-k (first seed), and Spearman on the union where scores were saved."""
    if len(run_dirs) < 2:
        raise EsaError("esa compare needs at least two run directories")
    loaded: dict[str, tuple[pd.DataFrame, Any, Any]] = {}
    for run in map(Path, run_dirs):
        config, table, shapes, lookup = load_selection(run)
        loaded[_label(run, config, set(loaded))] = (table, shapes, lookup)
    by_score = all(shapes is not None for _, shapes, _ in loaded.values())
    sets = {label: _keys(table, shapes if by_score else None) for label, (table, shapes, _) in loaded.items()}
    lookups = {label: lookup for label, (_, _, lookup) in loaded.items()} if by_score else {}
    report = stability_report(sets, lookups)
    report["note"] = ("Spearman on the union of both top-k sets" if lookups
                      else "Spearman needs --save-scores in every run; only set overlap is reported")
    if out:
        atomic_write_json(Path(out), report)
    lines = [f"{'run A':30s} {'run B':30s} {'Jaccard':>8s} {'shared':>7s} {'Spearman':>9s}"]
    for p in report["pairs"]:
        rho = "-" if p["spearman"] is None else f"{p['spearman']:.3f}"
        lines.append(f"{p['a'][:30]:30s} {p['b'][:30]:30s} {p['jaccard']:8.3f} {p['intersection']:7d} {rho:>9s}")
    lines.append(f"mean Jaccard {report['mean_jaccard']:.3f}; {report['note']}")
    return "\n".join(lines)
