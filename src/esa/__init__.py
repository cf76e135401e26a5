"""ESA: find the few weights of a transformer language model that matter most, and prove it.

The public API, in one place (imported lazily, so `import esa` stays cheap)::

    lm = esa.load_model("smollm2-135m")
    windows = esa.make_windows(esa.load_corpus("builtin", lm.tokenizer), seq_len=128, n_calib=16, n_eval=16, seed=1)
    scores = esa.score_model(lm, esa.get_metric("grad_x_weight"), windows, list(lm.params), seed=1, batch_size=4)
    result = esa.validate(lm, esa.top_k(scores.scores, 20, "global"), "zero", eval_windows=windows, seed=1,
                          controls=["random_k"], trials=20)

See the README's "Use from Python" for the whole walk-through.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    # models and data
    "load_model": "esa.models", "describe_parameters": "esa.models", "LoadedModel": "esa.models",
    "ParamInfo": "esa.models", "BUNDLED_ALIASES": "esa.models",
    "load_corpus": "esa.data", "make_windows": "esa.data", "WindowSet": "esa.data", "Corpus": "esa.data",
    # evaluation
    "evaluate": "esa.evaluation", "run_baseline": "esa.evaluation", "EvalResult": "esa.evaluation",
    "next_token_nll": "esa.evaluation", "evaluate_tasks": "esa.evaluation", "compare_baselines": "esa.evaluation",
    # metrics
    "get_metric": "esa.metrics", "register_metric": "esa.metrics", "as_metric": "esa.metrics",
    "METRICS": "esa.metrics", "ScoringContext": "esa.metrics", "MetricResult": "esa.metrics",
    # ranking and statistics
    "top_k": "esa.ranking", "filter_params": "esa.ranking", "WeightSet": "esa.ranking",
    "score_statistics": "esa.statistics", "stability_report": "esa.statistics", "bootstrap_ci": "esa.statistics",
    # perturbation
    "apply_perturbation": "esa.perturb", "get_perturbation": "esa.perturb", "PERTURBATIONS": "esa.perturb",
    "random_matched": "esa.perturb", "random_matched_magnitude": "esa.perturb",
    # analyses
    "detect_superweights": "esa.analysis", "weight_analysis": "esa.analysis", "architecture_analysis": "esa.analysis",
    "plan_run": "esa.scale",
    # applications (phase 5) and studies (phase 4)
    "prune": "esa.prune", "PruneResult": "esa.prune", "quantize": "esa.quantize", "QuantResult": "esa.quantize",
    "finetune": "esa.finetune", "FinetuneResult": "esa.finetune", "interpret": "esa.interpret",
    "InterpretResult": "esa.interpret", "fault_campaign": "esa.security", "bit_flip_attack": "esa.security",
    "fingerprint": "esa.security", "verify": "esa.security", "diff_models": "esa.security",
    # validation (phase 3)
    "validate": "esa.validation", "ValidationResult": "esa.validation", "Criterion": "esa.statistics.validation",
    "register_perturbation": "esa.perturb", "Perturbation": "esa.perturb", "PerturbParam": "esa.perturb",
    "plot_perturbation": "esa.plots.perturbation",
    # pipeline steps
    "profile_seed": "esa.pipeline.profile", "score_model": "esa.metrics",
    "EsaError": "esa.errors",
}

# Namespaces: `esa.study.scaling(runs)`, `esa.study.families(runs)`.
_MODULES: dict[str, str] = {"study": "esa.studies"}

__all__ = ["__version__", *_API, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'esa' has no attribute {name!r}")
