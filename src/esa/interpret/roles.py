"""Roles: a small taxonomy, each role defined by one measured effect and a threshold.

A weight gets the first role of ROLES whose rule it meets (all it meets are listed too); a weight whose
effects clear no rule is "unassigned". Rules that compare with a control need the effect to exceed
CONTROL_FACTOR x the largest |effect| of the control weights zeroed in the same tensor, so a role is
never given for an effect any weight there would have. The workflow's criterion: roles for >= 50% of the
selected weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONTROL_FACTOR = 10.0
SHARE_CRITERION = 0.5
UNASSIGNED = "unassigned"


@dataclass(frozen=True)
class Role:
    name: str
    measure: str  # key in the weight's effects
    threshold: float
    against_control: bool
    components: tuple[str, ...] | None  # the parameter components the role can apply to (None: any)
    rule: str


ROLES: tuple[Role, ...] = (
    Role("attention-sink generator", "sink_drop", 0.05, True, None,
         "zeroing lowers the mean attention probability on the first token over the later layers' heads by >= 0.05"),
    Role("massive-activation generator", "massive_drop", 0.5, True, None,
         "zeroing removes >= 50% of the largest |hidden state| downstream of the weight's block"),
    Role("stopword/frequency suppressor", "stopword_rise", 0.1, True, None,
         "zeroing raises the mean next-token probability mass on stopwords by >= 10% (relative)"),
    Role("token-specific embedding", "token_locality", 10.0, False, ("embedding", "lm_head"),
         "an embedding / unembedding row whose zeroing changes the NLL where its token is input or target "
         ">= 10x as much as elsewhere"),
    Role("normalisation scale", "abs_delta_nll", 1e-3, True, ("norm",),
         "a norm gain whose zeroing changes the mean next-token NLL by >= 0.001 nats"),
)


def taxonomy() -> list[dict[str, Any]]:
    """The roles, their measures and thresholds, as written into the result."""
    rows = [{"role": r.name, "measure": r.measure, "threshold": r.threshold, "rule": r.rule,
             "control": f">= {CONTROL_FACTOR:g}x the largest |effect| of the tensor's control weights"
             if r.against_control else "none (the measure is a ratio within the weight's own effect)",
             "applies_to": list(r.components) if r.components else "any weight"} for r in ROLES]
    return rows + [{"role": UNASSIGNED, "rule": "no rule above is met (or its measure does not apply)"}]


def assign(component: str, effects: dict[str, Any], controls: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """(primary role, every role met) for one weight from its effects and its tensor's control effects."""
    met = [r.name for r in ROLES if _meets(r, component, effects, controls)]
    return (met[0] if met else UNASSIGNED), met


def summary(roles: list[str]) -> dict[str, Any]:
    """Counts per role, the share assigned and the >= 50% criterion."""
    n = len(roles)
    assigned = sum(r != UNASSIGNED for r in roles)
    share = assigned / n if n else 0.0
    counts = {r.name: roles.count(r.name) for r in ROLES} | {UNASSIGNED: roles.count(UNASSIGNED)}
    return {"n_weights": n, "counts": counts, "n_assigned": assigned, "share_assigned": share,
            "criterion": f"roles identified for >= {SHARE_CRITERION:.0%} of the selected weights",
            "verdict": "PASS" if share >= SHARE_CRITERION else "FAIL"}


def _meets(role: Role, component: str, effects: dict[str, Any], controls: list[dict[str, Any]]) -> bool:
    if role.components is not None and component not in role.components:
        return False
    value = effects.get(role.measure)
    if value is None or not value >= role.threshold:
        return False
    if not role.against_control:
        return True
    floor = max([abs(c[role.measure]) for c in controls if c.get(role.measure) is not None], default=None)
    return floor is not None and value >= CONTROL_FACTOR * floor
