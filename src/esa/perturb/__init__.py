"""Perturbations that change selected weights in place and restore their exact bits, and the control
sets to compare them with.

    from esa.perturb import apply_perturbation, random_matched, trial_generator

    gen = trial_generator(1337, "noise:target", trial=0)
    with apply_perturbation(model, {"model.layers.0.mlp.down_proj.weight": idx}, "sign_flip", gen) as info:
        ...  # evaluate the perturbed model; on exit every touched tensor is restored bit for bit

Built-in perturbations (PERTURBATIONS): sign_flip (scale), zero, gauss_noise (scale, noise_ref),
bit_flip (prob | bit). A Perturbation subclass works wherever a name does.
"""

from esa.perturb.apply import ParamChange, PerturbationInfo, apply_perturbation
from esa.perturb.base import Perturbation, PerturbParam
from esa.perturb.bit_flip import NAMED_BITS, BitFlip, bit_position
from esa.perturb.checksum import tensor_checksum
from esa.perturb.controls import (
    BorrowedControl, magnitude_bins, magnitude_edges, random_matched, random_matched_magnitude, random_matched_nearest,
)
from esa.perturb.gauss_noise import GaussNoise, tensor_std
from esa.perturb.registry import PERTURBATIONS, get_perturbation, register_perturbation
from esa.perturb.seeding import trial_generator, trial_seed
from esa.perturb.sign_flip import SignFlip
from esa.perturb.zero import Zero

__all__ = [
    "BorrowedControl",
    "NAMED_BITS",
    "PERTURBATIONS",
    "BitFlip",
    "GaussNoise",
    "ParamChange",
    "PerturbParam",
    "Perturbation",
    "PerturbationInfo",
    "SignFlip",
    "Zero",
    "apply_perturbation",
    "bit_position",
    "get_perturbation",
    "magnitude_bins",
    "magnitude_edges",
    "random_matched",
    "random_matched_magnitude",
    "random_matched_nearest",
    "register_perturbation",
    "tensor_checksum",
    "tensor_std",
    "trial_generator",
    "trial_seed",
]
