"""Planning runs at scale: memory and time predicted before loading a model, and checked after.

`plan_run` / `format_plan` are `esa plan`; `oom_advice` turns an out-of-memory error into settings that
fit; `measure_peak_memory` and `folded_backward` are the measurements the predictions are checked against.
"""

from esa.scale.configs import BUILTIN_CONFIGS, resolve_config
from esa.scale.facts import ModelFacts, model_facts
from esa.scale.hardware import GPUS, get_device
from esa.scale.measure import folded_backward, measure_peak_memory
from esa.scale.oom import oom_advice
from esa.scale.plan import format_plan, plan_run

__all__ = [
    "BUILTIN_CONFIGS",
    "GPUS",
    "ModelFacts",
    "folded_backward",
    "format_plan",
    "get_device",
    "measure_peak_memory",
    "model_facts",
    "oom_advice",
    "plan_run",
    "resolve_config",
]
