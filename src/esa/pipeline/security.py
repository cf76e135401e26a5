"""`esa faults`, `esa attack`, `esa diff` (run directories through the shared skeleton) and
`esa fingerprint` / `esa verify` (one fingerprint file; verify answers with its exit code).

faults.json holds every campaign (one per --sites entry) and the side-by-side table; faults.csv one
row per injected fault with its campaign. With --quantize-bits the model is first quantized in memory
(RTN, esa.quantize) and the faults flip bits of its integer codes; faults.json then also holds the
quantization (its configuration and quantized PPL), and the model is restored bit-exactly at the end.
attack.json holds the open and the defended attack.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from esa.artifacts import atomic_write_json, schema
from esa.errors import EsaError
from esa.pipeline.command import command_run, fmt, open_session
from esa.pipeline.config import DataOptions, ModelOptions, Options, OutputOptions, opt

DIFF = "diff.json"  # to move into esa.artifacts.schema
DIFF_TABLE = "diff.csv"


def parse_sites(text: str) -> list[str | tuple[str, str, int]]:
    """"random,topk:grad_x_weight:1000" -> ["random", ("topk", "grad_x_weight", 1000)]."""
    out: list[str | tuple[str, str, int]] = []
    for item in [s.strip() for s in str(text).split(",") if s.strip()]:
        parts = item.split(":")
        if item == "random":
            out.append("random")
        elif len(parts) == 3 and parts[0] == "topk" and parts[2].isdigit():
            out.append(("topk", parts[1], int(parts[2])))
        else:
            raise EsaError(f"--sites {item!r} is neither random nor topk:METRIC:K (e.g. topk:grad_x_weight:1000)")
    if not out:
        raise EsaError("--sites is empty; use random and/or topk:METRIC:K")
    return out


def parse_bits(text: str) -> str | int:
    text = str(text).strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _label(site: str | tuple[str, str, int]) -> str:
    return site if isinstance(site, str) else f"topk_{site[1]}_{site[2]}"


@dataclass
class FaultsOptions(Options):
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/faults"))
    sites: str = "random"
    bits: str = "all"
    injections: int | None = opt(None, "--injections", min=1)
    margin: float | None = opt(None, "--margin", min=0.0, max=1.0)
    confidence: float = opt(0.95, "--confidence", min=0.0, max=1.0)
    faults_per_trial: int = opt(1, "--faults-per-trial", min=1)
    failure: str = "dppl>1"
    quantize_bits: int | None = None  # faults in the integer codes of an RTN quantization of this width
    quantize_group_size: int = opt(64, "--quantize-group-size", min=0)
    quantize_symmetric: bool = False

    def check(self) -> None:
        from esa.quantize import SUPPORTED_BITS
        from esa.security import Failure, code_bit_positions

        parse_sites(self.sites)
        Failure.parse(self.failure)
        if self.quantize_bits is not None:
            if self.quantize_bits not in SUPPORTED_BITS:
                raise EsaError(f"--quantize-bits {self.quantize_bits} is not supported; "
                               f"choose from {', '.join(map(str, SUPPORTED_BITS))}")
            code_bit_positions(parse_bits(self.bits), self.quantize_bits)
        if self.injections is None and self.margin is None:
            self.injections = 100
        if self.injections is not None and self.margin is not None:
            raise EsaError("give --injections or --margin, not both")


def run_faults_command(opts: FaultsOptions) -> str:
    from esa.security import bit_positions, fault_campaign, quantized_codes, side_by_side

    sites = parse_sites(opts.sites)
    with command_run("faults", opts, output=opts.output, model=opts.model, data=opts.data) as run:
        lm, seed = run.lm, opts.data.seeds[0]
        if opts.quantize_bits is None:
            bit_positions(parse_bits(opts.bits), lm.dtype)  # bad bits fail before any scoring
        else:
            _check_quantization(lm, opts)
        windows = run.windows(seed)
        results, quantization = {}, None
        with ExitStack() as stack:
            codes = None
            if opts.quantize_bits is not None:
                with run.manifest.stage("quantize"):
                    quant, codes = stack.enter_context(quantized_codes(
                        lm, windows, bits=opts.quantize_bits, group_size=opts.quantize_group_size,
                        symmetric=opts.quantize_symmetric, seed=seed, batch_size=opts.data.batch_size))
                quantization = quant.to_dict()
            for site in sites:
                with run.manifest.stage(f"faults:{_label(site)}"):
                    results[_label(site)] = fault_campaign(
                        lm, windows, injections=opts.injections, margin=opts.margin, confidence=opts.confidence,
                        sites=site, bits=parse_bits(opts.bits), faults_per_trial=opts.faults_per_trial,
                        failure=opts.failure, seed=seed, batch_size=opts.data.batch_size, codes=codes)
        table = side_by_side(results)
        document: dict[str, Any] = {"campaigns": {k: r.to_dict() for k, r in results.items()},
                                    "side_by_side": table.to_dict(orient="records")}
        if quantization is not None:
            document["quantization"] = quantization
        run.write_json(schema.FAULTS, document)
        rows = pd.concat([r.table().assign(campaign=k) for k, r in results.items()], ignore_index=True)
        run.write_table(rows, schema.FAULTS_TABLE)
        if opts.output.save_plots:
            import json

            from esa.plots.security import plot_fault_bits
            from esa.plots.style import save_figure

            fig = plot_fault_bits(json.loads(run.path(schema.FAULTS).read_text()), lm.model_id)
            if fig is not None:
                save_figure(fig, run.path(schema.PLOTS_DIR), "fault_bits")
    lines = []
    for label, r in results.items():
        lines.append(f"{label:28s} {r.overall.n} trials  P(fail) {r.overall.p:.4f} [{r.overall.lo:.4f}, {r.overall.hi:.4f}]"
                     f"  silent {r.silent.failures}  crashing {r.crashing.failures}  ({r.timing['trials_per_s']:.2f} trials/s)")
        for key, rate in r.groups["bit_class" if quantization is None else "bit"].items():
            key = key if quantization is None else f"code bit {key}"
            lines.append(f"  {key:10s} n={rate.n:5d}  p={rate.p:.4f} [{rate.lo:.4f}, {rate.hi:.4f}]")
    if quantization is not None:
        lines.insert(0, f"codes     {quantization['label']}: quantized PPL {fmt(quantization['ppl'])}; "
                        "faults flip bits of the integer codes (model restored bit-exactly after)")
    lines.append(f"results   {Path(opts.output.out_dir).resolve()}/{schema.FAULTS}")
    return "\n".join(lines)


def _check_quantization(lm: Any, opts: FaultsOptions) -> None:
    """esa.quantize's own checks of the configuration, worded with this command's flags."""
    from esa.quantize import check_configuration

    try:
        check_configuration(lm, bits=opts.quantize_bits, group_size=opts.quantize_group_size,
                            symmetric=opts.quantize_symmetric)
    except EsaError as exc:
        raise EsaError(str(exc).replace("--bits", "--quantize-bits").replace("--group-size", "--quantize-group-size")) from None


@dataclass
class AttackOptions(Options):
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/attack"))
    target_ppl: float = opt(1000.0, "--target-ppl", min=0.0)
    max_flips: int = opt(20, "--max-flips", min=1)
    protect_topk: int = opt(0, "--protect-topk", min=0)
    protect_metric: str = "grad_x_weight"
    overlap_metrics: list[str] = field(default_factory=lambda: ["grad_x_weight", "magnitude"])
    overlap_k: int = opt(100, "--overlap-k", min=1)
    in_range: bool = False
    tries: int = opt(4, "--tries", min=1)


def run_attack_command(opts: AttackOptions) -> str:
    from esa.security import bit_flip_attack, critical_weights, defended_attack

    with command_run("attack", opts, output=opts.output, model=opts.model, data=opts.data) as run:
        lm, seed, bs = run.lm, opts.data.seeds[0], opts.data.batch_size
        windows = run.windows(seed)
        with run.manifest.stage("critical"):
            critical = {m: critical_weights(lm, windows, m, opts.overlap_k, seed=seed, batch_size=bs)
                        for m in opts.overlap_metrics}
        limit = max(float(p.detach().abs().max()) for p in lm.model.parameters()) if opts.in_range else None
        kwargs = dict(target_ppl=opts.target_ppl, max_flips=opts.max_flips, critical=critical, tries=opts.tries,
                      batch_size=bs, max_abs_value=limit)
        with run.manifest.stage("attack"):
            if opts.protect_topk:
                protect = critical_weights(lm, windows, opts.protect_metric, opts.protect_topk, seed=seed, batch_size=bs)
                out = defended_attack(lm, windows, protect, **kwargs).to_dict()
            else:
                out = {"open": bit_flip_attack(lm, windows, **kwargs).to_dict(), "defended": None, "extra_flips": None}
        run.write_json(schema.ATTACK, {**out, "protect_topk": opts.protect_topk, "protect_metric": opts.protect_metric})
    lines = []
    for label in ("open", "defended"):
        a = out[label]
        if a is not None:
            lines.append(f"{label:9s} {a['n_flips']} flips -> PPL {fmt(a['final_ppl'])} (baseline {fmt(a['baseline_ppl'])}, "
                         f"target {'reached' if a['reached'] else 'not reached'}{', non-finite' if a['reached_nonfinite'] else ''})")
            for f in a["flips"][:10]:
                lines.append(f"  {f['param']}[{','.join(map(str, f['index']))}] bit {f['bit']} ({f['bit_class']}) "
                             f"{fmt(f['old'])} -> {fmt(f['new'])}")
    if out["extra_flips"] is not None:
        lines.append(f"defence   protecting the top-{opts.protect_topk} {opts.protect_metric} weights costs the attack "
                     f"{out['extra_flips']} more flip(s)")
    lines.append(f"results   {Path(opts.output.out_dir).resolve()}/{schema.ATTACK}")
    return "\n".join(lines)


@dataclass
class DiffOptions(Options):
    base: ModelOptions = field(default_factory=ModelOptions)
    suspect: str = ""
    data: DataOptions = field(default_factory=DataOptions)
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/diff"))
    metric: str = "grad_x_weight"
    topk: int = opt(1000, "--topk", min=1)


def run_diff_command(opts: DiffOptions) -> str:
    from esa.models import load_model
    from esa.security import diff_models

    with command_run("diff", opts, output=opts.output, model=opts.base, data=opts.data) as run:
        with run.manifest.stage("load suspect"):
            suspect = load_model(opts.suspect, dtype=opts.base.dtype, device=opts.base.device)
        windows = run.windows(opts.data.seeds[0])
        with run.manifest.stage("diff"):
            res = diff_models(run.lm, suspect, metric=opts.metric, windows=windows, k=opts.topk,
                              seed=opts.data.seeds[0], batch_size=opts.data.batch_size)
        run.write_json(DIFF, res.to_dict())
        run.write_table(pd.DataFrame([t.__dict__ for t in res.tensors]), DIFF_TABLE)
    lines = [f"changed   {res.n_changed_tensors} tensor(s), {res.n_changed_weights} weight(s)"]
    for t in res.tensors[:10]:
        if t.n_changed or t.flagged:
            lines.append(f"  {t.param:48s} changed {t.n_changed:8d}  |Δ|/|W| {t.relative_change:.3g}  "
                         f"sensitivity shift {t.shift:+.3g} (z {t.z:+.1f}){'  FLAGGED' if t.flagged else ''}")
    lines.append(f"results   {Path(opts.output.out_dir).resolve()}/{DIFF}")
    return "\n".join(lines)


def run_fingerprint_command(model: ModelOptions, data: DataOptions, out: Path, metric: str, topk: int) -> str:
    from esa.data import make_windows
    from esa.security import fingerprint

    model.validate()
    data.validate()
    if topk < 1:
        raise EsaError(f"--topk must be at least 1, got {topk}")
    session = open_session(model, data.dataset, data.bos, progress=False)
    windows = make_windows(session.corpus, data.seq_len or 128, data.max_samples, data.eval_samples or 16,
                           data.seeds[0], bos_id=session.bos.bos_id, max_seq_len=session.lm.max_seq_len)
    fp = fingerprint(session.lm, metric=metric, k=topk, windows=windows, seed=data.seeds[0], batch_size=data.batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(fp.to_json())
    return f"fingerprint of {session.lm.model_id}: {len(fp.hashes)} tensors, top-{fp.critical['k']} {metric} weights -> {out}"


def run_verify_command(model: ModelOptions, against: Path, reference: str | None, json_out: Path | None) -> tuple[bool, str]:
    """(intact, summary). Bad input (unreadable, corrupted or another model's fingerprint) raises EsaError."""
    from esa.models import load_model
    from esa.security import Fingerprint, verify

    model.validate()
    if not against.is_file():
        raise EsaError(f"fingerprint file {against} not found; write one with esa fingerprint")
    fp = Fingerprint.from_json(against.read_text(errors="replace"))
    lm = load_model(model.model, dtype=model.dtype, device=model.device)
    ref = load_model(reference, dtype=model.dtype, device=model.device) if reference else None
    res = verify(lm, fp, reference=ref)
    if json_out is not None:
        atomic_write_json(json_out, res.to_dict())
    if res.intact:
        return True, f"intact    {lm.model_id}: all {res.n_tensors} tensors match ({res.timing['verify_s']:.2f} s)"
    lines = [f"TAMPERED  {lm.model_id}: {len(res.changed)} of {res.n_tensors} tensors changed ({res.timing['verify_s']:.2f} s)"]
    for c in res.changed:
        count = f"{c.n_changed} weights" if c.n_changed is not None else "weights unknown without --reference"
        lines.append(f"  {c.param}: {count}; {c.n_critical_changed} of its {c.n_critical} fingerprinted critical weights changed")
    for w in res.weights[:20]:
        rank = f"critical rank {w.critical_rank} ({res.metric})" if w.critical_rank else "not among the fingerprinted critical weights"
        lines.append(f"    {w.param}[{','.join(map(str, w.index))}] {w.old!r} -> {w.new!r}: {rank}")
    if len(res.weights) > 20:
        lines.append(f"    ... {len(res.weights) - 20} more")
    return False, "\n".join(lines)
