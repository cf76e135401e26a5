"""The `esa` Typer app and the option groups every command shares, declared once.

`@options("model", "data", "output", defaults={...})` adds a group's flags to a command's signature and
hands the command built option dataclasses (`model_opts`, `data_opts`, `output_opts`), so every command
that loads a model takes `--model --dtype --device --device-map --trust-remote-code`, the same data flags
(`--dataset --max-samples --eval-samples --seq-len --batch-size --bos --seeds`) and the same output flags
(`--out-dir --overwrite --save-plots --quiet --verbose`), with the same names and help.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(
    name="esa",
    help=(
        "ESA (Enhanced Sensitivity Analysis): find the few weights of a transformer language model that matter "
        "most, prove it by perturbing them against controls, and use them (prune, quantize, secure, fine-tune).\n\n"
        "Start with `esa run` (profiles the bundled SmolLM2-135M with CPU-sized defaults) or `esa baseline`."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

_P = inspect.Parameter

# name -> (annotation with the flag and help, default)
GROUPS: dict[str, dict[str, tuple[Any, Any]]] = {
    "model": {
        "model": (Annotated[str, typer.Option("--model", "-m", help="Hub id, local directory, .gguf file, or bundled alias (see `esa models`).")], "smollm2-135m"),
        "dtype": (Annotated[str, typer.Option(help="Model dtype: fp32, bf16 or fp16. Scores always accumulate in float32.")], "fp32"),
        "device": (Annotated[str, typer.Option(help="cpu, cuda or auto (cuda when available).")], "auto"),
        "device_map": (Annotated[Optional[str], typer.Option("--device-map", help="'auto' spreads the model over all GPUs (accelerate).")], None),
        "trust_remote_code": (Annotated[bool, typer.Option("--trust-remote-code", help="Run a hub model's own Python code (off by default; only for repositories you trust).")], False),
    },
    "data": {
        "dataset": (Annotated[str, typer.Option(help="'builtin' (offline English text shipped with Python), a .txt/.jsonl/.parquet path, or wikitext2/c4 (needs `datasets` and network).")], "builtin"),
        "max_samples": (Annotated[int, typer.Option("--max-samples", help="Calibration windows per seed.")], 16),
        "eval_samples": (Annotated[Optional[int], typer.Option("--eval-samples", help="Evaluation windows (disjoint from calibration, fixed across seeds).")], 16),
        "seq_len": (Annotated[Optional[int], typer.Option("--seq-len", help="Tokens per window.")], 128),
        "batch_size": (Annotated[int, typer.Option("--batch-size", help="Windows per forward pass.")], 4),
        "bos": (Annotated[str, typer.Option("--bos", help="auto: prepend BOS to every window when the tokenizer adds one by default (Gemma, Llama-3); on; off.")], "auto"),
        "seeds": (Annotated[str, typer.Option(help="Comma-separated seeds, 0..2^63-1; each draws its own calibration windows.")], "1337"),
    },
    "output": {
        "out_dir": (Annotated[Path, typer.Option("--out-dir", "-o", help="Directory for results: new or empty, or a previous ESA run with --overwrite; written atomically.")], None),
        "overwrite": (Annotated[bool, typer.Option("--overwrite", help="Replace a previous ESA run in --out-dir (whole, never merged).")], False),
        "save_plots": (Annotated[bool, typer.Option("--save-plots", help="Draw figures into plots/.")], False),
        "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")], False),
        "verbose": (Annotated[bool, typer.Option("--verbose", "-v", help="Log each stage.")], False),
    },
}


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="esa: %(message)s", stream=sys.stderr)


def _build(group: str, values: dict[str, Any]) -> Any:
    from esa.pipeline.config import DataOptions, ModelOptions, OutputOptions, parse_seeds

    if group == "model":
        return ModelOptions(**values)
    if group == "data":
        return DataOptions(**{**values, "seeds": parse_seeds(values["seeds"])})
    setup_logging(values["verbose"])
    return OutputOptions(**{**values, "out_dir": str(values["out_dir"])})


def options(*groups: str, defaults: dict[str, Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the named option groups to a command; it receives `<group>_opts` keyword arguments.

    `defaults` overrides a flag's default for this command (e.g. {"out_dir": "outputs/esa/prune"}).
    """
    defaults = defaults or {}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for name, p in sig.parameters.items() if name not in {f"{g}_opts" for g in groups}]
        added = [_P(name, _P.KEYWORD_ONLY, annotation=annot, default=defaults.get(name, default))
                 for g in groups for name, (annot, default) in GROUPS[g].items()]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            built = {f"{g}_opts": _build(g, {n: kwargs.pop(n) for n in GROUPS[g]}) for g in groups}
            return fn(**kwargs, **built)

        wrapper.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**{p.name: p.annotation for p in own + added}, "return": None}
        return wrapper

    return decorate
