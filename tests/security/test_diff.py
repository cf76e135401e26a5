"""Model diff: a rank-1 edit of one MLP down-projection is the top-ranked tensor, counted and measured exactly."""

from __future__ import annotations

import pytest
import torch

import esa
from esa.errors import EsaError
from esa.security import diff_models

DOWN = "model.layers.0.mlp.down_proj.weight"


@pytest.fixture(scope="module")
def suspect():
    return esa.load_model("tiny-llama")


def test_rank_one_edit_ranks_first(tiny, suspect, windows, helpers) -> None:
    shape = tiny.params[DOWN].shape
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(shape[0], 1, generator=g), torch.randn(1, shape[1], generator=g)
    base = dict(tiny.model.named_parameters())[DOWN].detach()
    delta = 0.2 * base.norm() * (u @ v) / (u.norm() * v.norm())
    edited = base + delta
    n_expected = int((edited.view(torch.int32) != base.view(torch.int32)).sum())

    def edit(p: torch.Tensor) -> None:
        p += delta

    with helpers.tampered(suspect, DOWN, edit):
        res = diff_models(tiny, suspect, windows=windows, k=50)
    top = res.tensors[0]
    assert top.param == DOWN and top.n_changed == n_expected and res.n_changed_tensors == 1
    assert top.change_norm == pytest.approx(float((edited - base).norm()), rel=1e-5)
    assert top.relative_change == pytest.approx(0.2, rel=1e-3)
    assert all(t.n_changed == 0 for t in res.tensors[1:])
    assert sum(p.base_share for p in res.profile) == pytest.approx(1.0)
    assert DOWN in res.flagged


def test_identical_models_have_no_changes(tiny, suspect, windows) -> None:
    res = diff_models(tiny, suspect, windows=windows, metric="magnitude", k=20)
    assert res.n_changed_tensors == 0 and res.n_changed_weights == 0
    assert all(t.shift == 0.0 for t in res.tensors)


def test_different_architectures_are_refused(tiny, windows) -> None:
    with pytest.raises(EsaError):
        diff_models(tiny, esa.load_model("tiny-phi3"), windows=windows)
