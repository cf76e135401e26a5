"""Every command's options, in one place, validating themselves the same way.

A numeric field declares its flag and range once (`opt(default, "--flag", min=..., max=...)`);
`Options.validate()` checks every such field of the dataclass and of the option groups nested in it
(finite, in range, integers where integers are meant), then the class's own cross-field rules in
`check()`. config.json is `to_dict()` of the command's options.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from esa.errors import EsaError

DEFAULT_MODEL = "smollm2-135m"
MAX_SEED = 2**63 - 1
BOS_MODES = ("auto", "on", "off")


def opt(default: Any, flag: str, *, min: float | None = None, max: float | None = None, factory: Any = None) -> Any:
    """A dataclass field carrying its CLI flag and allowed range (checked by `Options.validate`)."""
    meta = {"flag": flag, "min": min, "max": max}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _check_number(value: Any, flag: str, lo: float | None, hi: float | None) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise EsaError(f"{flag} expects a number, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise EsaError(f"{flag} must be a finite number, got {v}")
        if lo is not None and v < lo:
            raise EsaError(f"{flag} must be >= {lo:g}, got {v}")
        if hi is not None and v > hi:
            raise EsaError(f"{flag} must be <= {hi:g}, got {v}")


class Options:
    """Base of every option dataclass: declarative range checks plus `check()` for cross-field rules."""

    def validate(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Options):
                value.validate()
            elif "flag" in f.metadata:
                _check_number(value, f.metadata["flag"], f.metadata["min"], f.metadata["max"])
        self.check()

    def check(self) -> None:
        """Rules that involve several fields (overridden where needed)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) if is_dataclass(self) else {}


def _parse_list(text: str | None, flag: str, cast: type, kind: str) -> list:
    if text is None or str(text).strip() == "":
        return []
    try:
        return [cast(x) for x in str(text).split(",") if x.strip() != ""]
    except ValueError:
        raise EsaError(f"{flag} expects comma-separated {kind}, got {text!r}") from None


def parse_int_list(text: str | None, flag: str) -> list[int]:
    """'1337,123,999' -> [1337, 123, 999], with an error that names the flag."""
    return _parse_list(text, flag, int, "integers")


def parse_float_list(text: str | None, flag: str) -> list[float]:
    return _parse_list(text, flag, float, "numbers")


def parse_name_list(text: str | None) -> list[str]:
    if text is None:
        return []
    return [x.strip() for x in str(text).split(",") if x.strip()]


def parse_seeds(text: str | None) -> list[int]:
    seeds = parse_int_list(text, "--seeds")
    if not seeds:
        raise EsaError("--seeds needs at least one integer seed, e.g. --seeds 1337,123,999")
    return seeds


@dataclass
class ModelOptions(Options):
    model: str = DEFAULT_MODEL
    dtype: str = "fp32"
    device: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False

    def check(self) -> None:
        if not str(self.model).strip():
            raise EsaError("--model is empty; give a hub id, a local directory, a .gguf file or a bundled alias (see `esa models`)")


@dataclass
class DataOptions(Options):
    dataset: str = "builtin"
    seq_len: int | None = opt(128, "--seq-len", min=2)  # None (baseline): the preset's
    max_samples: int = opt(16, "--max-samples", min=1)  # calibration windows per seed
    eval_samples: int | None = opt(16, "--eval-samples", min=1)  # evaluation windows (fixed across seeds)
    bos: str = "auto"  # auto: prepend BOS when the tokenizer adds one by default
    batch_size: int = opt(4, "--batch-size", min=1)
    seeds: list[int] = opt(None, "--seeds", min=0, max=MAX_SEED, factory=lambda: [1337])

    def check(self) -> None:
        if self.bos not in BOS_MODES:
            raise EsaError(f"--bos must be auto, on or off, got {self.bos!r}")
        if not self.seeds:
            raise EsaError("--seeds needs at least one integer seed, e.g. --seeds 1337,123,999")
        if len(set(self.seeds)) != len(self.seeds):
            raise EsaError(f"--seeds has duplicates: {self.seeds}")


@dataclass
class OutputOptions(Options):
    out_dir: str = "outputs/esa/run"
    overwrite: bool = False
    save_plots: bool = False
    quiet: bool = False
    verbose: bool = False


@dataclass
class PerturbOptions(Options):
    perturb: str | None = None
    scales: list[float] = opt(None, "--perturb-scale", factory=lambda: [1.0])
    prob: float | None = opt(None, "--perturb-prob", min=0.0, max=1.0)
    bit: str | None = None
    noise_ref: str | None = None  # gauss_noise's default (abs) unless given
    controls: list[str] = field(default_factory=lambda: ["random_k", "bottom_k"])
    trials: int = opt(10, "--trials", min=1)
    match_magnitude: bool = False
    topks: list[int] = opt(None, "--topk", min=1, factory=list)  # dose-response over k; empty = the run's --topk

    def check(self) -> None:
        unknown = set(self.controls) - {"random_k", "bottom_k"}
        if unknown:
            raise EsaError(f"unknown control(s) {sorted(unknown)}; valid: random_k, bottom_k")


@dataclass
class RunConfig(Options):
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    metric: str = "grad_x_weight"
    mode: str = "per_layer"
    topk: int = opt(100, "--topk", min=1)
    stability_check: bool = False
    probes: int = opt(8, "--probes", min=1)
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    accumulate_on: str = "param"
    checkpointing: bool = False
    save_scores: bool = False
    weight_analysis: bool = False
    architecture_analysis: bool = False
    superweights: bool = False  # also run the super-weight scan into this run directory
    perturb: PerturbOptions = field(default_factory=PerturbOptions)
    tasks: list[str] = field(default_factory=list)  # lm-eval tasks per condition
    limit: int | None = opt(None, "--limit", min=1)

    def check(self) -> None:
        if self.mode not in ("per_layer", "global"):
            raise EsaError(f"--mode must be per_layer or global, got {self.mode!r}")
        if self.accumulate_on not in ("param", "cpu"):
            raise EsaError(f"--accumulate-on must be param or cpu, got {self.accumulate_on!r}")
        if self.tasks and self.perturb.perturb is None:
            raise EsaError("--tasks in `esa run` scores the perturbed conditions; add --perturb (or use `esa baseline --tasks`)")


@dataclass
class BaselineOptions(Options):
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=lambda: DataOptions(seq_len=None, eval_samples=None, batch_size=1))
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/baseline"))
    models: list[str] = field(default_factory=list)  # several models under one protocol (--model a,b,c)
    preset: str = "smoke"
    eval_protocol: str = "last"
    tasks: list[str] = field(default_factory=list)
    limit: int | None = opt(None, "--limit", min=1)

    def check(self) -> None:
        from esa.evaluation import PRESETS

        if self.preset not in PRESETS:
            raise EsaError(f"unknown --preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.eval_protocol not in ("last", "full"):
            raise EsaError(f"--eval-protocol must be last or full, got {self.eval_protocol!r}")


@dataclass
class SuperweightOptions(Options):
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=lambda: DataOptions(max_samples=4, eval_samples=8, batch_size=1))
    output: OutputOptions = field(default_factory=lambda: OutputOptions(out_dir="outputs/esa/superweights"))
    threshold: float = opt(1000.0, "--threshold", min=1.0)
    max_iter: int = opt(8, "--max-iter", min=1)
    n_controls: int = opt(3, "--controls", min=1)
    metrics: list[str] = field(default_factory=lambda: ["magnitude", "grad_x_weight"])

    def check(self) -> None:
        if len(self.data.seeds) != 1:
            raise EsaError("`esa superweights` takes one --seed")
