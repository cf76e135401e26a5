"""The built-in perturbations by name."""

from __future__ import annotations

from esa.errors import EsaError
from esa.perturb.base import Perturbation
from esa.perturb.bit_flip import BitFlip
from esa.perturb.gauss_noise import GaussNoise
from esa.perturb.sign_flip import SignFlip
from esa.perturb.zero import Zero

PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in (SignFlip(), Zero(), GaussNoise(), BitFlip())}


def register_perturbation(perturbation: Perturbation, *, replace: bool = False) -> Perturbation:
    """Make a user's Perturbation available by name (`esa run --perturb NAME`, `esa.validate`)."""
    if not isinstance(perturbation, Perturbation):
        raise TypeError(f"{perturbation!r} is not a esa.perturb.Perturbation")
    if perturbation.name in PERTURBATIONS and not replace:
        raise EsaError(f"a perturbation named {perturbation.name!r} is already registered; pass replace=True to override it")
    PERTURBATIONS[perturbation.name] = perturbation
    return perturbation


def get_perturbation(perturbation: str | Perturbation) -> Perturbation:
    """The registered perturbation of that name, or a Perturbation object as is."""
    if isinstance(perturbation, Perturbation):
        return perturbation
    if perturbation not in PERTURBATIONS:
        raise EsaError(f"unknown perturbation {perturbation!r}; choose one of: {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[perturbation]
