"""Perplexity and next-token accuracy under one recorded protocol."""

from esa.evaluation.baseline import PRESETS, BaselinePreset, run_baseline
from esa.evaluation.nll import next_token_nll
from esa.evaluation.perplexity import EvalResult, evaluate

__all__ = ["PRESETS", "BaselinePreset", "EvalResult", "evaluate", "next_token_nll", "run_baseline"]
