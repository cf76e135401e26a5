"""Fingerprints: strict JSON, and the three tamper cases found with the exact weights named."""

from __future__ import annotations

import json

import pytest
import torch

import esa
from esa.errors import EsaError
from esa.security import Fingerprint, fingerprint, verify

DOWN = "model.layers.1.mlp.down_proj.weight"
EMBED = "model.embed_tokens.weight"


@pytest.fixture(scope="module")
def reference():
    return esa.load_model("tiny-llama")


@pytest.fixture(scope="module")
def fp(tiny, windows) -> Fingerprint:
    return fingerprint(tiny, metric="grad_x_weight", k=30, windows=windows)


def test_round_trip_and_intact(tiny, fp, reference) -> None:
    again = Fingerprint.from_json(fp.to_json())
    assert again == fp
    res = verify(tiny, again, reference=reference)
    assert res.intact and res.changed == [] and res.weights == []
    assert fp.critical["k"] == 30 and [w["rank"] for w in fp.critical["weights"]] == list(range(1, 31))


def test_one_ulp_is_found_exactly(tiny, fp, reference, helpers) -> None:
    def ulp(p: torch.Tensor) -> None:
        p.view(-1).view(torch.int32)[77] += 1

    with helpers.tampered(tiny, DOWN, ulp):
        alone = verify(tiny, fp)
        exact = verify(tiny, fp, reference=reference)
    assert not alone.intact and [c.param for c in alone.changed] == [DOWN] and alone.changed[0].n_changed is None
    assert [c.n_changed for c in exact.changed] == [1]
    (w,) = exact.weights
    cols = tiny.params[DOWN].shape[1]
    assert (w.param, w.index) == (DOWN, (77 // cols, 77 % cols)) and w.new != w.old


def test_a_changed_critical_weight_is_named_without_a_reference(tiny, fp, helpers) -> None:
    top = fp.critical["weights"][0]

    def ulp(p: torch.Tensor) -> None:
        p.view(-1).view(torch.int32)[top["flat"]] += 1

    with helpers.tampered(tiny, top["param"], ulp):
        res = verify(tiny, fp)
    (w,) = res.weights
    assert (w.param, list(w.index), w.critical_rank, w.old) == (top["param"], top["index"], 1, top["value"])
    assert res.changed[0].n_critical_changed == 1


def test_an_embedding_row_replaced(tiny, fp, reference, helpers) -> None:
    def replace(p: torch.Tensor) -> None:
        p[65] = p[66]

    with helpers.tampered(tiny, EMBED, replace):
        res = verify(tiny, fp, reference=reference)
    hidden = tiny.params[EMBED].shape[1]
    assert [c.param for c in res.changed] == [EMBED] and res.changed[0].n_changed == hidden
    assert sorted(w.index for w in res.weights) == [(65, j) for j in range(hidden)]


def test_a_rank_one_edit(tiny, fp, reference, helpers) -> None:
    shape = tiny.params[DOWN].shape
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(shape[0], 1, generator=g), torch.randn(1, shape[1], generator=g)
    before = dict(reference.model.named_parameters())[DOWN].detach()
    expected = torch.nonzero((before + 0.01 * u @ v).view(torch.int32) != before.view(torch.int32)).tolist()

    def edit(p: torch.Tensor) -> None:
        p += 0.01 * u @ v

    with helpers.tampered(tiny, DOWN, edit):
        res = verify(tiny, fp, reference=reference, max_listed=len(expected))
    assert [c.param for c in res.changed] == [DOWN] and res.changed[0].n_changed == len(expected)
    assert sorted(list(w.index) for w in res.weights) == sorted(expected)


def test_another_model_is_refused(fp) -> None:
    other = esa.load_model("tiny-mistral")
    with pytest.raises(EsaError, match="another model"):
        verify(other, fp)


def test_a_reference_that_is_not_the_original_is_refused(tiny, fp, reference, helpers) -> None:
    def ulp(p: torch.Tensor) -> None:
        p.view(-1).view(torch.int32)[5] += 1

    with helpers.tampered(tiny, DOWN, ulp), helpers.tampered(reference, DOWN, ulp):
        with pytest.raises(EsaError, match="reference"):
            verify(tiny, fp, reference=reference)


def test_corrupted_fingerprints_are_refused(fp) -> None:
    text = fp.to_json()
    data = json.loads(text)
    name = next(iter(data["hashes"]))
    data["hashes"][name] = "0" * 64
    cases = [text[: len(text) // 2], "[]", json.dumps(data), text.replace('"version": 1', '"version": 2')]
    missing = json.loads(text)
    del missing["critical"]
    cases.append(json.dumps(missing))
    for case in cases:
        with pytest.raises(EsaError):
            Fingerprint.from_json(case)


def test_fingerprint_needs_data_or_a_selection(tiny) -> None:
    with pytest.raises(EsaError):
        fingerprint(tiny, metric="grad_x_weight", k=10)
