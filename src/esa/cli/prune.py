"""`esa prune`: the thin Typer command over esa.pipeline.prune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from esa.cli.app import app, options


@app.command()
@options("model", "data", "output", defaults={"out_dir": Path("outputs/esa/prune")})
def prune(
    score: Annotated[str, typer.Option(help="magnitude, act_mag (Wanda), grad_x_weight, grad_squared, hutchinson_diag, sparsegpt or esa (Wanda's order in rows, per-tensor sparsity from the Fisher); a comma list compares them.")] = "act_mag",
    sparsity: Annotated[str, typer.Option(help="Target sparsity of unstructured pruning; a comma list sweeps it (0.5,0.6).")] = "0.5",
    pattern: Annotated[str, typer.Option(help="unstructured, or N:M (N of every M consecutive inputs pruned: 2:4, 4:8); a comma list.")] = "unstructured",
    group: Annotated[str, typer.Option(help="Where weights compete: row (each output row, Wanda), tensor, or global.")] = "row",
    protect_topk: Annotated[int, typer.Option("--protect-topk", help="Never prune the K most critical weights under --protect-metric.")] = 0,
    protect_metric: Annotated[Optional[str], typer.Option("--protect-metric", help="Metric ranking the protected weights (default: the score).")] = None,
    protect_superweights: Annotated[bool, typer.Option("--protect-superweights", help="Detect super weights and never prune them.")] = False,
    include: Annotated[Optional[str], typer.Option(help="Regexes (comma list) of tensors to prune instead of the blocks' linear layers.")] = None,
    exclude: Annotated[Optional[str], typer.Option(help="Regexes (comma list) of tensors to leave dense.")] = None,
    sequential: Annotated[bool, typer.Option("--sequential", help="Prune block by block, each scored on the already pruned earlier blocks.")] = False,
    allocate_by: Annotated[Optional[str], typer.Option("--allocate-by", help="Give each tensor its own sparsity (within s ± --spread) from this curvature metric's saliency h·w²: grad_squared or hutchinson_diag (also with sparsegpt). The esa score does this with grad_squared.")] = None,
    spread: Annotated[float, typer.Option("--spread", help="Largest deviation of a tensor's sparsity from the target under an allocation.")] = 0.2,
    save_model: Annotated[Optional[str], typer.Option("--save-model", help="Folder (inside --out-dir) for the pruned model as a Hugging Face directory, with pruning.json.")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Zero-shot tasks (lm-eval names or task YAML paths), comma-separated.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Items per zero-shot task.")] = None,
    *, model_opts: Any, data_opts: Any, output_opts: Any,
) -> None:
    """Sensitivity-guided pruning (magnitude, Wanda, gradient scores, SparseGPT, ESA) with PPL and zero-shot evaluation."""
    from esa.pipeline.config import parse_float_list, parse_name_list
    from esa.pipeline.prune import PruneOptions, run_prune_command

    opts = PruneOptions(
        model=model_opts, data=data_opts, output=output_opts, scores=parse_name_list(score),
        sparsities=parse_float_list(sparsity, "--sparsity"), patterns=parse_name_list(pattern), group=group,
        protect_topk=protect_topk, protect_metric=protect_metric, protect_superweights=protect_superweights,
        include=parse_name_list(include), exclude=parse_name_list(exclude), sequential=sequential,
        allocate_by=allocate_by, spread=spread,
        save_model=save_model, tasks=parse_name_list(tasks), limit=limit,
    )
    typer.echo(run_prune_command(opts))
