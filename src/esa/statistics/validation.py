"""Statistics of a perturbation validation, from a plain per-condition table (no run config).

The table has one row per evaluated condition with columns `scale, k, set, seed, trial, delta_ppl,
delta_accuracy, ppl, n_weights, n_nan, n_inf` (what `esa.validate` produces). For every (scale, k):
each set's mean ΔPPL with a bootstrap CI, target-vs-random tests and the workflow's criteria.

Non-finite values: ΔPPL is +inf when a condition breaks the model (PPL overflows) and NaN when the
loss itself is NaN. Comparing inf with inf (or anything with NaN) decides nothing, so such a criterion
has `passed = None` with a reason, shown as N/A; the comparison then falls back on the share of trials
that broke the model and the median ΔPPL (the `robustness` criterion). inf against a finite value is an
ordinary comparison (inf >= 3 x 2.0 holds).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from esa.artifacts import schema
from esa.statistics.significance import bootstrap_ci, mann_whitney_greater, ratio

SETS = ("target", "random_k", "bottom_k")


@dataclass
class Criterion:
    """One pass/fail line of the research workflow; `passed is None` means not decidable (N/A)."""

    name: str
    rule: str
    passed: bool | None
    value: float | None
    reason: str = ""

    @property
    def label(self) -> str:
        return "N/A" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _broken(values: np.ndarray) -> int:
    return int((~np.isfinite(values)).sum())


def _describe(values: np.ndarray, seed: int) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"n": int(values.size), "n_nonfinite": int(values.size - finite.size),
                           "median": float(np.median(values)) if values.size else None}
    if values.size and finite.size == values.size:
        out["mean"] = float(values.mean())
        out["ci95"] = list(bootstrap_ci(values, seed=seed)) if values.size > 1 else [float(values[0])] * 2
    else:
        out["mean"] = (math.nan if np.isnan(values).any() else math.inf) if values.size else None
        out["ci95"] = None
    return out


def compare_at_least(a: float | None, b: float | None, factor: float) -> tuple[bool | None, str]:
    """Is a >= factor x b? None (with the reason) when the comparison is undecidable."""
    if a is None or b is None:
        return None, "a group is missing"
    if math.isnan(a) or math.isnan(b):
        return None, "ΔPPL is NaN (the loss itself is NaN)"
    if math.isinf(a) and math.isinf(b):
        return None, "both groups break the model (ΔPPL is inf in both)"
    return bool(a >= factor * b), ""


def summarize(table: pd.DataFrame, seed: int) -> list[dict[str, Any]]:
    """Per (scale, k): each set's ΔPPL/Δaccuracy with CIs, target-vs-random tests, the criteria."""
    out = []
    for (scale, k), group in table.groupby(["scale", "k"], sort=True):
        entry: dict[str, Any] = {"scale": float(scale), "k": int(k), "sets": {}}
        for set_name in SETS:
            g = group[group["set"] == set_name]
            if g.empty:
                continue
            entry["sets"][set_name] = {
                "delta_ppl": _describe(g["delta_ppl"].to_numpy(float), seed),
                "delta_accuracy": _describe(g["delta_accuracy"].to_numpy(float), seed),
                "mean_ppl": float(g["ppl"].mean()),
                "n_weights": int(g["n_weights"].iloc[0]),
                "n_nan_values": int(g["n_nan"].sum()),
                "n_inf_values": int(g["n_inf"].sum()),
                "broken_trials": _broken(g["delta_ppl"].to_numpy(float)),
            }
        entry["tests"] = tests(group)
        entry["criteria"] = [c.to_dict() for c in criteria(entry)]
        out.append(entry)
    if len(out) > 1:
        out.append({"dose_response": dose_response(out)})
    return out


def tests(group: pd.DataFrame) -> dict[str, Any]:
    """Empirical p (pooled over seeds), Mann-Whitney, and ratios of mean ΔPPL."""
    target = group[group["set"] == "target"]
    random_ = group[group["set"] == "random_k"]
    bottom = group[group["set"] == "bottom_k"]
    out: dict[str, Any] = {}
    if not random_.empty:
        hits = total = 0
        nan = bool(np.isnan(target["delta_ppl"].to_numpy(float)).any() or np.isnan(random_["delta_ppl"].to_numpy(float)).any())
        for seed, g in target.groupby("seed"):
            t = float(g["delta_ppl"].mean())
            r = random_[random_["seed"] == seed]["delta_ppl"].to_numpy(float)
            hits += int((r >= t).sum())
            total += r.size
        out["p_target_gt_random"] = None if nan else (1 + hits) / (1 + total)
        out["min_reachable_p"] = 1 / (1 + total)
        mw = None if nan else mann_whitney_greater(target["delta_ppl"].to_list(), random_["delta_ppl"].to_list())
        out["mann_whitney"] = None if mw is None else {"U": mw[0], "p": mw[1]}
        out["ratio_target_over_random"] = ratio(float(target["delta_ppl"].mean()), float(random_["delta_ppl"].mean()))
    if not bottom.empty and not random_.empty:
        out["ratio_random_over_bottom"] = ratio(float(random_["delta_ppl"].mean()), float(bottom["delta_ppl"].mean()))
    return out


def _ratio_criterion(name: str, rule: str, a: float | None, b: float | None, factor: float, value: Any,
                     broken: str) -> Criterion:
    passed, why = compare_at_least(a, b, factor)
    return Criterion(name, rule, passed, value, f"{why}: {broken}" if passed is None else "")


def criteria(entry: dict[str, Any]) -> list[Criterion]:
    """The research workflow's pass/fail lines, evaluated on the data (never assumed)."""
    sets, t_stats = entry["sets"], entry["tests"]
    t = sets["target"]["delta_ppl"]["mean"]
    impact_ok = None if t is None or math.isnan(t) else bool(t >= 0.1)
    out = [Criterion(schema.IMPACT, "dPPL(target) >= 0.1", impact_ok, t,
                     "" if impact_ok is not None else "ΔPPL(target) is NaN")]
    if "random_k" not in sets:
        return out
    r = sets["random_k"]["delta_ppl"]["mean"]
    broken = "; ".join(f"ΔPPL is non-finite in {v['broken_trials']} of {v['delta_ppl']['n']} {s} trials"
                       for s, v in sets.items())
    ratio_tr = t_stats.get("ratio_target_over_random")
    out.append(_ratio_criterion(schema.SEPARATION_3X, "dPPL(target) >= 3 x dPPL(random)", t, r, 3, ratio_tr, broken))
    out.append(_ratio_criterion(schema.SEPARATION_5X, "dPPL(target) >= 5 x dPPL(random) (phase-3 success criterion)",
                                t, r, 5, ratio_tr, broken))
    p = t_stats.get("p_target_gt_random")
    unreachable = t_stats["min_reachable_p"] >= 0.05
    note = (f" (unreachable: the smallest possible p with these trials is {t_stats['min_reachable_p']:.3g}; raise --trials)"
            if unreachable else "")
    out.append(Criterion(schema.SIGNIFICANCE, "empirical p(target > random) < 0.05" + note,
                         None if p is None else bool(p < 0.05), p, "ΔPPL is NaN" if p is None else ""))
    if "bottom_k" in sets:
        b = sets["bottom_k"]["delta_ppl"]["mean"]
        out.append(_ratio_criterion(schema.HIERARCHY_3X, "dPPL(random) >= 3 x dPPL(bottom)", r, b, 3,
                                    t_stats.get("ratio_random_over_bottom"), broken))
    if any(c.passed is None for c in out):
        out.append(_robust(sets))
    return out


def _robust(sets: dict[str, Any]) -> Criterion:
    """Where means are undecidable: more target trials break the model, or the median separates 3x."""
    tb = sets["target"]["broken_trials"] / max(1, sets["target"]["delta_ppl"]["n"])
    rb = sets["random_k"]["broken_trials"] / max(1, sets["random_k"]["delta_ppl"]["n"])
    tm, rm = sets["target"]["delta_ppl"]["median"], sets["random_k"]["delta_ppl"]["median"]
    by_median, _ = compare_at_least(tm, rm, 3)
    passed = True if tb > rb else (by_median if tb == rb else False)
    return Criterion("robustness", "share of broken trials target > random, or (equal shares) median dPPL(target) >= "
                     "3 x median dPPL(random)", passed, tb - rb,
                     f"broken share target {tb:.2f} vs random {rb:.2f}; median ΔPPL target {tm:.4g} vs random {rm:.4g}")


def dose_response(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether damage grows with strength (scale, then k) and the hierarchy holds at each level."""
    levels = [(e["scale"], e["k"]) for e in entries]
    series: dict[str, list[float | None]] = {s: [e["sets"].get(s, {}).get("delta_ppl", {}).get("mean") for e in entries] for s in SETS}
    monotonic = {s: all(a is not None and b is not None and b >= a for a, b in zip(v, v[1:]))
                 for s, v in series.items() if any(x is not None for x in v)}
    hierarchy = []
    for e in entries:
        m = {s: e["sets"][s]["delta_ppl"]["mean"] for s in e["sets"]}
        ok = m["target"] > m.get("random_k", -math.inf) > m.get("bottom_k", -math.inf)
        hierarchy.append({"scale": e["scale"], "k": e["k"], "holds": bool(ok)})
    return {"levels": levels, "delta_ppl": series, "monotonic": monotonic, "hierarchy": hierarchy}
