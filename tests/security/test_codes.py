"""Integer-code faults: the flipped code's exact value (independent RTN reference), restore, kept weights, bad input."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest
import torch

from esa.errors import EsaError
from esa.quantize import quantize
from esa.ranking import WeightSet
from esa.security import CodeSpace, CodeTensor, fault_campaign, quantized_codes

faults_module = importlib.import_module("esa.security.faults")
NORM = "model.layers.0.input_layernorm.weight"
GROUP = 16


def reference_grid(w: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unsigned codes u [out, in] and per-weight scale s and zero z of RTN, in float32 numpy:
    w' = s (u - z); a symmetric code q is stored as u = q + 2^(b-1)."""
    out, n_in = w.shape
    g = w.reshape(out, n_in // GROUP, GROUP)
    lo, hi = np.minimum(g.min(-1), np.float32(0)), np.maximum(g.max(-1), np.float32(0))
    if symmetric:
        s = np.maximum(-lo, hi) / np.float32(2 ** (bits - 1) - 1)
    else:
        s = (hi - lo) / np.float32(2**bits - 1)
    s = np.where(s > 0, s, np.float32(1))[..., None]
    if symmetric:
        z = np.full_like(s, 2 ** (bits - 1))
        u = np.clip(np.round(g / s), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) + z
    else:
        z = np.round(-lo[..., None] / s)
        u = np.clip(np.round(g / s) + z, 0, 2**bits - 1)
    expand = (out, n_in)
    return (u.reshape(expand).astype(np.int64), np.broadcast_to(s, g.shape).reshape(expand),
            np.broadcast_to(z, g.shape).reshape(expand))


def stored(value: np.float32, dtype: torch.dtype) -> int:
    """The stored bits of a float32 value rounded once to `dtype`."""
    from esa.perturb.base import int_view_dtype

    return int(torch.tensor([value], dtype=torch.float32).to(dtype).view(int_view_dtype(dtype))[0])


@pytest.mark.parametrize("model,symmetric", [("tiny_bf16", False), ("tiny", True)])
def test_a_code_fault_writes_exactly_the_flipped_codes_value(model, symmetric, request, windows, helpers,
                                                             monkeypatch) -> None:
    """Brute force: bit i of code u flipped gives s ((u ^ 2^i) - z) in the weight, nothing else changes,
    and every trial starts from the quantized model (the previous one was restored)."""
    lm = request.getfixturevalue(model)
    original = helpers.model_bits(lm)
    seen: list[dict[str, torch.Tensor]] = []
    real = faults_module.evaluate

    def spy(*args, **kwargs):
        seen.append(helpers.model_bits(lm))
        return real(*args, **kwargs)

    monkeypatch.setattr(faults_module, "evaluate", spy)
    with quantized_codes(lm, windows, bits=4, group_size=GROUP, symmetric=symmetric) as (_, codes):
        res = fault_campaign(lm, windows, injections=24, codes=codes, seed=5)
    assert helpers.same_bits(lm, original)
    quantized, dtype = seen[0], next(lm.model.parameters()).dtype
    assert {f.bit for t in res.trials for f in t.faults} <= {0, 1, 2, 3}
    for trial, during in zip(res.trials, seen[1:], strict=True):
        (f,) = trial.faults
        changed = {(n, tuple(i)) for n in during for i in (during[n] != quantized[n]).nonzero().tolist()}
        assert changed == {(f.param, f.index)}
        w = original[f.param].view(dtype).float().numpy()
        u, s, z = reference_grid(w, 4, symmetric)
        r, c = f.index
        assert int(quantized[f.param][r, c]) == stored(s[r, c] * (np.float32(u[r, c]) - z[r, c]), dtype)
        assert (f.code, f.new_code) == (u[r, c], u[r, c] ^ (1 << f.bit))
        expected = stored(s[r, c] * (np.float32(u[r, c] ^ (1 << f.bit)) - z[r, c]), dtype)
        assert int(during[f.param][r, c]) == expected
        assert f.bit_class == "code" and f.new == float(torch.tensor([expected], dtype=during[f.param].dtype).view(dtype))


def test_kept_weights_are_not_code_sites(tiny, windows, helpers) -> None:
    saved = helpers.model_bits(tiny)
    with quantized_codes(tiny, windows, bits=3, group_size=GROUP, keep_topk=4, keep_metric="magnitude") as (quant, codes):
        assert len(codes.kept) == quant.n_kept == 4
        res = fault_campaign(tiny, windows, injections=2, codes=codes)
        assert res.population_size == sum(t.codes.numel() for t in codes.tensors.values()) - 4
        assert "minus 4 kept" in res.population and res.bit_positions == [0, 1, 2]
        kept = sorted((s.param, s.flat) for s in codes.kept)
        names = tuple(tiny.params)
        others = [(kept[0][0], f) for f in range(3) if (kept[0][0], f) not in kept][:2]
        chosen = kept + others
        sites = WeightSet(names, torch.tensor([names.index(p) for p, _ in chosen]),
                          torch.tensor([f for _, f in chosen]), torch.ones(len(chosen)))
        res = fault_campaign(tiny, windows, injections=8, codes=codes, sites=sites)
        assert res.population_size == 2
        assert {(f.param, f.index) for t in res.trials for f in t.faults} <= {(p, divmod(f, tiny.params[p].shape[1]))
                                                                            for p, f in others}
        only_kept = WeightSet(names, sites.param_ids[:4], sites.flat_index[:4], torch.ones(4))
        with pytest.raises(EsaError, match="empty"):
            fault_campaign(tiny, windows, injections=2, codes=codes, sites=only_kept)
    assert helpers.same_bits(tiny, saved)


def test_same_seed_gives_identical_results(tiny, windows) -> None:
    def run() -> tuple[object, str]:
        with quantized_codes(tiny, windows, bits=4, group_size=GROUP) as (_, codes):
            res = fault_campaign(tiny, windows, injections=8, faults_per_trial=2, codes=codes, seed=7)
        return res.table(), json.dumps({k: v for k, v in res.to_dict().items() if k != "timing"})

    (table_a, doc_a), (table_b, doc_b) = run(), run()
    assert table_a.equals(table_b) and doc_a == doc_b
    assert {"code", "new_code"} <= set(table_a.columns)
    assert "code" not in fault_campaign(tiny, windows, injections=2).table().columns  # float campaigns unchanged


def test_gptq_codes_are_a_code_space_too(tiny, windows, helpers) -> None:
    """GPTQ's codes and grids describe its weights exactly (checked when the space is built)."""
    saved = helpers.model_bits(tiny)
    with quantized_codes(tiny, windows, bits=4, group_size=GROUP, method="gptq") as (_, codes):
        res = fault_campaign(tiny, windows, injections=3, codes=codes, bits=3)
    assert helpers.same_bits(tiny, saved) and {f.bit for t in res.trials for f in t.faults} == {3}
    assert all(abs(f.new_code - f.code) == 8 for t in res.trials for f in t.faults)
    assert all(math.isfinite(f.new) for t in res.trials for f in t.faults)


def test_cell_follows_the_matrix_layout() -> None:
    """Linear [out, in], fused experts [E, out, in] and GPT-2's Conv1D [in, out] (seen transposed)."""
    for shape, transposed in (((6, 4), False), ((2, 3, 4), False), ((4, 6), True)):
        param = torch.arange(math.prod(shape)).reshape(shape)
        matrix = param.T if transposed else param.reshape(-1, shape[-1])
        t = CodeTensor(torch.zeros(matrix.shape, dtype=torch.uint8), torch.ones(matrix.shape[0], 1),
                       torch.zeros(matrix.shape[0], 1), 4, 0, shape, transposed)
        assert all(int(matrix[t.cell(f)]) == f for f in range(param.numel()))


@pytest.mark.parametrize("kwargs,words", [
    ({"bits": 4}, "outside the 4-bit codes"),
    ({"bits": "exponent"}, "no 'exponent' bits"),
    ({"params": [NORM]}, "no integer codes"),
])
def test_bad_input(tiny, windows, kwargs, words) -> None:
    with quantized_codes(tiny, windows, bits=4, group_size=GROUP) as (_, codes):
        with pytest.raises(EsaError, match=words):
            fault_campaign(tiny, windows, injections=2, codes=codes, **kwargs)


def test_given_sites_outside_the_codes_are_refused(tiny, windows) -> None:
    names = tuple(tiny.params)
    sites = WeightSet(names, torch.tensor([names.index(NORM)]), torch.tensor([0]), torch.ones(1))
    with quantized_codes(tiny, windows, bits=4, group_size=GROUP) as (_, codes):
        with pytest.raises(EsaError, match="no integer codes"):
            fault_campaign(tiny, windows, injections=2, codes=codes, sites=sites)


def test_codes_must_describe_the_model_now(tiny, windows, helpers) -> None:
    saved = helpers.model_bits(tiny)
    with quantized_codes(tiny, windows, bits=4, group_size=GROUP) as (_, codes):
        pass
    with pytest.raises(EsaError, match="no longer holds"):
        fault_campaign(tiny, windows, injections=1, codes=codes)
    restored = quantize(tiny, windows, bits=4, group_size=GROUP)
    with pytest.raises(EsaError, match="keep_quantized"):
        CodeSpace.from_quantized(tiny, restored)
    with pytest.raises(EsaError, match="not supported"):
        with quantized_codes(tiny, windows, bits=7, group_size=GROUP):
            pass
    assert helpers.same_bits(tiny, saved)
