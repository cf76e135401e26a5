"""Resolved options of one `esa run`: what config.json records and what the pipeline obeys."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from esa.errors import EsaError

DEFAULT_MODEL = "smollm2-135m"


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


@dataclass
class DataOptions:
    dataset: str = "builtin"
    seq_len: int = 128
    max_samples: int = 16  # calibration windows per seed
    eval_samples: int = 16  # evaluation windows (fixed across seeds)
    bos: bool = False  # prepend BOS to every window
    batch_size: int = 4


@dataclass
class ModelOptions:
    model: str = DEFAULT_MODEL
    dtype: str = "fp32"
    device: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False


@dataclass
class PerturbOptions:
    perturb: str | None = None
    scales: list[float] = field(default_factory=lambda: [1.0])
    prob: float | None = None
    bit: str | None = None
    noise_ref: str = "abs"
    controls: list[str] = field(default_factory=lambda: ["random_k", "bottom_k"])
    trials: int = 10
    match_magnitude: bool = False
    topks: list[int] = field(default_factory=list)  # dose-response over k; empty = the run's --topk


@dataclass
class RunConfig:
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    metric: str = "grad_x_weight"
    mode: str = "per_layer"
    topk: int = 100
    seeds: list[int] = field(default_factory=lambda: [1337])
    stability_check: bool = False
    probes: int = 8
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    accumulate_on: str = "param"
    checkpointing: bool = False
    save_scores: bool = False
    save_plots: bool = False
    weight_analysis: bool = False
    architecture_analysis: bool = False
    perturb: PerturbOptions = field(default_factory=PerturbOptions)
    out_dir: str = "outputs/esa/run"
    quiet: bool = False
    verbose: bool = False

    def validate(self) -> None:
        if self.mode not in ("per_layer", "global"):
            raise EsaError(f"--mode must be per_layer or global, got {self.mode!r}")
        if self.topk <= 0:
            raise EsaError(f"--topk must be a positive integer, got {self.topk}")
        if not self.seeds:
            raise EsaError("--seeds needs at least one integer seed, e.g. --seeds 1337,123,999")
        if len(set(self.seeds)) != len(self.seeds):
            raise EsaError(f"--seeds has duplicates: {self.seeds}")
        if self.probes <= 0:
            raise EsaError(f"--probes must be a positive integer, got {self.probes}")
        if self.data.max_samples <= 0 or self.data.eval_samples <= 0:
            raise EsaError("--max-samples and --eval-samples must be positive")
        if self.data.batch_size <= 0:
            raise EsaError(f"--batch-size must be a positive integer, got {self.data.batch_size}")
        if self.accumulate_on not in ("param", "cpu"):
            raise EsaError(f"--accumulate-on must be param or cpu, got {self.accumulate_on!r}")
        unknown = set(self.perturb.controls) - {"random_k", "bottom_k"}
        if unknown:
            raise EsaError(f"unknown control(s) {sorted(unknown)}; valid: random_k, bottom_k")
        if self.perturb.trials <= 0:
            raise EsaError(f"--trials must be a positive integer, got {self.perturb.trials}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
