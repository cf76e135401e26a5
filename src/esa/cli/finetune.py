"""`esa finetune`: the thin Typer command over esa.pipeline.finetune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from esa.cli.app import app, options


@app.command()
@options("model", "data", "output", defaults={"out_dir": Path("outputs/esa/finetune"), "max_samples": 32,
                                                 "eval_samples": 8})
def finetune(
    train: Annotated[Optional[str], typer.Option(help="Training text (.txt/.jsonl/.parquet); default: topic domain a of the built-in corpus.")] = None,
    eval: Annotated[Optional[str], typer.Option("--eval", help="Evaluation text of the target domain; default: held-out windows of the training text.")] = None,
    retain: Annotated[Optional[str], typer.Option(help="Text whose perplexity measures forgetting (and that frozen-critical/EWC protect); default with the built-in data: domain b.")] = None,
    domains: Annotated[Optional[str], typer.Option(help="Built-in train/retain texts without --train: topics (pydoc topics, two halves; default), code-vs-docs (stdlib code vs pydoc prose) or names-vs-docs (Unicode character names vs pydoc prose).")] = None,
    mode: Annotated[str, typer.Option(help="sparse, full, lora or frozen-critical; a comma list runs each on the same model.")] = "sparse",
    budget: Annotated[Optional[str], typer.Option(help="Share of the weights to train (sparse, lora) or freeze (frozen-critical): 0.5% or 0.005.")] = None,
    budget_k: Annotated[Optional[int], typer.Option("--budget-k", help="The budget as a number of weights.")] = None,
    mask_metric: Annotated[str, typer.Option("--mask-metric", help="Registered metric choosing the mask (grad_squared = Fisher), or random (same-size control).")] = "grad_squared",
    protect: Annotated[Optional[str], typer.Option(help="ewc: Fisher-weighted penalty toward the original weights.")] = None,
    protect_lambda: Annotated[float, typer.Option("--protect-lambda", help="EWC strength lambda.")] = 1e5,
    protect_superweights: Annotated[bool, typer.Option("--protect-superweights", help="Freeze every super-weight candidate too (full, frozen-critical).")] = False,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 50,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-4,
    save: Annotated[Optional[str], typer.Option(help="Folder (inside --out-dir) for the result: a sparse delta in sparse mode, else a Hugging Face directory.")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Zero-shot tasks (lm-eval names or task YAML paths), comma-separated.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Items per zero-shot task.")] = None,
    *, model_opts: Any, data_opts: Any, output_opts: Any,
) -> None:
    """Critical-weight fine-tuning: sparse (Fisher mask), LoRA at the same budget, full, frozen-critical, EWC."""
    from esa.pipeline.config import parse_name_list
    from esa.pipeline.finetune import FinetuneOptions, parse_budget, run_finetune_command

    opts = FinetuneOptions(
        model=model_opts, data=data_opts, output=output_opts, train=train, eval=eval, retain=retain, domains=domains,
        modes=parse_name_list(mode), budget=parse_budget(budget), budget_k=budget_k, mask_metric=mask_metric,
        protect=protect, protect_lambda=protect_lambda, protect_superweights=protect_superweights, steps=steps, lr=lr, save=save,
        tasks=parse_name_list(tasks), limit=limit,
    )
    typer.echo(run_finetune_command(opts))
