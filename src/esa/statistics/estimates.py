"""Honesty checks for metrics that estimate a signed quantity by sampling (hutchinson_diag).

Hutchinson's diagonal estimate E[z * Hz] has a standard error per weight; with few probes it can exceed
the diagonal's own size (on SmolLM2 an independent exact check found a relative L2 error of 13x at 16
probes). So ESA reports, for the selected weights, the share whose |mean| exceeds two standard errors
(estimates distinguishable from zero), and keeps positive and negative curvature apart: the ranking
uses |mean|, which would otherwise mix a strongly convex direction with a strongly concave one.
"""

from __future__ import annotations

from typing import Any

import torch

from esa.ranking import WeightSet


def signed_estimate_check(result: Any, selection: WeightSet, probes: int, z: float = 2.0) -> dict[str, Any]:
    """Share of selected weights with |mean| > z * stderr, and curvature sign counts and mass."""
    signed, stderr = result.extras["signed"], result.extras["stderr"]
    means, errors = [], []
    for name, idx in selection.by_param().items():
        means.append(signed[name].reshape(-1)[idx.to(signed[name].device)].float().cpu())
        errors.append(stderr[name].reshape(-1)[idx.to(stderr[name].device)].float().cpu())
    m = torch.cat(means) if means else torch.zeros(0)
    e = torch.cat(errors) if errors else torch.zeros(0)
    finite = torch.isfinite(e)
    significant = (m.abs() > z * e) & finite
    positive = negative = 0
    pos_mass = neg_mass = 0.0
    for t in signed.values():
        x = t.detach().float()
        positive += int((x > 0).sum())
        negative += int((x < 0).sum())
        pos_mass += float(x.clamp(min=0).sum())
        neg_mass += float(x.clamp(max=0).sum())
    n = int(m.numel())
    return {
        "rule": f"|mean| > {z:g} x stderr over probes",
        "probes": probes,
        "n_selected": n,
        "share_significant": float(significant.sum()) / n if n else 0.0,
        "n_stderr_undefined": int((~finite).sum()),
        "selected": {"positive": int((m > 0).sum()), "negative": int((m < 0).sum())},
        "curvature": {"positive": {"count": positive, "sum": pos_mass}, "negative": {"count": negative, "sum": neg_mass}},
    }

