"""`validate`: perturb the top-k and matched controls, one evaluation pass per condition, no file I/O.

For every scale and k: the target set (the first k of the ranked selection), `random_k` controls with
the target's per-tensor counts (`trials` draws; a tensor too small for a disjoint draw borrows its share
from the nearest tensors of the same role, see `esa.perturb.random_matched_nearest`), and `bottom_k`
(the first k of the least-sensitive ranking). Every condition is one evaluation pass over the
evaluation windows of the model perturbed in place and restored bit-exactly; no copy of the model is
made. A stochastic perturbation (noise, random bit flips) is re-drawn for the target in every trial.
Cost: (1 + trials x (1 + stochastic)) x len(scales) x len(ks) evaluation passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from esa.data import WindowSet
from esa.errors import EsaError
from esa.evaluation import EvalResult, evaluate
from esa.perturb import (
    Perturbation, apply_perturbation, get_perturbation, random_matched_magnitude, random_matched_nearest,
    trial_generator,
)
from esa.ranking import WeightSet
from esa.statistics.validation import Criterion, summarize

log = logging.getLogger("esa")

CONTROLS = ("random_k", "bottom_k")


@dataclass
class ValidationResult:
    """Per-condition table, summary statistics and the workflow's criteria of one validation."""

    table: pd.DataFrame
    summary: list[dict[str, Any]]
    baseline: EvalResult
    protocol: dict[str, Any]
    control_matching: list[dict[str, Any]] = field(default_factory=list)  # tensors whose control was borrowed
    task_scores: list[dict[str, Any]] = field(default_factory=list)  # zero-shot scores per condition

    def to_dict(self) -> dict[str, Any]:
        """The content of perturbation_results.json (what plots and reports read)."""
        base = self.baseline
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "baseline": {"ppl": base.ppl, "accuracy": base.accuracy, "bits_per_byte": base.bits_per_byte,
                         "n_tokens": base.n_tokens, "n_windows": base.n_windows},
            "summary": self.summary,
            "rows": self.table.to_dict(orient="records"),
        }
        if self.control_matching:
            out["control_matching"] = self.control_matching
        if self.task_scores:
            out["task_scores"] = self.task_scores
        return out

    @property
    def criteria(self) -> dict[tuple[float, int], list[Criterion]]:
        """(scale, k) -> the criteria as typed objects (passed None = N/A)."""
        return {(e["scale"], e["k"]): [Criterion(**c) for c in e["criteria"]] for e in self.summary if "criteria" in e}


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


def check_options(perturbation: str | Perturbation, scales: Sequence[float], options: dict[str, Any],
                  controls: Sequence[str], ks: Sequence[int]) -> Perturbation:
    """Validate every perturbation option before any model work."""
    pert = get_perturbation(perturbation)
    if not scales:
        raise EsaError("--perturb-scale needs at least one number")
    for scale in scales:
        pert.options(torch.float32, **_params(pert, scale, options))
    unknown = set(controls) - set(CONTROLS)
    if unknown:
        raise EsaError(f"unknown control(s) {sorted(unknown)}; valid: {', '.join(CONTROLS)}")
    if not ks or any(int(k) <= 0 for k in ks):
        raise EsaError("every --topk value must be positive")
    return pert


def _params(pert: Perturbation, scale: float, options: dict[str, Any]) -> dict[str, Any]:
    return {**({"scale": scale} if "scale" in pert.params else {}), **options}


def validate(
    lm: Any, selection: WeightSet, perturbation: str | Perturbation, *, eval_windows: WindowSet,
    scales: Sequence[float] = (1.0,), ks: Sequence[int] | None = None, controls: Sequence[str] = CONTROLS,
    trials: int = 10, seed: int = 1337, mode: str = "global", bottom: WeightSet | None = None,
    options: dict[str, Any] | None = None, match_magnitude: bool = False, batch_size: int = 4,
    baseline: EvalResult | None = None, tasks: Callable[[torch.nn.Module], dict[str, Any]] | None = None,
    progress: bool = False,
) -> ValidationResult:
    """Evaluate every condition of one seed's selection; see the module docstring for the design.

    `options` are the perturbation's own options (e.g. {"prob": 0.05}); `ks` defaults to the whole
    selection; `tasks(model)` (zero-shot scoring, optional) runs on the unmodified and every perturbed model.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    ks = list(ks) if ks else [len(selection) if mode == "global" else max(selection.counts().values(), default=1)]
    pert = check_options(perturbation, scales, options, controls, ks)
    if "bottom_k" in controls and bottom is None:
        raise EsaError("the bottom_k control needs the bottom ranking (bottom=top_k(..., largest=False))")
    if trials <= 0:
        raise EsaError(f"--trials must be a positive integer, got {trials}")
    model = lm.model
    base = baseline if baseline is not None else evaluate(model, eval_windows, "eval", batch_size, progress)
    task_scores: list[dict[str, Any]] = []
    if tasks is not None:
        task_scores.append({"set": "unmodified", "scores": tasks(model)})
    named = dict(model.named_parameters())
    rows: list[dict[str, Any]] = []
    matching: list[dict[str, Any]] = []
    definitions = {}
    for scale in scales:
        params = _params(pert, scale, options)
        opts = pert.options(torch.float32, **params)
        definitions[str(scale)] = pert.definition(opts)
        n_target = trials if pert.stochastic(opts) else 1
        for k in ks:
            target = prefix(selection, k, mode)
            sets: dict[str, list[dict[str, torch.Tensor]]] = {"target": [target] * n_target}
            if "random_k" in controls:
                sets["random_k"] = []
                for t in range(trials):
                    gen = trial_generator(seed, f"control:random_k/k={k}", t)
                    if match_magnitude:
                        sets["random_k"].append(random_matched_magnitude(target, {n: named[n].detach() for n in target}, gen))
                    else:
                        drawn = random_matched_nearest(target, lm.params, gen)
                        sets["random_k"].append(drawn.indices)
                        if t == 0 and drawn.borrowed:
                            matching.extend({"seed": seed, "scale": scale, "k": k, **b} for b in drawn.borrowed)
            if "bottom_k" in controls:
                assert bottom is not None
                sets["bottom_k"] = [prefix(bottom, k, mode)] * n_target
            for set_name, selections in sets.items():
                for trial, chosen in enumerate(selections):
                    gen = trial_generator(seed, f"noise:{pert.name}/scale={scale}/k={k}/{set_name}", trial)
                    with apply_perturbation(model, chosen, pert, gen, **params) as info:
                        res = evaluate(model, eval_windows, "eval", batch_size, False, allow_nonfinite=True)
                        if tasks is not None and trial == 0:
                            task_scores.append({"set": set_name, "scale": scale, "k": k, "scores": tasks(model)})
                    rows.append(_row(pert.name, seed, scale, k, set_name, trial, chosen, res, base, info.totals()))
    table = pd.DataFrame(rows)
    protocol = {
        "perturbation": pert.name,
        "options": options,
        "definitions": definitions,
        "scales": list(scales),
        "ks": ks,
        "mode": mode,
        "controls": list(controls),
        "trials": trials,
        "target_trials": trials if pert.stochastic(pert.options(torch.float32, **_params(pert, scales[0], options))) else 1,
        "match_magnitude": match_magnitude,
        "evaluation": "evaluation windows only (see experiment_manifest.json for offsets)",
        "random_k": "same number of weights per tensor as the target, drawn uniformly without replacement "
                    "from that tensor's non-target weights" + (
                        ", matched to the target's |w| quantile bins" if match_magnitude else
                        "; a tensor without room borrows its share from the nearest tensors of the same role "
                        "(then component, then any) by depth, recorded in control_matching"),
        "p_value": "empirical, one-sided: (1 + #{random trials with dPPL >= the target's dPPL}) / (1 + n), pooled over seeds",
        "criteria": "a criterion whose inputs are undecidable (NaN, or inf against inf) is N/A (passed null) with its "
                    "reason; then `robustness` compares the share of broken trials and the medians",
    }
    return ValidationResult(table=table, summary=summarize(table, seed), baseline=base, protocol=protocol,
                            control_matching=matching, task_scores=task_scores)


def combine(results: Sequence[ValidationResult], seed: int) -> ValidationResult:
    """One result over several seeds' validations (tables concatenated; statistics pooled)."""
    if len(results) == 1:
        return results[0]
    table = pd.concat([r.table for r in results], ignore_index=True)
    first = results[0]
    return ValidationResult(
        table=table, summary=summarize(table, seed), baseline=first.baseline, protocol=first.protocol,
        control_matching=[m for r in results for m in r.control_matching],
        task_scores=[{"seed": i, **t} for i, r in enumerate(results) for t in r.task_scores],
    )


def _row(perturbation: str, seed: int, scale: float, k: int, set_name: str, trial: int,
         selection: dict[str, torch.Tensor], res: EvalResult, base: EvalResult, totals: dict[str, Any]) -> dict[str, Any]:
    return {
        "perturbation": perturbation,
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
        "bits_per_byte": res.bits_per_byte,
        "delta_bits_per_byte": None if res.bits_per_byte is None or base.bits_per_byte is None
        else res.bits_per_byte - base.bits_per_byte,
        "n_changed": totals["n_changed"],
        "n_nan": totals["n_nan"],
        "n_inf": totals["n_inf"],
        "bit_flips": totals.get("bit_flips", {}),
    }
