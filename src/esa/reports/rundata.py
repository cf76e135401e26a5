"""Read what a command saved in a run directory, once, for the figures and the report.

Nothing here recomputes a statistic: every number shown downstream was written by the pipeline.
Any part may be missing (a run without --perturb, a baseline directory); its field is then None.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from esa.artifacts import schema
from esa.artifacts import is_run_dir
from esa.artifacts.reader import read_run_json, read_run_table
from esa.errors import EsaError

# The files figures are drawn from; when none changed, saved figures are still current.
# Application and study results, read as plain JSON documents (their commands own their schema).
APPLICATION_FILES = (schema.PRUNE, schema.QUANT, schema.FAULTS, schema.ATTACK, schema.FINETUNE, schema.INTERPRET,
                     schema.SCALING, schema.FAMILIES)
INPUT_FILES = ("config.json", "sensitivity_stats.json", "top_weights.csv", "perturbation_results.json",
               "superweights.json", "baseline.json", *APPLICATION_FILES)


@dataclass
class RunData:
    path: Path
    manifest: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    top: pd.DataFrame | None = None
    perturbation: dict[str, Any] | None = None
    superweights: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # application file name -> content
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return str(self.model.get("model_id") or (self.config or {}).get("model", {}).get("model") or "unknown model")

    @property
    def command(self) -> str:
        return str((self.manifest or {}).get("command", "run"))

    def first_seed_top(self) -> pd.DataFrame | None:
        """The first seed's selection: what the report's tables and the layer figures describe."""
        if self.top is None or self.top.empty:
            return None
        return self.top[self.top["seed"] == self.top["seed"].iloc[0]]

    def context(self) -> str:
        """One line naming model, metric and protocol, for figure titles."""
        cfg = self.config or {}
        parts = [self.model_id]
        if self.stats is not None or "metric" in cfg:
            metric = cfg.get("metric") or (self.stats or {}).get("metric", "?")
            mode = cfg.get("mode") or (self.stats or {}).get("mode", "")
            k = cfg.get("topk") or (self.stats or {}).get("k", "")
            parts.append(f"{metric}, {mode} top-{k}" if mode else str(metric))
            data = cfg.get("data", {})
            if data:
                parts.append(f"{Path(str(data.get('dataset', '?'))).name} data, {data.get('max_samples', '?')} x "
                             f"{data.get('seq_len', '?')}-token calibration windows")
            seeds = cfg.get("seeds") or (cfg.get("data") or {}).get("seeds") or []
            if seeds:
                parts.append(f"seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))}")
        elif self.baseline is not None:
            parts.append(f"baseline, {self.baseline.get('preset', '')} preset, seq_len {self.baseline.get('seq_len', '?')}")
        elif self.superweights is not None:
            parts.append("super-weight detection")
        return " · ".join(parts)


def load_run(run_dir: Path | str, lm_summary: dict[str, Any] | None = None) -> RunData:
    """Read every saved part of `run_dir`. Without experiment_manifest.json the directory is not a run,
    unless `lm_summary` is given: the pipeline draws figures before it writes the manifest."""
    path = Path(run_dir)
    if not path.is_dir():
        raise EsaError(f"{path} is not a directory; give an ESA run directory (the --out-dir of esa run)")
    if lm_summary is None and not is_run_dir(path):
        raise EsaError(f"{path} is not an ESA run directory (no experiment_manifest.json)")
    run = RunData(path=path)
    run.manifest = read_run_json(path / "experiment_manifest.json")
    run.config = read_run_json(path / "config.json")
    run.stats = read_run_json(path / "sensitivity_stats.json")
    run.perturbation = read_run_json(path / "perturbation_results.json")
    run.superweights = read_run_json(path / "superweights.json")
    run.baseline = read_run_json(path / "baseline.json")
    for name in APPLICATION_FILES:
        data = read_run_json(path / name)
        if data is not None:
            run.results[name] = data
    run.top = read_run_table(path / "top_weights.csv")
    run.model = dict(lm_summary or (run.manifest or {}).get("model") or {})
    return run


def input_fingerprint(run_dir: Path) -> dict[str, list[Any]]:
    """(size, SHA-256) of each input file present: changes with the content, and never with the clock,
    so two identical runs write identical figures.json files (the inputs are small JSON/CSV files)."""
    out: dict[str, list[Any]] = {}
    for name in INPUT_FILES:
        p = Path(run_dir) / name
        if p.is_file():
            data = p.read_bytes()
            out[name] = [len(data), hashlib.sha256(data).hexdigest()]
    return out
