"""`esa finetune`: fine-tune one loaded model in each requested mode (restored bit for bit between modes)
and write finetune_results.json/.csv, the learning curves, and optionally the fine-tuned weights.

Data: `--train FILE` (else the train text of the built-in `--domains` pair, esa.finetune.DOMAINS: "topics",
domain a of the pydoc topics; "code-vs-docs", Python stdlib code; "names-vs-docs", Unicode character
names) gives the training windows
(`--max-samples`) and, without `--eval FILE`, the disjoint evaluation windows (`--eval-samples`);
`--retain FILE` (else, with the built-in data, the pair's retain text) measures forgetting and holds the
calibration windows that frozen-critical and EWC protect. `--protect-superweights` adds every super-weight
candidate to the frozen set (full and frozen-critical).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from esa.artifacts import schema
from esa.errors import EsaError
from esa.pipeline.command import command_run, fmt
from esa.pipeline.config import DataOptions, ModelOptions, Options, OutputOptions, opt

TABLE_COLUMNS = ("mode", "protect", "mask_metric", "budget_k", "n_frozen", "n_weights", "trainable",
                 "optimizer_state_bytes", "steps", "lr", "time_s", "train_ppl_before", "train_ppl_after",
                 "train_ppl_gain", "retain_ppl_before", "retain_ppl_after", "retain_ppl_loss", "n_changed")


@dataclass
class FinetuneOptions(Options):
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=lambda: DataOptions(max_samples=32, eval_samples=8))
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/finetune"))
    train: str | None = None
    eval: str | None = None
    retain: str | None = None
    domains: str | None = None  # built-in (train, retain) pair when --train is not given; None = "topics"
    modes: list[str] = field(default_factory=lambda: ["sparse"])
    budget: float | None = opt(None, "--budget", min=0.0, max=1.0)
    budget_k: int | None = opt(None, "--budget-k", min=1)
    mask_metric: str = "grad_squared"
    protect: str | None = None
    protect_lambda: float = opt(1e5, "--protect-lambda", min=0.0)
    protect_superweights: bool = False
    steps: int = opt(50, "--steps", min=1)
    lr: float = opt(1e-4, "--lr", min=0.0)
    save: str | None = None
    tasks: list[str] = field(default_factory=list)
    limit: int | None = opt(None, "--limit", min=1)

    def check(self) -> None:
        from esa.finetune import DOMAINS, MODES
        from esa.finetune.train import check_protectable
        from esa.finetune.masks import RANDOM
        from esa.metrics import METRICS

        if not self.modes:
            raise EsaError("--mode needs at least one mode, e.g. --mode sparse")
        for mode in self.modes:
            if mode not in MODES:
                raise EsaError(f"unknown fine-tuning mode {mode!r}; choose one of {', '.join(MODES)}")
        if self.budget is not None and not 0 < self.budget <= 1:
            raise EsaError(f"--budget must be above 0 and at most 100% of the weights, got {self.budget:g}")
        if self.budget is not None and self.budget_k is not None:
            raise EsaError("give either --budget (a fraction) or --budget-k (a count), not both")
        if (self.budget is not None or self.budget_k is not None) and self.modes == ["full"]:
            raise EsaError("--mode full trains every weight; --budget applies to sparse, lora and frozen-critical")
        if self.mask_metric != RANDOM and self.mask_metric not in METRICS:
            raise EsaError(f"unknown mask metric {self.mask_metric!r}; choose one of: {', '.join([*METRICS, RANDOM])}")
        if self.protect not in (None, "ewc"):
            raise EsaError(f"unknown protection {self.protect!r}; choose ewc")
        if self.protect and "lora" in self.modes:
            raise EsaError("--protect ewc penalises moves of the base weights, which LoRA never moves; use another mode")
        if self.protect and self.train is not None and self.retain is None:
            raise EsaError("--protect ewc needs --retain data (the knowledge to protect)")
        if self.domains is not None and self.domains not in DOMAINS:
            raise EsaError(f"unknown built-in domains {self.domains!r}; choose one of {', '.join(DOMAINS)}")
        if self.domains is not None and self.train is not None:
            raise EsaError("--domains picks built-in training and retain texts; with --train give --retain instead")
        if self.protect_superweights:
            check_protectable(self.modes)
        if self.lr <= 0:
            raise EsaError(f"--lr must be a number > 0, got {self.lr}")
        for flag, path in (("--train", self.train), ("--eval", self.eval), ("--retain", self.retain)):
            if path is not None and not Path(path).is_file():
                raise EsaError(f"{flag} file '{path}' does not exist")
        if self.save is not None:
            if Path(self.save).is_absolute() or ".." in Path(self.save).parts:
                raise EsaError("--save names a folder inside the run directory (e.g. finetuned), not a path")
            if len(self.modes) != 1:
                raise EsaError("--save keeps one fine-tuned model: give one --mode")


def parse_budget(text: str | None) -> float | None:
    """'0.5%' -> 0.005, '0.005' -> 0.005 (EsaError for anything else)."""
    if text is None:
        return None
    body = text.strip()
    try:
        value = float(body[:-1]) / 100 if body.endswith("%") else float(body)
    except ValueError:
        raise EsaError(f"--budget expects a fraction (0.005) or a percentage (0.5%), got {text!r}") from None
    if not 0 < value <= 1:
        raise EsaError(f"--budget must be above 0 and at most 100% of the weights, got {text}")
    return value


def run_finetune_command(opts: FinetuneOptions) -> str:
    """Fine-tune in every mode, write finetune_results.json/.csv (and --save); return the summary."""
    from esa.finetune import finetune, preserved, save_finetuned, superweight_candidates, watched_weight

    with command_run("finetune", opts, output=opts.output, model=opts.model, data=opts.data) as run:
        lm, bs, seed = run.lm, opts.data.batch_size, opts.data.seeds[0]
        train, evals, retain = _windows(run, opts, seed)
        tasks = None
        if opts.tasks:
            from esa.pipeline.tasks import task_scorer

            tasks = task_scorer(lm, opts.tasks, opts.limit, bs)
        zero_shot_before = tasks() if tasks else None
        with run.manifest.stage("superweight"):
            sw = watched_weight(lm, "detect")
        watch = (sw["param"], sw["flat_index"]) if sw else None
        pinned = []
        if opts.protect_superweights:
            with run.manifest.stage("superweight candidates"):
                pinned = superweight_candidates(lm)
            if not pinned:
                raise EsaError(f"no super-weight candidate found in {lm.model_id}; drop --protect-superweights")
        budget = {"budget": opts.budget, "budget_k": opts.budget_k}  # full trains every weight whatever the budget
        runs = []
        for mode in opts.modes:
            with run.manifest.stage(f"finetune:{mode}"), preserved(lm):
                result = finetune(
                    lm, train, evals, mode=mode, **({} if mode == "full" else budget),
                    mask_metric=opts.mask_metric, protect=opts.protect, protect_lambda=opts.protect_lambda,
                    retain_windows=retain, steps=opts.steps, lr=opts.lr, batch_size=bs, seed=seed,
                    superweight=watch, protect_superweights=pinned, progress=run.progress,
                )
                row = result.to_dict()
                row["zero_shot_after"] = tasks() if tasks else None
                if opts.save is not None:
                    save_finetuned(lm, result, run.path(opts.save))
            runs.append(row)
        out = {"model": lm.model_id, "seed": seed, "zero_shot_before": zero_shot_before,
               "zero_shot_protocol": tasks.provenance() if tasks else None, "runs": runs}
        run.write_json(schema.FINETUNE, out)
        run.write_table(table(out), schema.FINETUNE_TABLE)
        if opts.output.save_plots:
            import json

            from esa.plots.finetune import plot_finetune_curves, plot_finetune_tradeoff
            from esa.plots.style import save_figure

            saved = json.loads(run.path(schema.FINETUNE).read_text())
            for name, draw in (("finetune_curves", plot_finetune_curves), ("finetune_tradeoff", plot_finetune_tradeoff)):
                fig = draw(saved, lm.model_id)
                if fig is not None:
                    save_figure(fig, run.path(schema.PLOTS_DIR), name)
    return summary(out)


def _windows(run: Any, opts: FinetuneOptions, seed: int) -> tuple[Any, Any, Any]:
    """(training, evaluation, retain) windows; each recorded in the manifest."""
    from esa.data import load_corpus
    from esa.finetune import builtin_domains, text_windows

    lm, data = run.lm, opts.data
    common = {"seq_len": data.seq_len or 128, "seed": seed, "bos_id": run.session.bos.bos_id,
              "max_seq_len": lm.max_seq_len}
    n_train, n_eval = data.max_samples, data.eval_samples or 8
    if opts.train is None:
        train_text, default_retain = builtin_domains(opts.domains or "topics", lm.tokenizer)
    else:
        train_text, default_retain = load_corpus(opts.train, lm.tokenizer), None
    retain_text = load_corpus(opts.retain, lm.tokenizer) if opts.retain else default_retain
    if opts.eval is None:
        train = evals = text_windows(train_text, "training", n_train=n_train, n_eval=n_eval, **common)
    else:
        train = text_windows(train_text, "training", n_train=n_train, n_eval=0, **common)
        evals = text_windows(load_corpus(opts.eval, lm.tokenizer), "evaluation", n_train=0, n_eval=n_eval, **common)
    retain = (text_windows(retain_text, "retain", n_train=n_train, n_eval=n_eval, **common)
              if retain_text is not None else None)
    for label, windows in (("train", train), ("eval", evals), ("retain", retain)):
        if windows is not None:
            run.windows_used[label] = windows.protocol()
    return train, evals, retain


def table(out: dict[str, Any]) -> pd.DataFrame:
    """finetune_results.csv: one row per mode, the watched super weight and zero-shot scores flattened."""
    rows = []
    for r in out["runs"]:
        row = {c: r.get(c) for c in TABLE_COLUMNS}
        sw = r.get("superweight") or {}
        row.update({"superweight": f"{sw['param']}[{sw['index']}]" if sw else "",
                    "superweight_before": sw.get("value_before"), "superweight_after": sw.get("value_after")})
        for task, metrics in (r.get("zero_shot_after") or {}).items():
            if isinstance(metrics, dict):
                row.update({f"zs_{task}_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        rows.append(row)
    return pd.DataFrame(rows)


def summary(out: dict[str, Any]) -> str:
    lines = [f"fine-tuned {out['model']} (seed {out['seed']}):"]
    for r in out["runs"]:
        name = r["mode"] + (f"+{r['protect']}" if r["protect"] else "")
        retain = (f", retain PPL {fmt(r['retain_ppl_before'])} -> {fmt(r['retain_ppl_after'])}"
                  if r["retain_ppl_before"] is not None else "")
        sw = r.get("superweight")
        watched = f", super weight {fmt(sw['value_before'])} -> {fmt(sw['value_after'])}" if sw else ""
        lines.append(f"  {name}: {r['trainable']:,} trainable, target PPL {fmt(r['train_ppl_before'])} -> "
                     f"{fmt(r['train_ppl_after'])}{retain}{watched}")
    return "\n".join(lines)
