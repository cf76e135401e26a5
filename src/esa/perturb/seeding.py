"""One random stream per (base seed, condition, trial), so every trial of every condition is
reproducible on its own and independent of the others (re-running trial 7 alone gives trial 7).

    seed = trial_seed(1337, "random_k", 3)       # int in [0, 2^63)
    gen = trial_generator(1337, "random_k", 3)   # a CPU torch.Generator seeded with it

The seed is the first 8 bytes of SHA-256 over "base_seed|condition|trial" (big-endian, top bit
cleared): stable across Python versions, platforms and processes, unlike hash(). `condition` is any
string naming what the stream is for, e.g. "control:random_k" for a control's draw and
"noise:sign_flip/scale=1:random_k" for that condition's noise; callers own the naming.
"""

from __future__ import annotations

import hashlib

import torch


def trial_seed(base_seed: int, condition: str, trial: int) -> int:
    """The seed of `trial` of `condition` in a run seeded with `base_seed`."""
    digest = hashlib.sha256(f"{int(base_seed)}|{condition}|{int(trial)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def trial_generator(base_seed: int, condition: str, trial: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator on `device` seeded with trial_seed(base_seed, condition, trial).

    Keep the default CPU generator for results that do not depend on the hardware: the
    perturbations draw on the generator's device and move the draws to the parameter.
    """
    return torch.Generator(device=device).manual_seed(trial_seed(base_seed, condition, trial))
