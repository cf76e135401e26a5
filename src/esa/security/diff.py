"""What changed between two models of one architecture, and whether it matters.

Per tensor: the number of weights whose stored bits differ, the Frobenius norm of the change
(absolute and relative to the base tensor), how many changed weights are among each model's global
top-k critical weights, and the shift of the tensor's sensitivity mass. With s_t = Σ score_t / Σ score
(the tensor's share of the model's total sensitivity under `metric`, scored on the same calibration
windows for both models), shift_t = ln((s_t' + ε) / (s_t + ε)), ε = 1e-12, and its robust z-score
    z_t = (shift_t - median shift) / (1.4826 · MAD(shift))
(Iglewicz & Hoaglin: |z| > 3.5 is flagged). Tensors are ranked changed-first, then by |z|: an edit
changes the gradients reaching its neighbours too (a rank-1 edit of a down-projection shifts the
sensitivity of the same block's gate/up projections as much as its own), so the sensitivity shift
alone does not localise an edit, the stored bits do; the shift says which tensors it affects. The same shares
summed per (layer, component) give the profile shift.
Cost: two metric passes (one per model) and one integer comparison of every tensor; memory: the
two models plus one score tensor per parameter for each.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from esa.data import WindowSet
from esa.errors import EsaError
from esa.models import LoadedModel
from esa.perturb.base import int_view_dtype
from esa.ranking import top_k

Z_FLAG = 3.5
_EPS = 1e-12


@dataclass(frozen=True)
class TensorDiff:
    param: str
    layer: int | None
    component: str
    n_changed: int
    change_norm: float
    relative_change: float  # change_norm / ||base tensor||
    changed_in_base_top_k: int
    changed_in_suspect_top_k: int
    base_share: float
    suspect_share: float
    shift: float
    z: float
    flagged: bool


@dataclass(frozen=True)
class ProfileShift:
    layer: int | None
    component: str
    base_share: float
    suspect_share: float
    shift: float


@dataclass
class DiffResult:
    metric: str
    k: int
    n_changed_tensors: int
    n_changed_weights: int
    tensors: list[TensorDiff]  # ranked: changed first, then by |z|
    profile: list[ProfileShift]

    @property
    def flagged(self) -> list[str]:
        return [t.param for t in self.tensors if t.flagged]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flagged": self.flagged}


def diff_models(base: LoadedModel, suspect: LoadedModel, *, metric: str = "grad_x_weight", windows: WindowSet,
                k: int = 1000, seed: int = 0, batch_size: int = 4) -> DiffResult:
    """Compare `suspect` with `base` tensor by tensor (see the module docstring for the statistics)."""
    from esa.metrics import get_metric
    from esa.pipeline.profile import score_model

    base_shapes = {n: p.shape for n, p in base.params.items()}
    if base_shapes != {n: p.shape for n, p in suspect.params.items()}:
        raise EsaError("the two models have different tensors or shapes; diff compares models of one architecture")
    names = list(base.params)
    scorer = get_metric(metric)
    scores_b = score_model(base, scorer, windows, names, seed=seed, batch_size=batch_size).scores
    scores_s = score_model(suspect, scorer, windows, names, seed=seed, batch_size=batch_size).scores
    top_b, top_s = top_k(scores_b, k, mode="global").by_param(), top_k(scores_s, k, mode="global").by_param()
    share_b, share_s = _shares(scores_b), _shares(scores_s)
    shift = {n: math.log((share_s[n] + _EPS) / (share_b[n] + _EPS)) for n in names}
    z = _robust_z(shift)
    tb, ts = _tensors(base), _tensors(suspect)
    rows = []
    for n in names:
        a, b = tb[n].detach(), ts[n].detach().to(tb[n].device)
        changed = a.reshape(-1).view(int_view_dtype(a.dtype)) != b.reshape(-1).view(int_view_dtype(a.dtype))
        delta = (b.float() - a.float()).norm().item()
        base_norm = a.float().norm().item()
        info = base.params[n]
        rows.append(TensorDiff(
            n, info.layer, info.component, int(changed.sum()), delta, delta / base_norm if base_norm else math.inf,
            _count(changed, top_b.get(n)), _count(changed, top_s.get(n)), share_b[n], share_s[n], shift[n], z[n],
            abs(z[n]) > Z_FLAG))
    rows.sort(key=lambda r: (r.n_changed == 0, -abs(r.z), r.param))
    return DiffResult(metric, k, sum(r.n_changed > 0 for r in rows), sum(r.n_changed for r in rows), rows,
                      _profile(base, share_b, share_s))


def _tensors(lm: LoadedModel) -> dict[str, torch.Tensor]:
    named = dict(lm.model.named_parameters(remove_duplicate=False))
    return {n: named[n] for n in lm.params}


def _shares(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    mass = {n: float(s.double().sum()) for n, s in scores.items()}
    total = math.fsum(mass.values())
    return {n: m / total if total > 0 else 0.0 for n, m in mass.items()}


def _robust_z(values: dict[str, float]) -> dict[str, float]:
    x = torch.tensor(list(values.values()), dtype=torch.float64)
    median = x.median()
    mad = (x - median).abs().median() * 1.4826
    scale = float(mad) if float(mad) > 0 else float((x - median).abs().mean() * 1.2533) or 1.0
    return {n: float((v - median) / scale) for n, v in values.items()}


def _count(changed: torch.Tensor, top: torch.Tensor | None) -> int:
    return 0 if top is None else int(changed[top.to(changed.device)].sum())


def _profile(lm: LoadedModel, share_b: dict[str, float], share_s: dict[str, float]) -> list[ProfileShift]:
    groups: dict[tuple[int | None, str], list[float]] = {}
    for n, info in lm.params.items():
        g = groups.setdefault((info.layer, info.component), [0.0, 0.0])
        g[0] += share_b[n]
        g[1] += share_s[n]
    order = sorted(groups, key=lambda k: (k[0] is not None, -1 if k[0] is None else k[0], k[1]))
    return [ProfileShift(layer, comp, b, s, math.log((s + _EPS) / (b + _EPS)))
            for (layer, comp), (b, s) in ((key, groups[key]) for key in order)]
