"""`esa compare`: do runs with different metrics (or settings) select the same weights?"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import safe_open

from esa.artifacts import atomic_write_json, is_run_dir, schema
from esa.artifacts.reader import bad_file, read_run_json, read_run_table
from esa.errors import EsaError
from esa.models.files import safetensors_header
from esa.statistics import stability_report

log = logging.getLogger("esa")


def _label(run: Path, config: dict[str, Any], taken: set[str]) -> str:
    label = f"{config.get('metric', '?')}:{run.name}"
    return label if label not in taken else str(run)


def _keys(table: pd.DataFrame, shapes: dict[str, tuple[int, ...]] | None, csv: Path) -> set[tuple[str, Any]]:
    """Selected weights as (param, flat index) when shapes are known, else (param, 'row,col')."""
    if shapes is None:
        return set(zip(table["param"], table["index"].astype(str)))
    keys = set()
    for param, index in zip(table["param"], table["index"].astype(str)):
        if param not in shapes:
            raise bad_file(csv, f"names {param}, which its saved scores do not hold")
        try:
            keys.add((param, schema.ravel(schema.parse_index(index), shapes[param])))
        except ValueError as exc:
            raise bad_file(csv, f"has {param}[{index}]: {exc}") from None
    return keys


def model_of(run: Path) -> str:
    """The model a run profiled, as its manifest (else its config) names it."""
    manifest = read_run_json(run / schema.MANIFEST, required=True) or {}
    config = read_run_json(run / schema.CONFIG) or {}
    model = manifest.get("model") or {}
    spec = config.get("model") or {}
    return str(model.get("model_id") or spec.get("model") or "unknown model")


def load_selection(run: Path) -> tuple[dict[str, Any], pd.DataFrame, dict[str, tuple[int, ...]] | None, Any]:
    """A run's config, the first seed's top-k rows, and parameter shapes + a score lookup when scores were saved."""
    if not is_run_dir(run):
        raise EsaError(f"{run} is not an ESA run directory (no experiment_manifest.json)")
    config = read_run_json(run / schema.CONFIG, required=True) or {}
    csv = run / schema.TOP_WEIGHTS
    if not csv.is_file():
        raise EsaError(f"{run} has no top_weights.csv: it is not an `esa run` directory")
    table = read_run_table(csv, required=True)
    assert table is not None
    seed = int(table["seed"].iloc[0])
    table = table[table["seed"] == seed]
    score_file = run / schema.score_file(seed)
    if not score_file.is_file():
        return config, table, None, None
    shapes = {name: tuple(int(d) for d in info["shape"]) for name, info in safetensors_header(score_file).items()}

    def lookup(index: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with safe_open(str(score_file), framework="pt") as f:
            return {name: f.get_tensor(name).reshape(-1)[idx] for name, idx in index.items()}

    return config, table, shapes, lookup


def compare_runs(run_dirs: list[str], out: str | None = None) -> str:
    """Pairwise Jaccard of the runs' top-k (first seed), and Spearman on the union where scores were saved."""
    if len(run_dirs) < 2:
        raise EsaError("esa compare needs at least two run directories")
    loaded: dict[str, tuple[pd.DataFrame, Any, Any, Path]] = {}
    models: dict[str, list[str]] = {}
    for run in map(Path, run_dirs):
        config, table, shapes, lookup = load_selection(run)
        label = _label(run, config, set(loaded))
        loaded[label] = (table, shapes, lookup, run / schema.TOP_WEIGHTS)
        models.setdefault(model_of(run), []).append(label)
    same_model = len(models) == 1
    if not same_model:
        log.warning("these runs profiled different models (%s): the overlap compares positions, not the same "
                    "weights, and Spearman is not computed", "; ".join(f"{m}: {', '.join(ls)}" for m, ls in models.items()))
    by_score = same_model and all(shapes is not None for _, shapes, _, _ in loaded.values())
    sets = {label: _keys(table, shapes if by_score else None, csv) for label, (table, shapes, _, csv) in loaded.items()}
    lookups = {label: lookup for label, (_, _, lookup, _) in loaded.items()} if by_score else {}
    report = stability_report(sets, lookups)
    report["models"] = sorted(models)
    report["note"] = ("Spearman on the union of both top-k sets" if lookups
                      else "no Spearman across different models; only set overlap is reported" if not same_model
                      else "Spearman needs --save-scores in every run; only set overlap is reported")
    if out:
        atomic_write_json(Path(out), report)
    lines = [f"{'run A':30s} {'run B':30s} {'Jaccard':>8s} {'shared':>7s} {'Spearman':>9s}"]
    for p in report["pairs"]:
        rho = "-" if p["spearman"] is None else f"{p['spearman']:.3f}"
        lines.append(f"{p['a'][:30]:30s} {p['b'][:30]:30s} {p['jaccard']:8.3f} {p['intersection']:7d} {rho:>9s}")
    lines.append(f"mean Jaccard {report['mean_jaccard']:.3f}; {report['note']}")
    return "\n".join(lines)
