"""gauss_noise: the noise has the documented scale, and the tensor std is the brute-force one."""

from __future__ import annotations

import pytest
import torch

import esa.perturb.gauss_noise as gauss_module
from esa.errors import EsaError
from esa.perturb import get_perturbation, tensor_std

gauss = get_perturbation("gauss_noise")
N = 20_000


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_relative_noise_statistics(dtype):
    w = torch.randn(N, generator=torch.Generator().manual_seed(0)).to(dtype)
    w = w[w != 0]
    new, details = gauss.new_values(w, torch.Generator().manual_seed(1), scale=0.5)
    assert new.dtype == dtype and details == {}
    z = (new.double() - w.double()) / w.double().abs()  # should be 0.5·N(0,1), up to rounding
    assert abs(float(z.mean())) < 5 * 0.5 / N**0.5
    assert float(z.std()) == pytest.approx(0.5, rel=0.03)


def test_std_referenced_noise_statistics():
    tensor = 3.0 * torch.randn(100, 100, generator=torch.Generator().manual_seed(0))
    w = tensor.reshape(-1)[:5000]
    new, details = gauss.new_values(w, torch.Generator().manual_seed(1), tensor=tensor, scale=0.2, noise_ref="std")
    assert details["std"] == pytest.approx(float(tensor.double().std()), rel=1e-12)
    z = (new.double() - w.double()) / details["std"]
    assert float(z.std()) == pytest.approx(0.2, rel=0.05)
    assert abs(float(z.mean())) < 5 * 0.2 / 5000**0.5


def test_zero_scale_changes_nothing():
    w = torch.randn(100).bfloat16()
    new, _ = gauss.new_values(w, torch.Generator(), scale=0.0)
    assert torch.equal(new.view(torch.int16), w.view(torch.int16))


def test_definitions_are_the_formula():
    assert gauss.definition(gauss.options(torch.float32, scale=0.1)) == "w -> w + 0.1·|w|·N(0,1)"
    text = gauss.definition(gauss.options(torch.float32, scale=0.1, noise_ref="std"))
    assert text.startswith("w -> w + 0.1·std(W)·N(0,1)") and "whole parameter tensor" in text


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_tensor_std_is_torch_std_in_chunks(n, dtype, monkeypatch):
    monkeypatch.setattr(gauss_module, "CHUNK", 64)
    t = (torch.randn(n, generator=torch.Generator().manual_seed(n)) + 5.0).to(dtype)
    expected = float(t.double().std()) if n > 1 else 0.0
    assert tensor_std(t) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"noise_ref": "rms"}, "noise_ref must be one of abs, std"),
        ({"scale": -0.1}, "scale must be a finite number >= 0"),
        ({"scale": float("nan")}, "scale must be a finite number >= 0"),
        ({"prob": 0.1}, "does not take prob"),
    ],
)
def test_invalid_options(params, message):
    with pytest.raises(EsaError, match=message):
        gauss.new_values(torch.ones(3), torch.Generator(), **params)
