"""Phase 3: perturb the selected weights and matched controls, measure the damage, test it.

For every seed, scale and k: the target set (top-k), `random_k` controls drawn with the target's
per-tensor counts (`--trials` draws), and `bottom_k` (the least sensitive weights, same mode and k).
Every condition is one evaluation pass on the evaluation windows (never the calibration windows) of
the model perturbed in place and restored bit-exactly; no copy of the model is made.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from esa.artifacts import atomic_write_json, write_table
from esa.errors import EsaError
from esa.evaluation import EvalResult, evaluate
from esa.models import LoadedModel
from esa.perturb import apply_perturbation, get_perturbation, random_matched, random_matched_magnitude, trial_generator
from esa.pipeline.config import RunConfig
from esa.pipeline.profile import SeedProfile
from esa.ranking import WeightSet
from esa.statistics import bootstrap_ci, mann_whitney_greater, ratio

log = logging.getLogger("esa")

SETS = ("target", "random_k", "bottom_k")


def perturb_params(cfg: RunConfig, scale: float) -> dict[str, Any]:
    """The options this perturbation takes, from the run's flags (others are rejected if given)."""
    p = cfg.perturb
    pert = get_perturbation(p.perturb)
    given = {"scale": scale, "noise_ref": p.noise_ref, "prob": p.prob, "bit": p.bit}
    accepted = {k: v for k, v in given.items() if k in pert.defaults}
    explicit = {"prob": p.prob, "bit": p.bit}
    rejected = [f"--{'perturb-prob' if k == 'prob' else k}" for k, v in explicit.items() if v is not None and k not in pert.defaults]
    if rejected:
        raise EsaError(f"--perturb {p.perturb} does not use {', '.join(rejected)}")
    return accepted


def is_random(cfg: RunConfig) -> bool:
    """Whether one application differs from the next (then the target is re-drawn per trial too)."""
    return cfg.perturb.perturb == "gauss_noise" or (cfg.perturb.perturb == "bit_flip" and cfg.perturb.prob is not None)


def check_perturb_options(cfg: RunConfig) -> None:
    """Validate every perturbation option before any model is loaded."""
    pert = get_perturbation(cfg.perturb.perturb)
    if not cfg.perturb.scales:
        raise EsaError("--perturb-scale needs at least one number")
    for scale in cfg.perturb.scales:
        pert.options(torch.float32, **perturb_params(cfg, scale))
    if any(k <= 0 for k in cfg.perturb.topks):
        raise EsaError("every --topk value must be positive")


def prefix(selection: WeightSet, k: int, mode: str) -> dict[str, torch.Tensor]:
    """The first k of a ranked selection: globally, or per tensor in per_layer mode."""
    ids = selection.param_ids
    flat = selection.flat_index
    if mode == "global":
        keep = torch.arange(len(flat)) < k
    else:
        keep = torch.zeros(len(flat), dtype=torch.bool)
        for pid in torch.unique(ids).tolist():
            where = (ids == pid).nonzero().reshape(-1)
            keep[where[:k]] = True
    out: dict[str, torch.Tensor] = {}
    for pid in torch.unique(ids[keep]).tolist():
        out[selection.param_names[pid]] = torch.sort(flat[keep & (ids == pid)]).values
    return out


def validate_selection(
    cfg: RunConfig, lm: LoadedModel, profiles: list[SeedProfile], *, progress: bool, stage: Path
) -> dict[str, Any]:
    """Evaluate all conditions, write perturbation_results.{csv,parquet,json}, return the summary."""
    p = cfg.perturb
    windows = profiles[0].windows
    batch = cfg.data.batch_size
    base = evaluate(lm.model, windows, "eval", batch, progress)
    log.info("baseline PPL %.4f on %d evaluation windows", base.ppl, base.n_windows)
    named = dict(lm.model.named_parameters())
    shapes = {n: tuple(t.shape) for n, t in named.items()}
    ks = p.topks or [cfg.topk]
    n_target_trials = p.trials if is_random(cfg) else 1
    rows: list[dict[str, Any]] = []
    for prof in profiles:
        for scale in p.scales:
            params = perturb_params(cfg, scale)
            for k in ks:
                sets: dict[str, list[dict[str, torch.Tensor]]] = {
                    "target": [prefix(prof.selection, k, cfg.mode)] * n_target_trials}
                if "random_k" in p.controls:
                    sets["random_k"] = [
                        _random_control(sets["target"][0], shapes, named, p.match_magnitude,
                                        trial_generator(prof.seed, f"control:random_k/k={k}", t))
                        for t in range(p.trials)
                    ]
                if "bottom_k" in p.controls:
                    assert prof.bottom is not None
                    sets["bottom_k"] = [prefix(prof.bottom, k, cfg.mode)] * n_target_trials
                for set_name, selections in sets.items():
                    for trial, selection in enumerate(selections):
                        gen = trial_generator(prof.seed, f"noise:{p.perturb}/scale={scale}/k={k}/{set_name}", trial)
                        with apply_perturbation(lm.model, selection, p.perturb, gen, **params) as info:
                            res = evaluate(lm.model, windows, "eval", batch, False, allow_nonfinite=True)
                        rows.append(_row(cfg, prof.seed, scale, k, set_name, trial, selection, res, base, info.totals()))
    table = pd.DataFrame(rows)
    summary = summarize(table, base, cfg)
    write_table(table.assign(bit_flips=table["bit_flips"].astype(str)), stage / "perturbation_results.csv")
    atomic_write_json(stage / "perturbation_results.json", {
        "protocol": {
            "perturbation": p.perturb,
            "definitions": {str(scale): _definition(cfg, scale) for scale in p.scales},
            "scales": p.scales,
            "ks": ks,
            "mode": cfg.mode,
            "controls": p.controls,
            "trials": p.trials,
            "target_trials": n_target_trials,
            "match_magnitude": p.match_magnitude,
            "evaluation": "evaluation windows only (see experiment_manifest.json for offsets)",
            "random_k": "same number of weights per tensor as the target, drawn uniformly without replacement "
                        "from that tensor's non-target weights" + (", matched to the target's |w| quantile bins"
                                                                   if p.match_magnitude else ""),
            "p_value": "empirical, one-sided: (1 + #{random trials with dPPL >= the target's dPPL}) / (1 + n), pooled over seeds",
        },
        "baseline": {"ppl": base.ppl, "accuracy": base.accuracy, "n_tokens": base.n_tokens, "n_windows": base.n_windows},
        "summary": summary,
        "rows": table.to_dict(orient="records"),
    })
    return {"summary": summary, "summary_lines": summary_lines(summary, base)}


def _definition(cfg: RunConfig, scale: float) -> str:
    pert = get_perturbation(cfg.perturb.perturb)
    return pert.definition(pert.options(torch.float32, **perturb_params(cfg, scale)))


def _random_control(target: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]],
                    named: dict[str, torch.Tensor], match_magnitude: bool, gen: torch.Generator) -> dict[str, torch.Tensor]:
    if match_magnitude:
        return random_matched_magnitude(target, {n: named[n].detach() for n in target}, gen)
    return random_matched(target, shapes, gen)


def _row(cfg: RunConfig, seed: int, scale: float, k: int, set_name: str, trial: int, selection: dict[str, torch.Tensor],
         res: EvalResult, base: EvalResult, totals: dict[str, Any]) -> dict[str, Any]:
    return {
        "perturbation": cfg.perturb.perturb,
        "scale": scale,
        "set": set_name,
        "trial": trial,
        "seed": seed,
        "k": k,
        "n_weights": int(sum(int(v.numel()) for v in selection.values())),
        "ppl": res.ppl,
        "accuracy": res.accuracy,
        "delta_ppl": res.ppl - base.ppl,
        "delta_accuracy": res.accuracy - base.accuracy,
        "n_changed": totals["n_changed"],
        "n_nan": totals["n_nan"],
        "n_inf": totals["n_inf"],
        "bit_flips": totals.get("bit_flips", {}),
    }


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _describe(values: np.ndarray, seed: int) -> dict[str, Any]:
    finite = _finite(values)
    out: dict[str, Any] = {"n": int(values.size), "n_nonfinite": int(values.size - finite.size)}
    if values.size and finite.size == values.size:
        out["mean"] = float(values.mean())
        out["ci95"] = list(bootstrap_ci(values, seed=seed)) if values.size > 1 else [float(values[0])] * 2
    else:
        out["mean"] = math.inf if values.size else None
        out["ci95"] = None
    return out


def summarize(table: pd.DataFrame, base: EvalResult, cfg: RunConfig) -> list[dict[str, Any]]:
    """Per (scale, k): each set's ΔPPL/Δaccuracy with CIs, target-vs-random tests, the seeds' criteria."""
    out = []
    for (scale, k), group in table.groupby(["scale", "k"], sort=True):
        entry: dict[str, Any] = {"scale": float(scale), "k": int(k), "sets": {}}
        for set_name in SETS:
            g = group[group["set"] == set_name]
            if g.empty:
                continue
            entry["sets"][set_name] = {
                "delta_ppl": _describe(g["delta_ppl"].to_numpy(float), cfg.seeds[0]),
                "delta_accuracy": _describe(g["delta_accuracy"].to_numpy(float), cfg.seeds[0]),
                "mean_ppl": float(g["ppl"].mean()),
                "n_weights": int(g["n_weights"].iloc[0]),
                "n_nan_values": int(g["n_nan"].sum()),
                "n_inf_values": int(g["n_inf"].sum()),
            }
        entry["tests"] = _tests(group)
        entry["criteria"] = _criteria(entry)
        out.append(entry)
    if len(out) > 1:
        out.append({"dose_response": _dose_response(out)})
    return out


def _tests(group: pd.DataFrame) -> dict[str, Any]:
    target = group[group["set"] == "target"]
    random_ = group[group["set"] == "random_k"]
    bottom = group[group["set"] == "bottom_k"]
    tests: dict[str, Any] = {}
    if not random_.empty:
        hits = total = 0
        for seed, g in target.groupby("seed"):
            t = float(g["delta_ppl"].mean())
            r = random_[random_["seed"] == seed]["delta_ppl"].to_numpy(float)
            hits += int((r >= t).sum())
            total += r.size
        tests["p_target_gt_random"] = (1 + hits) / (1 + total)  # empirical_p_greater's convention, pooled over seeds
        tests["min_reachable_p"] = 1 / (1 + total)
        mw = mann_whitney_greater(target["delta_ppl"].to_list(), random_["delta_ppl"].to_list())
        tests["mann_whitney"] = None if mw is None else {"U": mw[0], "p": mw[1]}
        tests["ratio_target_over_random"] = ratio(float(target["delta_ppl"].mean()), float(random_["delta_ppl"].mean()))
    if not bottom.empty and not random_.empty:
        tests["ratio_random_over_bottom"] = ratio(float(random_["delta_ppl"].mean()), float(bottom["delta_ppl"].mean()))
    return tests


def _criteria(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The research workflow's pass/fail lines, evaluated on the data (never assumed)."""
    sets, tests = entry["sets"], entry["tests"]
    t = sets["target"]["delta_ppl"]["mean"]
    out = [{"name": "impact", "rule": "dPPL(target) >= 0.1", "passed": t is not None and t >= 0.1, "value": t}]
    if "random_k" in sets:
        r = sets["random_k"]["delta_ppl"]["mean"]
        out.append({"name": "separation_3x", "rule": "dPPL(target) >= 3 x dPPL(random)", "passed": t >= 3 * r, "value": tests["ratio_target_over_random"]})
        out.append({"name": "separation_5x", "rule": "dPPL(target) >= 5 x dPPL(random) (phase-3 success criterion)", "passed": t >= 5 * r, "value": tests["ratio_target_over_random"]})
        p = tests["p_target_gt_random"]
        note = "" if tests["min_reachable_p"] < 0.05 else f" (unreachable: the smallest possible p with these trials is {tests['min_reachable_p']:.3g}; raise --trials)"
        out.append({"name": "significance", "rule": "empirical p(target > random) < 0.05" + note, "passed": p < 0.05, "value": p})
        if "bottom_k" in sets:
            b = sets["bottom_k"]["delta_ppl"]["mean"]
            out.append({"name": "hierarchy_3x", "rule": "dPPL(random) >= 3 x dPPL(bottom)", "passed": r >= 3 * b, "value": tests.get("ratio_random_over_bottom")})
    return out


def _dose_response(entries: list[dict[str, Any]]) -> dict[str, Any]:
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


def summary_lines(summary: list[dict[str, Any]], base: EvalResult) -> list[str]:
    lines = [f"baseline  PPL {base.ppl:.4f}, accuracy {100 * base.accuracy:.2f}% on {base.n_tokens:,} evaluation tokens"]
    for e in summary:
        if "dose_response" in e:
            d = e["dose_response"]
            mono = ", ".join(f"{s} {'yes' if v else 'no'}" for s, v in d["monotonic"].items())
            held = sum(h["holds"] for h in d["hierarchy"])
            lines.append(f"dose      monotonic: {mono}; hierarchy target > random > bottom holds at {held}/{len(d['hierarchy'])} levels")
            continue
        parts = []
        for s, v in e["sets"].items():
            d = v["delta_ppl"]
            ci = "" if not d["ci95"] else f" [{d['ci95'][0]:.4g}, {d['ci95'][1]:.4g}]"
            parts.append(f"{s} {d['mean']:.4g}{ci}")
        lines.append(f"perturb   scale {e['scale']:g}, k {e['k']}: dPPL " + "; ".join(parts))
        tests = e["tests"]
        if "p_target_gt_random" in tests:
            mw = tests["mann_whitney"]
            lines.append(f"          p(target > random) = {tests['p_target_gt_random']:.3g}"
                         + (f", Mann-Whitney p = {mw['p']:.3g}" if mw else "")
                         + (f", ratio {tests['ratio_target_over_random']:.3g}x" if tests.get("ratio_target_over_random") else ""))
        for c in e["criteria"]:
            lines.append(f"          {'PASS' if c['passed'] else 'FAIL'}  {c['rule']}")
    return lines
