"""Zero-shot task accuracy through lm-evaluation-harness, on the model in memory.

The model is handed to lm-eval's Hugging Face wrapper (`HFLM(pretrained=model, tokenizer=...)`)
as it is, so a perturbed model is scored with its perturbation in place and nothing is saved and
reloaded. The figures are lm-eval's own (`simple_evaluate`): accuracy = fraction of items whose
highest-loglikelihood choice is the answer, acc_norm the same with loglikelihoods divided by the
choice's byte length, stderr lm-eval's standard error of the mean. A task is an lm-eval name
(`hellaswag`, `piqa`, ...) or a path to a task YAML; a YAML's relative `data_files` are resolved
against the YAML's folder, so a local JSONL task runs offline from any working directory.

Provenance: the lm-eval version and, per task, the sha256 of the resolved task config (JSON with
sorted keys, local data files replaced by the sha256 of their bytes, so the hash names the data and
not where the checkout lives). Memory: one forward pass per request batch, nothing model-sized.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch

from esa.errors import EsaError

if TYPE_CHECKING:
    from esa.models.types import LoadedModel

DEFAULT_SEED = 1234  # lm-eval's default fewshot/torch seed; fixed so runs repeat exactly
_OFFLINE_HINT = (
    "lm-eval task data must be in the Hugging Face cache or local: set HF_DATASETS_OFFLINE=1 and pass a task "
    "YAML with `dataset_path: json` and `data_files` (see tests/tasks/facts_mc.yaml), or run once online to cache it"
)


@dataclass(frozen=True)
class TaskScore:
    """One task's lm-eval figures; `metrics` holds every metric lm-eval reported (stderr None when N/A)."""

    task: str
    source: str  # the name or YAML path the caller gave
    n_items: int  # items scored (after --limit)
    n_items_total: int  # items in the task's evaluation split
    acc: float | None
    acc_stderr: float | None
    acc_norm: float | None
    acc_norm_stderr: float | None
    metrics: dict[str, float | None]
    task_version: Any
    config_sha256: str


@dataclass(frozen=True)
class TaskResults:
    """The scores of every requested task, in request order, and how they were produced."""

    scores: tuple[TaskScore, ...]
    lm_eval_version: str
    limit: int | None
    batch_size: int
    seed: int
    num_fewshot: int

    def __getitem__(self, task: str) -> TaskScore:
        for score in self.scores:
            if task in (score.task, score.source):
                return score
        raise KeyError(task)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {"tasks": {name: scores}, provenance fields...}."""
        return {
            "tasks": {s.task: asdict(s) for s in self.scores},
            **self.provenance(),
        }

    def provenance(self) -> dict[str, Any]:
        """What a manifest needs to say how the task figures were made."""
        return {
            "lm_eval_version": self.lm_eval_version,
            "limit": self.limit,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "num_fewshot": self.num_fewshot,
            "task_config_sha256": {s.task: s.config_sha256 for s in self.scores},
            "n_items": {s.task: s.n_items for s in self.scores},
        }


def evaluate_tasks(
    lm: LoadedModel,
    tasks: Sequence[str],
    *,
    limit: int | None = None,
    batch_size: int = 1,
    seed: int = DEFAULT_SEED,
    num_fewshot: int = 0,
    bootstrap_iters: int = 100000,
    progress: bool = False,
) -> TaskResults:
    """Score `lm.model` (with `lm.tokenizer`) on lm-eval `tasks` (names or task-YAML paths).

    Every random generator lm-eval seeds (python, numpy, torch, few-shot sampler) gets `seed`, and the
    caller's global random states and the model's train/eval mode are restored afterwards.
    """
    if not tasks:
        raise EsaError("no tasks given; pass lm-eval task names or task YAML paths, e.g. --tasks tests/tasks/facts_mc.yaml")
    if limit is not None and limit < 1:
        raise EsaError(f"--limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise EsaError(f"--batch-size must be at least 1, got {batch_size}")
    lm_eval = _import_lm_eval()
    specs = [_task_spec(task) for task in tasks]
    model = lm.model
    was_training = model.training
    with _quiet(progress), _preserved_random_state():
        manager = _task_manager(any(isinstance(s, str) for s in specs))
        loaded = _load_tasks(manager, specs, tasks)
        from lm_eval.models.huggingface import HFLM

        try:
            wrapper = HFLM(pretrained=model, tokenizer=lm.tokenizer, batch_size=batch_size)
            raw = lm_eval.simple_evaluate(
                model=wrapper,
                tasks=list(loaded.values()),
                task_manager=manager,  # else simple_evaluate indexes every built-in task (seconds)
                num_fewshot=num_fewshot,
                limit=limit,
                bootstrap_iters=bootstrap_iters,
                log_samples=False,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
            )
        finally:
            model.train(was_training)
    scores = tuple(_score(name, source, raw) for source, name in zip(tasks, loaded))
    return TaskResults(scores, lm_eval.__version__, limit, batch_size, seed, num_fewshot)


def load_task_config(path: str | Path) -> dict[str, Any]:
    """A task YAML as a config dict, relative `data_files` made absolute against the YAML's folder."""
    from lm_eval.tasks._yaml_loader import load_yaml

    yaml_path = Path(path)
    try:
        config = load_yaml(yaml_path)
    except Exception as exc:  # YAML syntax, !function imports: the user's file, explained in one line
        raise EsaError(f"cannot read task YAML '{yaml_path}': {_one_line(exc)}") from exc
    if not isinstance(config, dict) or "task" not in config:
        raise EsaError(f"task YAML '{yaml_path}' has no `task:` name; see tests/tasks/facts_mc.yaml")
    kwargs = config.get("dataset_kwargs") or {}
    if "data_files" in kwargs:
        config["dataset_kwargs"] = {**kwargs, "data_files": _resolve_files(kwargs["data_files"], yaml_path.parent)}
    return config


def _task_spec(task: str) -> str | dict[str, Any]:
    """A YAML path becomes its resolved config dict; anything else stays an lm-eval task name."""
    if task.endswith((".yaml", ".yml")):
        if not Path(task).is_file():
            raise EsaError(f"task YAML '{task}' does not exist; give an existing file or an lm-eval task name")
        return load_task_config(task)
    return task


def _resolve_files(files: Any, base: Path) -> Any:
    if isinstance(files, str):
        resolved = Path(files).expanduser()
        return str(resolved if resolved.is_absolute() else (base / resolved).resolve())
    if isinstance(files, list):
        return [_resolve_files(f, base) for f in files]
    if isinstance(files, dict):
        return {split: _resolve_files(f, base) for split, f in files.items()}
    return files


def _import_lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise EsaError("zero-shot tasks need lm-evaluation-harness: pip install 'esa-llm[eval]'") from None
    return lm_eval


@functools.lru_cache(maxsize=2)
def _task_manager(include_defaults: bool) -> Any:
    """One manager per process (indexing lm-eval's built-in tasks takes seconds), and only when a task
    is asked for by name; YAML configs need no index."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=include_defaults)


def _load_tasks(manager: Any, specs: list[Any], tasks: Sequence[str]) -> dict[str, Any]:
    """Build each task (its data is read here), so unknown names and missing data fail before scoring."""
    loaded: dict[str, Any] = {}
    for spec, given in zip(specs, tasks):
        try:
            built = manager.load([spec])["tasks"]
        except Exception as exc:  # datasets' offline, not-found and file errors all mean "the data is not here"
            if isinstance(spec, str) and isinstance(exc, KeyError) and "not a registered" in str(exc):
                raise EsaError(f"unknown lm-eval task '{given}'; give an lm-eval task name or a task YAML path") from None
            raise EsaError(f"task '{given}': its data could not be loaded ({_one_line(exc)}); {_OFFLINE_HINT}") from exc
        if len(built) != 1:
            raise EsaError(f"'{given}' is a group of {len(built)} tasks; name its tasks one by one")
        ((name, task),) = built.items()
        if name in loaded:
            raise EsaError(f"task '{name}' is given twice (as '{given}'); give each task once")
        loaded[name] = task
    return loaded


def _score(name: str, source: str, raw: dict[str, Any]) -> TaskScore:
    values = raw["results"][name]
    metrics: dict[str, float | None] = {}
    for key, value in values.items():
        if "," not in key:
            continue  # name, alias, sample_len
        metric, filter_name = key.split(",", 1)
        label = metric if filter_name == "none" else f"{metric},{filter_name}"
        metrics[label] = float(value) if isinstance(value, (int, float)) else None
    counts = raw["n-samples"][name]
    return TaskScore(
        task=name,
        source=source,
        n_items=int(counts["effective"]),
        n_items_total=int(counts["original"]),
        acc=metrics.get("acc"),
        acc_stderr=metrics.get("acc_stderr"),
        acc_norm=metrics.get("acc_norm"),
        acc_norm_stderr=metrics.get("acc_norm_stderr"),
        metrics=metrics,
        task_version=raw["versions"].get(name),
        config_sha256=config_sha256(raw["configs"][name]),
    )


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of a resolved task config; local data files count by their bytes, not their path."""
    config = json.loads(json.dumps(config, default=str))
    kwargs = config.get("dataset_kwargs") or {}
    if "data_files" in kwargs:
        kwargs["data_files"] = _file_digests(kwargs["data_files"])
    if isinstance(config.get("metadata"), dict):
        config["metadata"].pop("config_source", None)  # "inline" or a path: how it was passed, not what it is
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()


def _file_digests(files: Any) -> Any:
    if isinstance(files, str):
        path = Path(files)
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else files
    if isinstance(files, list):
        return [_file_digests(f) for f in files]
    if isinstance(files, dict):
        return {split: _file_digests(f) for split, f in files.items()}
    return files


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """Silence lm-eval's and datasets' logging and progress bars (all on stderr); `progress` keeps them."""
    if progress:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("lm_eval", "datasets", "evaluate")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _preserved_random_state() -> Iterator[None]:
    """simple_evaluate seeds the global generators; give the caller's states back afterwards."""
    import numpy as np

    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)

