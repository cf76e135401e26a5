"""Fault campaigns: bit-exact restore (NaN and inf included), honest counts, determinism, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from esa.errors import EsaError
from esa.ranking import WeightSet
from esa.security import Failure, fault_campaign, leveugle_sample_size, side_by_side

NORM = "model.layers.0.input_layernorm.weight"


def _sites(lm, name: str, flats: list[int]) -> WeightSet:
    names = tuple(lm.params)
    pid = names.index(name)
    n = len(flats)
    return WeightSet(names, torch.full((n,), pid), torch.tensor(flats), torch.ones(n))


def test_random_campaign_restores_every_bit_and_counts_honestly(tiny, windows, helpers) -> None:
    saved = helpers.model_bits(tiny)
    res = fault_campaign(tiny, windows, injections=20, bits="exponent", faults_per_trial=2, seed=3)
    assert helpers.same_bits(tiny, saved)
    assert res.overall.n == 20 and res.overall.failures == sum(t.failed for t in res.trials)
    assert res.silent.failures + res.crashing.failures == res.overall.failures
    assert all(len({(f.param, f.index) for f in t.faults}) == 2 for t in res.trials)
    assert all(f.bit_class == "exponent" for t in res.trials for f in t.faults)
    # every fault's recorded new value is its old value with that one bit flipped
    for t in res.trials:
        for f in t.faults:
            old = torch.tensor([f.old], dtype=torch.float32).view(torch.int32)
            new = float((old ^ (1 << f.bit) if f.bit < 31 else old ^ -(1 << 31)).view(torch.float32))
            assert (math.isnan(new) and math.isnan(f.new)) or new == f.new
    assert len(res.table()) == 40


def test_nan_and_inf_producing_flips_are_restored(tiny_bf16, windows, helpers) -> None:
    """Norm weights of 1.0 (0x3F80) become +inf with bit 14; 1.5 (0x3FC0) becomes NaN."""
    saved = helpers.model_bits(tiny_bf16)
    with helpers.tampered(tiny_bf16, NORM, lambda p: p.__setitem__(0, 1.5)):
        inner = helpers.model_bits(tiny_bf16)
        res = fault_campaign(tiny_bf16, windows, injections=6, sites=_sites(tiny_bf16, NORM, [0, 1]), bits=14,
                             failure="nonfinite", seed=0)
        assert helpers.same_bits(tiny_bf16, inner)
    assert helpers.same_bits(tiny_bf16, saved)
    news = {f.index: f.new for t in res.trials for f in t.faults}
    assert math.isnan(news[(0,)]) and news[(1,)] == math.inf
    assert res.crashing.failures == res.overall.failures == 6 and res.silent.failures == 0


def test_same_seed_same_campaign(tiny, windows) -> None:
    a = fault_campaign(tiny, windows, injections=8, seed=7).table()
    b = fault_campaign(tiny, windows, injections=8, seed=7).table()
    assert a.equals(b)


def test_groups_partition_single_fault_trials(tiny, windows) -> None:
    res = fault_campaign(tiny, windows, injections=16, bits="all", failure="acc_drop>0.0", seed=1)
    for group, rates in res.groups.items():
        assert sum(r.n for r in rates.values()) == 16, group
        assert sum(r.failures for r in rates.values()) == res.overall.failures
    table = side_by_side({"random": res, "again": res})
    assert {"random_p", "again_hi"} <= set(table.columns) and (table["random_p"].fillna(0) == table["again_p"].fillna(0)).all()


def test_margin_gives_leveugle_sample_size(tiny, windows) -> None:
    sites = _sites(tiny, NORM, [0, 1, 2, 3, 4])
    res = fault_campaign(tiny, windows, margin=0.2, sites=sites, bits="sign", seed=0)
    assert res.sample_size["N"] == 5 and res.overall.n == leveugle_sample_size(5, 0.2) == res.sample_size["n"]


def test_failure_criteria() -> None:
    assert Failure.parse("dppl>1").failed(12.5, 0.3, 11.0, 0.3)
    assert not Failure.parse("dppl > 1").failed(11.9, 0.3, 11.0, 0.3)
    assert Failure.parse("acc_drop>0.05").failed(11.0, 0.2, 11.0, 0.3)
    assert Failure.parse("nonfinite").failed(math.nan, 0.3, 11.0, 0.3)
    assert not Failure.parse("nonfinite").failed(1e9, 0.0, 11.0, 0.3)


@pytest.mark.parametrize("kwargs", [
    {"failure": "ppl<3"},
    {"bits": 32},  # fp32 has bits 0..31
    {"faults_per_trial": 0},
    {"margin": 0.1},  # together with injections
    {"sites": ("topk", "magnitude", 0)},
    {"sites": "everywhere"},
])
def test_bad_input(tiny, windows, kwargs) -> None:
    with pytest.raises(EsaError):
        fault_campaign(tiny, windows, **{"injections": 3, **kwargs})


def test_empty_site_population(tiny, windows) -> None:
    with pytest.raises(EsaError, match="empty"):
        fault_campaign(tiny, windows, injections=3, sites=_sites(tiny, NORM, []))
