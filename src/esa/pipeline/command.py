"""The one command skeleton: every `esa` command that writes a run directory goes through `command_run`.

It owns what each command used to repeat: validating the options, progress policy, the staged run
directory (complete or absent), loading the model and corpus, the BOS decision, `config.json`, the
experiment manifest (versions, windows, timings), a CUDA OOM turned into the planner's advice, and the
figures. A command keeps only its body (call the library, write its result files) and its summary:

    with command_run("prune", opts, model=opts.model, data=opts.data, output=opts.output) as run:
        windows = run.windows(seed)
        result = prune(run.lm, windows, ...)
        run.write_json(schema.PRUNE, result.to_dict())
    return summary(result)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from esa.artifacts import Manifest, RunDir, atomic_write_json, schema, write_table
from esa.errors import EsaError
from esa.pipeline.config import DataOptions, ModelOptions, Options, OutputOptions

log = logging.getLogger("esa")


def show_progress(quiet: bool) -> bool:
    """Progress bars only on a terminal, never with --quiet (logs and CI stay clean)."""
    import sys

    return not quiet and sys.stderr.isatty()


@dataclass
class BosDecision:
    """Whether every window starts with BOS, and why (recorded in the manifest)."""

    bos_id: int | None
    mode: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "bos_id": self.bos_id, "prepended": self.bos_id is not None, "reason": self.reason}


def decide_bos(tokenizer: Any, mode: str, model_id: str = "the model") -> BosDecision:
    """`auto` follows the model's convention: BOS when the tokenizer adds one to plain text by default.

    Gemma and Llama-3 tokenizers prepend BOS (Gemma-3-270M scores PPL 170 without it, 23 with it);
    SmolLM2 and GPT-NeoX tokenizers do not, and then windows are plain stream tokens (SparseGPT/Wanda).
    """
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if mode == "off":
        return BosDecision(None, mode, "--bos off")
    if mode == "on":
        if bos_id is None:
            raise EsaError(f"--bos on was given but the tokenizer of {model_id} has no BOS token; use --bos off")
        return BosDecision(int(bos_id), mode, "--bos on")
    if bos_id is None:
        return BosDecision(None, mode, "the tokenizer has no BOS token")
    try:
        ids = list(tokenizer("x")["input_ids"])
    except Exception:  # a tokenizer that cannot encode plain text decides nothing
        ids = []
    if ids and ids[0] == bos_id:
        return BosDecision(int(bos_id), mode, f"the tokenizer prepends BOS (id {bos_id}) to plain text by default")
    if getattr(tokenizer, "add_bos_token", False):
        return BosDecision(int(bos_id), mode, f"the tokenizer sets add_bos_token (BOS id {bos_id})")
    return BosDecision(None, mode, f"the tokenizer does not prepend BOS (id {bos_id}) to plain text")


@dataclass
class Session:
    """A loaded model and its tokenized corpus: the inputs of every stage."""

    lm: Any
    corpus: Any
    bos: BosDecision


def open_session(model: ModelOptions, dataset: str, bos: str, progress: bool,
                 attn_implementation: str | None = None) -> Session:
    from esa.data import load_corpus
    from esa.models import load_model

    if model.trust_remote_code:
        log.warning("--trust-remote-code: running the model repository's own Python code; use only with repositories you trust")
    log.info("loading model %s (%s, %s)", model.model, model.dtype, model.device)
    lm = load_model(
        model.model, dtype=model.dtype, device=model.device, device_map=model.device_map,
        trust_remote_code=model.trust_remote_code, attn_implementation=attn_implementation, progress=progress,
    )
    log.info("loaded %s: %s parameters, %d layers", lm.family, f"{lm.n_params:,}", lm.n_layers)
    corpus = load_corpus(dataset, lm.tokenizer)
    log.info("dataset %s: %s tokens", dataset, f"{int(corpus.tokens.numel()):,}")
    return Session(lm=lm, corpus=corpus, bos=decide_bos(lm.tokenizer, bos, lm.model_id))


@dataclass
class CommandRun:
    """What a command body works with inside `command_run`."""

    name: str
    stage: Path
    manifest: Manifest
    progress: bool
    options: Options
    data: DataOptions | None
    session: Session | None
    windows_used: dict[str, Any] = field(default_factory=dict)
    planner: dict[str, Any] = field(default_factory=dict)  # settings for the OOM advice

    @property
    def lm(self) -> Any:
        if self.session is None:
            raise RuntimeError(f"command {self.name} opened no model")
        return self.session.lm

    def windows(self, seed: int, *, n_calib: int | None = None, n_eval: int | None = None, label: str | None = None):
        """The seed's calibration windows and the fixed evaluation windows, recorded in the manifest."""
        from esa.data import make_windows

        assert self.session is not None and self.data is not None
        seq_len = self.data.seq_len if self.data.seq_len is not None else 128
        windows = make_windows(
            self.session.corpus, seq_len, n_calib if n_calib is not None else self.data.max_samples,
            n_eval if n_eval is not None else (self.data.eval_samples or 16), seed,
            bos_id=self.session.bos.bos_id, max_seq_len=self.lm.max_seq_len,
        ).with_text_measures(self.lm.tokenizer)
        self.windows_used[label or str(seed)] = windows.protocol()
        return windows

    def path(self, name: str) -> Path:
        return self.stage / name

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.stage / name, obj)

    def write_table(self, df: pd.DataFrame, name: str, parquet: bool = True) -> None:
        write_table(df, self.stage / name, parquet=parquet)


@contextmanager
def command_run(
    name: str, options: Options, *, output: OutputOptions, model: ModelOptions | None = None,
    data: DataOptions | None = None, attn_implementation: str | None = None,
    output_bytes: Callable[[Any], tuple[int, int]] | None = None,
) -> Iterator[CommandRun]:
    """Validate, stage, load, run the body, then write config.json, figures and the manifest.

    `output_bytes(lm) -> (total, largest file)` sizes what the command will write, checked against free
    space and the file-size limit before the heavy computation (e.g. `--save-scores`: 4 bytes a weight).
    """
    options.validate()
    progress = show_progress(output.quiet)
    manifest = Manifest(name)
    stage_dir = RunDir(output.out_dir, overwrite=output.overwrite, protect=_protected(model, data))
    with stage_dir as stage:
        session = None
        if model is not None:
            with manifest.stage("load"):
                session = open_session(model, data.dataset if data else "builtin", data.bos if data else "auto",
                                       progress, attn_implementation)
            if output_bytes is not None:
                stage_dir.check_space(*output_bytes(session.lm))
        run = CommandRun(name=name, stage=stage, manifest=manifest, progress=progress, options=options,
                         data=data, session=session)
        try:
            yield run
        except _oom_type() as exc:
            raise _out_of_memory(exc, run, model, data) from None
        atomic_write_json(stage / schema.CONFIG, options.to_dict())
        if output.save_plots:
            from esa.pipeline.plotting import plot_run_dir

            with manifest.stage("plots"):
                plot_run_dir(stage, lm_summary=session.lm.summary() if session else None)
        if session is not None:
            manifest.add(model=session.lm.summary(),
                         data={"dataset": session.corpus.description, "bos": session.bos.to_dict(), **run.windows_used})
        atomic_write_json(stage / schema.MANIFEST, manifest.to_dict())


def _protected(model: ModelOptions | None, data: DataOptions | None) -> list[Path]:
    """Paths an out-dir must never replace: the model's directory (or a model file's folder) and the data."""
    out = []
    for spec in ([model.model] if model is not None else []) + ([data.dataset] if data is not None else []):
        path = Path(spec).expanduser()
        if path.exists():
            out.append(path if path.is_dir() else path.parent)
    return out


def _oom_type() -> type[BaseException]:
    import torch

    return torch.OutOfMemoryError


def _out_of_memory(exc: BaseException, run: CommandRun, model: ModelOptions | None, data: DataOptions | None) -> EsaError:
    """A CUDA OOM becomes one line naming the settings the planner predicts would fit."""
    import torch

    from esa.scale import oom_advice

    n_gpus = torch.cuda.device_count() if model is not None and model.device_map else 1
    settings = {"model": model.model if model else None, "dtype": model.dtype if model else "fp32",
                "seq_len": data.seq_len if data else 128, "batch_size": data.batch_size if data else 1,
                "n_samples": data.max_samples if data else 1, "n_gpus": max(1, n_gpus), **run.planner}
    return oom_advice(exc, settings)


def fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)
