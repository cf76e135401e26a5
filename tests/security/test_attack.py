"""The progressive bit search: flips recorded where they land, protected weights untouched, bit-exact restore."""

from __future__ import annotations

import math

import pytest
import torch

from esa.artifacts.schema import ravel
from esa.errors import EsaError
from esa.ranking import WeightSet
from esa.security import bit_flip_attack, critical_weights, defended_attack


def _as_weight_set(lm, flips) -> WeightSet:
    names = tuple(lm.params)
    pids = torch.tensor([names.index(f.param) for f in flips])
    flats = torch.tensor([ravel(f.index, lm.params[f.param].shape) for f in flips])
    return WeightSet(names, pids, flats, torch.ones(len(flips)))


def test_attack_flips_are_recorded_exactly_and_restored(tiny, windows, helpers) -> None:
    saved = helpers.model_bits(tiny)
    crit = critical_weights(tiny, windows, "magnitude", 20)
    res = bit_flip_attack(tiny, windows, target_ppl=1e9, max_flips=3, max_abs_value=1.0, critical={"magnitude": crit},
                          tries=2)
    assert helpers.same_bits(tiny, saved)
    assert res.n_flips == 3 and not res.reached
    named = dict(tiny.model.named_parameters())
    assert all(abs(f.new) <= 1.0 and f.estimated_dloss > 0 and math.isfinite(f.attack_loss) for f in res.flips)
    first = res.flips[0]  # later flips may hit a weight flipped before, so check the first against the model
    flat = ravel(first.index, tiny.params[first.param].shape)
    stored = named[first.param].detach().reshape(-1)[flat : flat + 1]
    bit = (1 << first.bit) if first.bit < 31 else -(1 << 31)
    assert float(stored) == first.old and float((stored.view(torch.int32) ^ bit).view(torch.float32)) == first.new
    keys = {(f.param, ravel(f.index, tiny.params[f.param].shape)) for f in res.flips}
    assert res.overlap["magnitude"] == {"k": 20, "flips_in_top_k": len(keys & crit.keys())}


def test_protected_weights_are_never_flipped(tiny, windows, helpers) -> None:
    saved = helpers.model_bits(tiny)
    open_ = bit_flip_attack(tiny, windows, target_ppl=1e9, max_flips=2, tries=1)
    protect = _as_weight_set(tiny, open_.flips)
    res = defended_attack(tiny, windows, protect, target_ppl=1e9, max_flips=2, tries=1)
    assert helpers.same_bits(tiny, saved)
    assert [f.index for f in res.open.flips] == [f.index for f in open_.flips]  # deterministic
    hit = {(f.param, f.index) for f in res.defended.flips} & {(f.param, f.index) for f in open_.flips}
    assert not hit and res.defended.n_protected == len(protect) and res.extra_flips is None


def test_an_unbounded_flip_breaks_the_model_and_is_flagged(tiny, windows, helpers) -> None:
    saved = helpers.model_bits(tiny)
    res = bit_flip_attack(tiny, windows, target_ppl=1e4, max_flips=3, tries=1)
    assert helpers.same_bits(tiny, saved)
    assert res.reached and res.n_flips <= 3
    assert res.reached_nonfinite == (not math.isfinite(res.final_ppl))


@pytest.mark.parametrize("kwargs", [{"max_flips": 0}, {"target_ppl": -1.0}, {"max_abs_value": 0.0}])
def test_bad_input(tiny, windows, kwargs) -> None:
    with pytest.raises(EsaError):
        bit_flip_attack(tiny, windows, **kwargs)
