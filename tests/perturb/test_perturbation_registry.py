"""The contract every registered perturbation keeps, plus sign_flip and zero against brute force."""

from __future__ import annotations

import pytest
import torch

from esa.errors import EsaError
from esa.perturb import PERTURBATIONS, get_perturbation
from esa.perturb.base import int_view_dtype

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
PARAMS = {"sign_flip": {"scale": 2.0}, "zero": {}, "gauss_noise": {"scale": 0.3}, "bit_flip": {"prob": 0.2}}


def test_registry_lists_the_built_ins():
    assert list(PERTURBATIONS) == ["sign_flip", "zero", "gauss_noise", "bit_flip"]
    assert set(PARAMS) == set(PERTURBATIONS)


def test_unknown_names_list_the_valid_ones():
    valid = "sign_flip, zero, gauss_noise, bit_flip"
    with pytest.raises(EsaError, match=f"unknown perturbation 'flip'; choose one of: {valid}"):
        get_perturbation("flip")


def test_objects_pass_through():
    pert = PERTURBATIONS["zero"]
    assert get_perturbation(pert) is pert


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_contract(name, dtype):
    pert = get_perturbation(name)
    v = torch.randn(50, generator=torch.Generator().manual_seed(0)).to(dtype)
    kept = v.clone()
    a, details = pert.new_values(v, torch.Generator().manual_seed(3), **PARAMS[name])
    b, _ = pert.new_values(v, torch.Generator().manual_seed(3), **PARAMS[name])
    int_dtype = int_view_dtype(dtype)
    assert a.dtype == dtype and a.shape == v.shape and a.device == v.device
    assert isinstance(details, dict)
    assert torch.equal(a.view(int_dtype), b.view(int_dtype))  # same seed, same bits
    assert torch.equal(v.view(int_dtype), kept.view(int_dtype))  # input untouched
    assert isinstance(pert.definition(pert.options(dtype, **PARAMS[name])), str)


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_none_means_not_given_and_unknown_parameters_are_named(name):
    pert = get_perturbation(name)
    assert pert.options(torch.float32, **PARAMS[name], noise=None) == pert.options(torch.float32, **PARAMS[name])
    with pytest.raises(EsaError, match=f"perturbation '{name}' does not take colour"):
        pert.options(torch.float32, colour="red")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scale", [1.0, 0.5, 3.0, 0.0])
def test_sign_flip_is_minus_scale_times_w(dtype, scale):
    v = torch.randn(100).to(dtype)
    new, _ = get_perturbation("sign_flip").new_values(v, torch.Generator(), scale=scale)
    expected = (v.double() * -scale).to(dtype)  # one rounding of the exact product
    assert torch.equal(new, expected)
    if scale == 1.0:
        assert torch.equal(new, -v)


def test_sign_flip_definitions():
    flip = get_perturbation("sign_flip")
    assert flip.definition(flip.options(torch.float32)) == "w -> -w"
    assert flip.definition(flip.options(torch.float32, scale=2)) == "w -> -2·w"


def test_zero():
    v = torch.randn(10).half()
    new, details = get_perturbation("zero").new_values(v, torch.Generator())
    assert torch.equal(new.view(torch.int16), torch.zeros(10, dtype=torch.int16)) and details == {}

