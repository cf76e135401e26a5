"""Perplexity, bits per byte, next-token accuracy and zero-shot tasks under one recorded protocol."""

from esa.evaluation.baseline import PRESETS, BaselinePreset, run_baseline
from esa.evaluation.compare import ModelRow, baseline_row, compare_baselines, phase1_criteria
from esa.evaluation.nll import next_token_nll
from esa.evaluation.perplexity import EvalResult, evaluate
from esa.evaluation.zeroshot import TaskResults, TaskScore, evaluate_tasks

__all__ = [
    "PRESETS",
    "BaselinePreset",
    "EvalResult",
    "ModelRow",
    "TaskResults",
    "TaskScore",
    "baseline_row",
    "compare_baselines",
    "evaluate",
    "evaluate_tasks",
    "next_token_nll",
    "phase1_criteria",
    "run_baseline",
]
