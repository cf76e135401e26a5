"""`esa quantize`: every requested configuration through esa.quantize, written as one run directory.

Files: quant_results.json (protocol, unquantized baseline, one entry per configuration with its plan,
kept weights, timings and zero-shot scores), quant_results.csv (one row per configuration),
precision_plan.json (tensor -> bits/group size and the kept weights, per configuration) and, with
--save-model, quantized_model/ (a transformers directory; plus model-<TYPE>.gguf for GGUF-shaped
configurations). Configurations: each --method x each --bits (uniform), then each --method x each
--budget-bits (mixed precision), all with the same protection flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from esa.artifacts import schema
from esa.errors import EsaError
from esa.pipeline.command import command_run
from esa.pipeline.config import DataOptions, ModelOptions, Options, OutputOptions, opt

SAVED_MODEL = "quantized_model"


@dataclass
class QuantizeOptions(Options):
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/quantize"))
    bits: list[int] = opt(None, "--bits", min=1, factory=lambda: [8, 4, 3])
    group_size: int = opt(64, "--group-size", min=0)
    methods: list[str] = field(default_factory=lambda: ["rtn"])
    symmetric: bool = False
    act_order: bool = False
    keep_topk: int = opt(0, "--keep-topk", min=0)
    keep_fraction: float | None = opt(None, "--keep-fraction", min=0.0, max=1.0)
    keep_metric: str | None = None
    keep_superweights: bool = False
    budget_bits: list[float] = opt(None, "--budget-bits", min=0.0, factory=list)
    allocate_by: str | None = None
    save_model: bool = False
    tasks: list[str] = field(default_factory=list)
    limit: int | None = opt(None, "--limit", min=1)

    def configurations(self) -> list[dict[str, Any]]:
        """Keyword arguments of esa.quantize, one dict per configuration, in output order."""
        common = {"group_size": self.group_size, "symmetric": self.symmetric, "act_order": self.act_order,
                  "keep_topk": self.keep_topk, "keep_fraction": self.keep_fraction, "keep_metric": self.keep_metric,
                  "keep_superweights": self.keep_superweights}
        uniform = [{"method": m, "bits": b, **common} for m in self.methods for b in self.bits]
        mixed = [{"method": m, "bits": None, "budget_bits": b, "allocate_by": self.allocate_by, **common}
                 for m in self.methods for b in self.budget_bits]
        return uniform + mixed

    def check(self) -> None:
        from esa.quantize import METHODS

        for m in self.methods:
            if m not in METHODS:
                raise EsaError(f"unknown --method {m!r}; choose from {', '.join(METHODS)}")
        if self.allocate_by is not None and not self.budget_bits:
            raise EsaError("--allocate-by needs --budget-bits B (the average effective bits per weight)")
        if self.budget_bits and self.allocate_by is None:
            raise EsaError("--budget-bits needs --allocate-by METRIC (e.g. grad_squared)")
        if self.save_model and len(self.configurations()) != 1:
            raise EsaError("--save-model saves one configuration; give one --method and one --bits (or one --budget-bits)")


def run_quantize_command(opts: QuantizeOptions) -> str:
    """Returns the human summary; files land in opts.output.out_dir (complete, or not at all)."""
    from esa.evaluation import evaluate
    from esa.quantize import ScoreCache, check_configuration, quantize

    with command_run("quantize", opts, output=opts.output, model=opts.model, data=opts.data) as run:
        lm = run.lm
        windows = run.windows(opts.data.seeds[0]).with_text_measures(lm.tokenizer)
        batch = opts.data.batch_size
        tasks = None
        if opts.tasks:
            from esa.pipeline.tasks import task_scorer

            tasks = task_scorer(lm, opts.tasks, opts.limit, batch)
        configs = opts.configurations()
        for config in configs:  # every configuration's input problems before any work
            check_configuration(lm, **config)
        with run.manifest.stage("baseline"):
            base = evaluate(lm.model, windows, "eval", batch, run.progress)
            base_tasks = tasks() if tasks is not None else None
        cache = ScoreCache()
        results = []
        for config in configs:
            with run.manifest.stage(f"quantize {len(results)}"):
                results.append(quantize(lm, windows, **config, seed=opts.data.seeds[0], batch_size=batch,
                                        cache=cache, tasks=tasks, keep_quantized=opts.save_model,
                                        progress=run.progress))
        saved = _save(lm, results[0], run.path(SAVED_MODEL)) if opts.save_model else None
        baseline = {"ppl": base.ppl, "accuracy": base.accuracy, "mean_nll": base.mean_nll,
                    "bits_per_byte": base.bits_per_byte, "dtype": str(lm.dtype).replace("torch.", ""),
                    "zero_shot": base_tasks}
        run.write_json(schema.QUANT, {
            "protocol": {"eval": windows.protocol(), "effective_bits": _COST_RULE, "seed": opts.data.seeds[0]},
            "baseline": baseline, "configurations": [r.to_dict() for r in results], "saved_model": saved,
        })
        run.write_table(pd.DataFrame([_csv_row(r) for r in results]), schema.QUANT_TABLE)
        run.write_json(schema.PRECISION_PLAN, {"configurations": [_plan(r) for r in results]})
        if tasks is not None:
            run.manifest.add(tasks=tasks.provenance())
    return _summary(baseline, results, saved)


_COST_RULE = ("(codes + one 16-bit scale per group + one b-bit zero point per group if asymmetric + "
              "16 value bits and ceil(log2 numel) position bits per kept weight) / weights of the quantized tensors")


def _save(lm: Any, result: Any, directory: Any) -> dict[str, Any]:
    from esa.quantize.export import check_gguf_model, gguf_type, save_gguf, save_hf

    try:
        save_hf(lm, result, directory)
        try:
            kind = gguf_type(result.bits, result.group_size, result.symmetric, result.n_kept)
            check_gguf_model(lm)
        except EsaError as why:
            return {"hf_directory": SAVED_MODEL, "gguf": None, "gguf_not_written": str(why)}
        save_gguf(lm, result, directory / f"model-{kind}.gguf")
        return {"hf_directory": SAVED_MODEL, "gguf": f"{SAVED_MODEL}/model-{kind}.gguf", "gguf_type": kind}
    finally:
        result.restore()


def _csv_row(result: Any) -> dict[str, Any]:
    """The configuration's row plus acc / acc_norm of each zero-shot task (esa.evaluation.zeroshot)."""
    row = result.row()
    for task, score in ((result.zero_shot or {}).get("tasks") or {}).items():
        row[f"{task}.acc"], row[f"{task}.acc_norm"] = score.get("acc"), score.get("acc_norm")
    return row


def _plan(result: Any) -> dict[str, Any]:
    from esa.quantize.export import plan_document

    return {"label": result.label, **plan_document(result)}


def _summary(baseline: dict[str, Any], results: list[Any], saved: dict[str, Any] | None) -> str:
    lines = [f"unquantized ({baseline['dtype']}): PPL {baseline['ppl']:.3f}"]
    for r in results:
        lines.append(f"{r.label}: {r.effective_bits:.3f} effective bits, PPL {r.ppl:.3f} "
                     f"({r.ppl / baseline['ppl']:.3f}x), {r.n_kept} weights kept")
    if saved:
        lines.append(f"saved: {saved['hf_directory']}" + (f", {saved['gguf']}" if saved.get("gguf") else
                                                          f" (no GGUF: {saved['gguf_not_written']})"))
    return "\n".join(lines)
