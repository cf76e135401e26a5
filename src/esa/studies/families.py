"""Architecture-family comparison across runs: where sensitivity sits, by group of runs.

Per run (from sensitivity_stats.json, top_weights.csv and superweights.json, never recomputed):
- depth profile: each decoder block's share of the in-block score mass times n_layers (a density:
  1 everywhere for a flat profile), placed at depth layer / (n_layers - 1) and linearly interpolated
  onto one grid of [0, 1], so models of different depth share an axis;
- attention_vs_mlp: attention mass / feed-forward mass (components mlp, expert, router), for each
  seed the run saved (its spread over seeds is reported beside the run's first-seed value);
- early_concentration: share of the in-block mass in the first quarter of the blocks (index < L/4);
- embed_head_share: embedding + lm_head share of all mass;
- MoE: router and expert mass shares, and the per-expert share of the selected (top-k) expert weights;
- super weights: relative depth and component of each confirmed one.

Groups default to (family, kind) with kind = dense|moe / base|instruct (see esa.studies.table); runs
of different metrics are split (metric joins the group keys), as scaling fits are split per metric.
Between two groups each with >= 2 runs, a scalar quantity gets a two-sided permutation test of the
difference of group means (scipy.stats.permutation_test, exact when the relabelings number <= 9999,
else 9999 draws from a fixed seed); the runs behind each group are stated. With one run in a group
the group is described, not tested. Costs: O(runs x layers), numpy and pandas only.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats as sps

from esa.artifacts import read_json
from esa.artifacts import schema as S
from esa.errors import EsaError
from esa.studies.table import FEED_FORWARD, attention_ratio, run_table

GRID = np.linspace(0.0, 1.0, 21)
EARLY_FRACTION = 0.25
QUANTITIES = ("attention_vs_mlp", "early_concentration", "embed_head_share", "gini", "max_over_median",
              "top_share_0.1%", "mass_share_router", "mass_share_expert")
DEFAULT_GROUP_BY = ("family", "kind")
N_RESAMPLES = 9999
SEED = 0


@dataclass
class Group:
    name: str
    keys: dict[str, Any]
    n_runs: int
    runs: list[str]
    models: list[str]
    quantities: dict[str, dict[str, Any]]  # quantity -> {n, mean, std, min, max, values}
    profile: dict[str, list[float]]  # mean, min, max over runs on GRID
    per_run_profiles: list[list[float]]
    seed_spread: dict[str, Any]  # attention_vs_mlp over the seeds of each run
    experts: dict[str, Any] | None
    superweights: list[dict[str, Any]]


@dataclass
class FamiliesResult:
    group_by: list[str]
    grid: list[float]
    groups: list[Group]
    tests: list[dict[str, Any]]
    table: pd.DataFrame
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"group_by": self.group_by, "grid": self.grid, "protocol": self.protocol,
                "groups": [asdict(g) for g in self.groups], "tests": self.tests,
                "runs": self.table.to_dict(orient="records")}


def families(runs: Iterable[Path | str], *, group_by: list[str] | None = None) -> FamiliesResult:
    """Group `runs` and compare their sensitivity layout (see the module docstring)."""
    paths = [Path(r) for r in runs]
    table = run_table(paths)
    keys = list(group_by or DEFAULT_GROUP_BY)
    unknown = [k for k in keys if k not in table.columns]
    if unknown:
        raise EsaError(f"cannot group by {', '.join(unknown)}; choose among "
                       f"family, kind, moe, instruction_tuned, model, metric, source")
    if table["metric"].isna().all():
        raise EsaError("none of the runs scored weights (no sensitivity_stats.json); give esa run directories")
    if table["metric"].dropna().nunique() > 1 and "metric" not in keys:
        keys.append("metric")  # mass shares of different metrics are not comparable: split, never pool
    extra = pd.DataFrame([_run_layout(p, n) for p, n in zip(paths, table["n_layers"])])
    table = pd.concat([table, extra], axis=1)
    groups = []
    for values, part in table.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        groups.append(_group(dict(zip(keys, values)), part))
    tests = _tests(groups)
    protocol = {
        "profile": "block mass share x n_layers at depth layer/(n_layers-1), linear interpolation onto grid",
        "early_concentration": f"share of in-block mass in blocks with index < {EARLY_FRACTION:g} x n_layers",
        "attention_vs_mlp": f"attention mass / ({' + '.join(FEED_FORWARD)}) mass",
        "tests": f"two-sided permutation test of the difference of group means over runs "
                 f"(scipy.stats.permutation_test, {N_RESAMPLES} resamples or exact, seed {SEED}); "
                 f"groups with one run are described, not tested",
    }
    return FamiliesResult(group_by=keys, grid=GRID.tolist(), groups=groups, tests=tests,
                          table=table.drop(columns=["_profile", "_seed_ratios", "_experts"]), protocol=protocol)


def depth_profile(layer_mass: dict[int, float]) -> np.ndarray:
    """Block masses -> density on GRID (NaN everywhere when the run has no block mass)."""
    layers = sorted(layer_mass)
    total = sum(layer_mass.values())
    if not layers or total <= 0:
        return np.full(len(GRID), np.nan)
    n = len(layers)
    density = np.array([layer_mass[i] / total * n for i in layers])
    if n == 1:
        return np.full(len(GRID), density[0])
    depth = np.array(layers, float) / (n - 1)
    return np.interp(GRID, depth, density)


def _run_layout(path: Path, n_layers: float) -> dict[str, Any]:
    """The per-run numbers not already in the run table."""
    stats = read_json(path / S.SENSITIVITY_STATS) if (path / S.SENSITIVITY_STATS).is_file() else {}
    by_layer = {int(k): float(v.get("sum", 0.0)) for k, v in (stats.get("by_layer") or {}).items() if k != "none"}
    total = sum(by_layer.values())
    early = [v for k, v in by_layer.items() if k < EARLY_FRACTION * len(by_layer)]
    comp = {k: float(v.get("sum", 0.0)) for k, v in (stats.get("by_component") or {}).items()}
    comp_total = sum(comp.values())
    seeds = [stats] + list((stats.get("by_seed") or {}).values()) if stats else []
    ratios = [r for r in (attention_ratio(s.get("by_component") or {}) for s in seeds) if math.isfinite(r)]
    return {
        "_profile": depth_profile(by_layer).tolist(),
        "early_concentration": sum(early) / total if total > 0 else math.nan,
        "embed_head_share": (comp.get("embedding", 0.0) + comp.get("lm_head", 0.0)) / comp_total
        if comp_total > 0 else math.nan,
        "_seed_ratios": ratios,
        "_experts": _expert_shares(path),
    }


def _expert_shares(path: Path) -> dict[str, float] | None:
    """Share of the selected expert weights held by each expert (first seed of top_weights.csv):
    the `expert` column, or the leading coordinate of a fused [expert, row, col] index."""
    csv = path / S.TOP_WEIGHTS
    if not csv.is_file():
        return None
    top = pd.read_csv(csv, keep_default_na=False, dtype={"index": str})
    top = top[(top["seed"] == top["seed"].iloc[0]) & (top["component"] == "expert")] if len(top) else top
    if top.empty:
        return None
    experts = [int(e) if int(e) >= 0 else S.parse_index(i)[0] for e, i in zip(top["expert"], top["index"])]
    counts = pd.Series(experts).value_counts().sort_index()
    return {str(k): float(v / counts.sum()) for k, v in counts.items()}


def _group(keys: dict[str, Any], part: pd.DataFrame) -> Group:
    quantities = {}
    for q in QUANTITIES:
        values = pd.to_numeric(part[q], errors="coerce").dropna().tolist() if q in part else []
        if values:
            quantities[q] = {"n": len(values), "mean": float(np.mean(values)),
                             "std": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
                             "min": float(min(values)), "max": float(max(values)), "values": values}
    profiles = np.array(part["_profile"].tolist(), float)
    has = ~np.isnan(profiles).all(axis=1)
    profile = ({"mean": np.nanmean(profiles[has], 0).tolist(), "min": np.nanmin(profiles[has], 0).tolist(),
                "max": np.nanmax(profiles[has], 0).tolist()} if has.any() else {})
    seed_spread = {}
    for run, ratios in zip(part["run"], part["_seed_ratios"]):
        if ratios:
            seed_spread[run] = {"n_seeds": len(ratios), "mean": float(np.mean(ratios)),
                                "std": float(np.std(ratios, ddof=1)) if len(ratios) > 1 else math.nan,
                                "min": float(min(ratios)), "max": float(max(ratios))}
    expert_rows = [e for e in part["_experts"] if e]
    experts = None
    if expert_rows:
        keys_e = sorted({k for e in expert_rows for k in e}, key=int)
        shares = np.array([[e.get(k, 0.0) for k in keys_e] for e in expert_rows])
        experts = {"selected_share_by_expert": dict(zip(keys_e, shares.mean(0).tolist())),
                   "max_over_min": float(shares.mean(0).max() / shares.mean(0).min()) if shares.mean(0).min() > 0
                   else math.inf, "n_runs": len(expert_rows)}
    placements = [dict(p, run=run) for run, text in zip(part["run"], part["superweights"])
                  if isinstance(text, str) for p in json.loads(text)]
    name = " · ".join(f"{v}" for v in keys.values())
    return Group(name=name, keys={k: _plain(v) for k, v in keys.items()}, n_runs=len(part), runs=part["run"].tolist(),
                 models=sorted(set(part["model"].astype(str))), quantities=quantities, profile=profile,
                 per_run_profiles=profiles.tolist(), seed_spread=seed_spread, experts=experts,
                 superweights=placements)


def _tests(groups: list[Group]) -> list[dict[str, Any]]:
    rows = []
    for a, b in itertools.combinations(groups, 2):
        if a.keys.get("metric") != b.keys.get("metric"):
            continue  # scores of different metrics are not on one scale: no comparison across them
        for q in QUANTITIES:
            va, vb = a.quantities.get(q, {}).get("values", []), b.quantities.get(q, {}).get("values", [])
            if not va or not vb:
                continue
            row: dict[str, Any] = {"quantity": q, "group_a": a.name, "group_b": b.name, "n_a": len(va), "n_b": len(vb),
                                   "mean_a": float(np.mean(va)), "mean_b": float(np.mean(vb)),
                                   "difference": float(np.mean(va) - np.mean(vb))}
            if min(len(va), len(vb)) < 2:
                row["p_value"] = None
                row["note"] = (f"described, not tested: {a.name if len(va) < 2 else b.name} has one run "
                               "(a permutation test needs >= 2 runs per group)")
            else:
                res = sps.permutation_test((np.array(va), np.array(vb)), _mean_difference, permutation_type="independent",
                                           n_resamples=N_RESAMPLES, alternative="two-sided",
                                           random_state=np.random.default_rng(SEED))
                n_relabel = math.comb(len(va) + len(vb), len(va))
                row["p_value"] = float(res.pvalue)
                row["note"] = (f"exact over {n_relabel} relabelings; smallest attainable p = {2 / n_relabel:.3g}"
                               if n_relabel <= N_RESAMPLES else f"{N_RESAMPLES} random relabelings")
            rows.append(row)
    return rows


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
