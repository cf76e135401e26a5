"""`esa study scaling` and `esa study families`: cross-run studies written into their own directory.

Each reads finished run directories (never changes them), calls the library (esa.studies), writes
scaling.json or families.json, draws its figures into plots/ from that saved JSON, and returns the
summary. The study directory records its inputs in config.json; it is not itself a run to study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esa.artifacts import read_json, schema
from esa.errors import EsaError
from esa.pipeline.command import CommandRun, command_run, fmt
from esa.pipeline.config import Options, OutputOptions


@dataclass
class StudyOptions(Options):
    runs: list[str] = field(default_factory=list)
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/study"))
    size: str = "params"  # scaling: params | nonembedding | active
    quantities: list[str] = field(default_factory=list)  # scaling: empty = every quantity the runs hold
    group_by: list[str] = field(default_factory=list)  # families: empty = family, kind

    def check(self) -> None:
        if not self.runs:
            raise EsaError("no run directories given; pass one or more --out-dir folders of esa run/baseline/superweights")
        out = Path(self.output.out_dir).resolve()
        if any(Path(r).resolve() == out for r in self.runs):
            raise EsaError(f"--out-dir {self.output.out_dir} is one of the input runs; write the study elsewhere")


def run_scaling_command(opts: StudyOptions) -> str:
    from esa.plots.studies import plot_scaling
    from esa.studies import scaling

    with command_run("study_scaling", opts, output=opts.output) as run:
        with run.manifest.stage("fit"):
            result = scaling(opts.runs, size=opts.size, quantities=opts.quantities or None)
        saved = _write(run, schema.SCALING, result.to_dict())
        with run.manifest.stage("plots"):
            _figure(run, "scaling", plot_scaling(saved))
    return _scaling_summary(saved, opts)


def run_families_command(opts: StudyOptions) -> str:
    from esa.plots.studies import plot_depth_profiles, plot_family_ratios
    from esa.studies import families

    with command_run("study_families", opts, output=opts.output) as run:
        with run.manifest.stage("compare"):
            result = families(opts.runs, group_by=opts.group_by or None)
        saved = _write(run, schema.FAMILIES, result.to_dict())
        with run.manifest.stage("plots"):
            _figure(run, "families_depth_profiles", plot_depth_profiles(saved))
            _figure(run, "families_ratios", plot_family_ratios(saved))
    return _families_summary(saved, opts)


def _write(run: CommandRun, name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Write the result and return it as a reader of the file will see it (figures draw from that)."""
    run.write_json(name, obj)
    return read_json(run.path(name))


def _figure(run: CommandRun, name: str, fig: Any) -> None:
    from esa.plots import save_figure

    if fig is not None:
        save_figure(fig, run.path(schema.PLOTS_DIR), name)


def _scaling_summary(saved: dict[str, Any], opts: StudyOptions) -> str:
    lines = [f"scaling   {len(saved['runs'])} runs against N = {saved['size']} ({saved['protocol']['size_column']}); "
             "alpha with exact 95% t-interval; criteria R2 > 0.8, LOO <= 20%"]
    metrics = sorted({r["metric"] for r in saved["runs"] if isinstance(r.get("metric"), str) and r["metric"] != "nan"})
    if len(metrics) > 1:
        lines.append(f"          runs of {len(metrics)} metrics ({', '.join(metrics)}) are split: one fit per metric")
    for f in saved["fits"]:
        head = f"  {f['quantity']:<40s} {f['metric']:<14s} n={f['n']:<3d}"
        if f["alpha"] is None:
            lines.append(f"{head} no fit: {f['reason']}")
            continue
        lo, hi = f["alpha_ci95"]
        bp = f.get("breakpoint") or {}
        brk = (f"break at N={bp['size']:.3g} preferred (p={bp['p_value']:.2g})" if bp.get("preferred")
               else f"no break (p={fmt(bp.get('p_value'), 2)})" if "p_value" in bp else bp.get("reason", ""))
        lines.append(f"{head} alpha {f['alpha']:.3g} [{lo:.3g}, {hi:.3g}]  R2 {fmt(f['r2'], 3)} {f['criteria']['r2']}  "
                     f"LOO {fmt(f['loo_error'], 3)} {f['criteria']['loo']}  {brk}")
    lines.append(f"results   {Path(opts.output.out_dir).resolve()}/{schema.SCALING}")
    return "\n".join(lines)


def _families_summary(saved: dict[str, Any], opts: StudyOptions) -> str:
    lines = [f"families  {len(saved['runs'])} runs in {len(saved['groups'])} groups by {', '.join(saved['group_by'])}"]
    for g in saved["groups"]:
        q = g["quantities"]
        parts = [f"{name} {fmt(q[name]['mean'], 3)}" for name in ("attention_vs_mlp", "early_concentration",
                                                                   "embed_head_share", "mass_share_expert") if name in q]
        lines.append(f"  {g['name']} ({g['n_runs']} run{'s' if g['n_runs'] != 1 else ''}: {', '.join(g['models'])}): "
                     + ", ".join(parts))
        for run, s in g["seed_spread"].items():
            if s["n_seeds"] > 1:
                lines.append(f"    attention_vs_mlp over {s['n_seeds']} seeds of {Path(run).name}: mean {fmt(s['mean'], 3)}, "
                             f"range {fmt(s['min'], 3)}-{fmt(s['max'], 3)}")
    tested = [t for t in saved["tests"] if t["p_value"] is not None]
    for t in tested:
        lines.append(f"  {t['quantity']}: {t['group_a']} (n={t['n_a']}) vs {t['group_b']} (n={t['n_b']}): "
                     f"difference {fmt(t['difference'], 3)}; p = {t['p_value']:.3g} ({t['note']})")
    single = sorted({t[f"group_{s}"] for t in saved["tests"] if t["p_value"] is None for s in "ab" if t[f"n_{s}"] < 2})
    if len(tested) < len(saved["tests"]):
        lines.append(f"  {len(saved['tests']) - len(tested)} comparisons described, not tested: one run in "
                     f"{', '.join(single)} (a permutation test needs >= 2 runs per group)")
    lines.append(f"results   {Path(opts.output.out_dir).resolve()}/{schema.FAMILIES}")
    return "\n".join(lines)
