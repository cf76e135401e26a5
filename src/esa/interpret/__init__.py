"""Interpretability of the critical weights: roles, attention patterns, knowledge localisation.

    result = esa.interpret.interpret(lm, windows, [("model.layers.11.mlp.down_proj.weight", (507, 1229))],
                                     seed=0, batch_size=2)
    result.roles["share_assigned"], result.weights[0]["role"]
"""

from esa._callable import callable_package
from esa.interpret.core import DEFAULT_CONTROL_TRIALS, InterpretResult, interpret
from esa.interpret.probes import BUILTIN_PROBES, Probe, load_probes, parse_probes
from esa.interpret.roles import ROLES, UNASSIGNED
from esa.interpret.selection import SelectedWeight, check_selection, from_weight_set
from esa.interpret.from_run import run_scores, run_selection

__all__ = [
    "BUILTIN_PROBES",
    "DEFAULT_CONTROL_TRIALS",
    "ROLES",
    "UNASSIGNED",
    "InterpretResult",
    "Probe",
    "SelectedWeight",
    "check_selection",
    "from_weight_set",
    "interpret",
    "load_probes",
    "parse_probes",
    "run_scores",
    "run_selection",
]

callable_package(__name__, interpret)
