"""`esa run --perturb`: phase 3 through `esa.validate`, written into the run directory.

Flags map onto the perturbation's declared options (PerturbParam.flag), so a user-registered
perturbation gets its options from the same flags, and a flag it does not declare is refused.
"""

from __future__ import annotations

import logging
from typing import Any

from esa.artifacts import schema
from esa.errors import EsaError
from esa.evaluation import EvalResult, evaluate
from esa.perturb import get_perturbation
from esa.pipeline.command import CommandRun
from esa.pipeline.config import RunConfig
from esa.pipeline.profile import SeedProfile
from esa.validation import ValidationResult, combine, validate
from esa.validation.validate import check_options

log = logging.getLogger("esa")

def flag_values(cfg: RunConfig) -> dict[str, Any]:
    """The value each perturbation flag carries (the flag -> option mapping is declared on the perturbation)."""
    p = cfg.perturb
    return {"--perturb-prob": p.prob, "--bit": p.bit, "--noise-ref": p.noise_ref}


def perturbation_options(cfg: RunConfig) -> dict[str, Any]:
    """The perturbation's own options from the flags it declares; other flags given explicitly are refused."""
    pert = get_perturbation(cfg.perturb.perturb)
    declared = {param.flag: name for name, param in pert.params.items()}
    given = flag_values(cfg)
    rejected = [flag for flag, value in given.items()
                if value is not None and flag not in declared]
    if rejected:
        raise EsaError(f"--perturb {pert.name} does not use {', '.join(rejected)}")
    return {declared[flag]: value for flag, value in given.items() if flag in declared and value is not None}


def check_perturb_options(cfg: RunConfig) -> None:
    """Validate every perturbation option before any model is loaded."""
    p = cfg.perturb
    check_options(p.perturb, p.scales, perturbation_options(cfg), p.controls, p.topks or [cfg.topk])


def validate_profiles(cfg: RunConfig, run: CommandRun, profiles: list[SeedProfile], tasks: Any = None) -> ValidationResult:
    """Every seed's selection validated on the fixed evaluation windows, pooled into one result."""
    p, lm = cfg.perturb, run.lm
    windows = profiles[0].windows
    base = evaluate(lm.model, windows, "eval", cfg.data.batch_size, run.progress)
    log.info("baseline PPL %.4f on %d evaluation windows", base.ppl, base.n_windows)
    results = [
        validate(lm, prof.selection, p.perturb, eval_windows=windows, scales=p.scales, ks=p.topks or [cfg.topk],
                 controls=p.controls, trials=p.trials, seed=prof.seed, mode=cfg.mode, bottom=prof.bottom,
                 options=perturbation_options(cfg), match_magnitude=p.match_magnitude,
                 batch_size=cfg.data.batch_size, baseline=base, tasks=tasks, progress=run.progress)
        for prof in profiles
    ]
    return combine(results, cfg.data.seeds[0])


def write_validation(run: CommandRun, result: ValidationResult) -> None:
    table = result.table
    run.write_table(table.assign(bit_flips=table["bit_flips"].astype(str)), schema.PERTURBATION_TABLE)
    run.write_json(schema.PERTURBATION, result.to_dict())


def summary_lines(result: ValidationResult) -> list[str]:
    base: EvalResult = result.baseline
    lines = [f"baseline  PPL {base.ppl:.4f}, accuracy {100 * base.accuracy:.2f}% on {base.n_tokens:,} evaluation tokens"]
    for e in result.summary:
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
            broken = f" ({v['broken_trials']}/{d['n']} broke the model)" if v.get("broken_trials") else ""
            parts.append(f"{s} {d['mean']:.4g}{ci}{broken}")
        lines.append(f"perturb   scale {e['scale']:g}, k {e['k']}: dPPL " + "; ".join(parts))
        tests = e["tests"]
        if tests.get("p_target_gt_random") is not None:
            mw = tests["mann_whitney"]
            lines.append(f"          p(target > random) = {tests['p_target_gt_random']:.3g}"
                         + (f", Mann-Whitney p = {mw['p']:.3g}" if mw else "")
                         + (f", ratio {tests['ratio_target_over_random']:.3g}x" if tests.get("ratio_target_over_random") else ""))
        for c in e["criteria"]:
            reason = f"  ({c['reason']})" if c.get("passed") is None and c.get("reason") else ""
            lines.append(f"          {schema.criterion_label(c):4s}  {c['rule']}{reason}")
    if result.control_matching:
        n = len({m["param"] for m in result.control_matching})
        levels = sorted({f["level"] for m in result.control_matching for f in m["from"]})
        lines.append(f"controls  {n} tensors too small for a disjoint random draw took their share from the nearest "
                     f"tensors ({', '.join(levels)}); see control_matching in perturbation_results.json")
    return lines
