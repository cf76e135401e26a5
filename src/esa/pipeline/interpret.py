"""`esa interpret`: roles, attention patterns and knowledge localisation of a run's critical weights,
written as interpret.json through the shared command skeleton.

The selection is a run directory's top-k and super weights (esa.interpret.run_selection; the run is only
read) and/or `--weight 'param[row,col]'`; the model is the run's unless --model is given. Everything the
user can get wrong (no weights, a bad --weight, a bad probe file) fails before a model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esa.artifacts import schema
from esa.errors import EsaError
from esa.pipeline.command import command_run
from esa.pipeline.config import DataOptions, ModelOptions, Options, OutputOptions, opt


@dataclass
class InterpretOptions(Options):
    model: ModelOptions = field(default_factory=lambda: ModelOptions(model=""))  # "": the run's model
    data: DataOptions = field(default_factory=lambda: DataOptions(max_samples=4, batch_size=2))
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/interpret"))
    run_dir: str | None = None
    weights: list[str] = field(default_factory=list)
    top: int | None = opt(None, "--top", min=1)
    superweights: bool = True
    probes: str | None = None
    knowledge: bool = True
    control_trials: int = opt(2, "--control-trials", min=1)

    def check(self) -> None:
        if self.run_dir is None and not self.weights:
            raise EsaError("nothing to interpret: give RUN_DIR (an esa run directory) or --model with --weight 'param[row,col]'")
        if self.run_dir is not None and Path(self.output.out_dir).resolve() == Path(self.run_dir).resolve():
            raise EsaError("--out-dir is the run directory being interpreted; write the interpretation elsewhere")


def parse_weight(text: str) -> tuple[str, tuple[int, ...]]:
    """'model.layers.11.mlp.down_proj.weight[507,1229]' -> (param, (507, 1229))."""
    param, bracket, rest = text.strip().partition("[")
    if not bracket or not rest.endswith("]") or not param:
        raise EsaError(f"--weight {text!r} is not 'param[row,col]', e.g. 'model.layers.11.mlp.down_proj.weight[507,1229]'")
    try:
        return param, schema.parse_index(rest[:-1])
    except ValueError:
        raise EsaError(f"--weight {text!r} has a bad index; write 'param[row,col]' with integers") from None


def run_interpret_command(opts: InterpretOptions) -> str:
    """Interpret the selection; write interpret.json; return the summary."""
    from esa.interpret import BUILTIN_PROBES, interpret, load_probes, run_scores, run_selection
    from esa.interpret.selection import SelectedWeight

    if opts.run_dir is not None and not opts.model.model:
        opts.model.model = _run_model(Path(opts.run_dir))
    opts.validate()  # again in command_run; here so that bad input fails before any file is read or written
    selection: list[Any] = []
    scores = None
    if opts.run_dir is not None:
        selection += run_selection(opts.run_dir, opts.top, opts.superweights)
        scores = run_scores(opts.run_dir)
    selection += [SelectedWeight(*parse_weight(w), None, "--weight") for w in opts.weights]
    probes = load_probes(opts.probes) if opts.probes else None
    with command_run("interpret", opts, output=opts.output, model=opts.model, data=opts.data) as run:
        windows = run.windows(opts.data.seeds[0], n_eval=1)
        with run.manifest.stage("interpret"):
            result = interpret(run.lm, windows, selection, seed=opts.data.seeds[0], batch_size=opts.data.batch_size,
                               probes=probes, control_trials=opts.control_trials, scores=scores,
                               knowledge_probes=opts.knowledge, progress=run.progress)
        out = result.to_dict()
        out["protocol"]["probes"] = opts.probes or f"built-in ({len(BUILTIN_PROBES)} facts)"
        run.write_json(schema.INTERPRET, out)
    return summary(out, Path(opts.output.out_dir))


def _run_model(run: Path) -> str:
    config = run / schema.CONFIG
    if not config.is_file():
        raise EsaError(f"{run} has no {schema.CONFIG}, so its model is unknown; give --model")
    model = json.loads(config.read_text()).get("model")
    name = model.get("model") if isinstance(model, dict) else model
    if not name:
        raise EsaError(f"{run}/{schema.CONFIG} names no model; give --model")
    return str(name)


def summary(out: dict[str, Any], out_dir: Path) -> str:
    roles = out["roles"]
    lines = [f"interpret {out['model_id']}: {roles['n_weights']} weights on {out['protocol']['n_tokens']} calibration tokens"]
    for row in out["weights"]:
        if "super weight" not in row["source"] and row["role"] in ("unassigned",):
            continue
        e, side = row["effects"], row["input"] or {}
        line = f"  {row['label']}: {row['role']}"
        if e.get("sink_drop") is not None:
            line += f"; first-token attention {e['sink_before']:.3f} -> {e['sink_after']:.3f}"
            line += f", max |h| {e['hidden_max_before']:.3g} -> {e['hidden_max_after']:.3g}"
        if side.get("n_fire"):
            line += f"; fires at {side['n_fire']} tokens ({side['share_fire_at_position0']:.0%} at position 0)"
        lines.append(line)
        if len(lines) > 12:
            lines.append("  ...")
            break
    counts = ", ".join(f"{k} {v}" for k, v in roles["counts"].items() if v)
    lines.append(f"roles: {counts}; assigned {roles['share_assigned']:.0%} -> {roles['verdict']} ({roles['criterion']})")
    sink = out["attention"]["mean_sink"]
    lines.append(f"first-token attention (all heads): intact {sink['intact']:.3f}, selected zeroed "
                 f"{sink['topk_zeroed']:.3f}, random-k zeroed {sink['randomk_zeroed']:.3f}")
    if out["knowledge"]:
        for by in ("by_layer", "by_component"):
            k = out["knowledge"][by]
            score = "n/a" if k["localisation_score"] is None else f"{k['localisation_score']:.2f}"
            lines.append(f"knowledge {by.replace('_', ' ')}: top {k['top_group']}, localisation {score}, "
                         f"{k['n_facts_dependent']} facts dependent")
    lines.append(f"results   {out_dir.resolve()}/{schema.INTERPRET} ({out['timings']['total_s']:.1f} s)")
    return "\n".join(lines)
