"""prune(): restores the model bit-exactly, counts sparsity from the weights, handles Conv1D and fused
experts, protects what it is told to, rejects bad input before any work, saves a loadable model."""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from esa.errors import EsaError
from esa.models import load_model
from esa.prune import find_targets, prune, pruning_provenance, save_pruned_model, weight_scores
from esa.ranking import top_k

from .conftest import checksums, random_windows

prune_module = importlib.import_module("esa.prune.prune")  # the module, not the function esa.prune exports


@pytest.mark.parametrize("kwargs", [
    dict(score="magnitude", sparsity=0.5),
    dict(score="act_mag", pattern="2:4", sequential=True),
    dict(score="sparsegpt", sparsity=0.6),
    dict(score="sparsegpt", pattern="4:8", sequential=True, group="row"),
    dict(score="grad_x_weight", sparsity=0.4, group="global"),
], ids=["magnitude", "wanda-seq-2:4", "sparsegpt", "sparsegpt-seq-4:8", "gradxw-global"])
def test_model_restored_bit_exactly(llama, windows, kwargs) -> None:
    before = checksums(llama.model)
    result = prune(llama, windows, **kwargs)
    assert checksums(llama.model) == before
    assert result.ppl is not None and result.bits_per_byte > 0
    assert result.mode == ("sequential" if kwargs.get("sequential") else "one-shot")
    assert abs(result.achieved_sparsity - result.sparsity) < 0.01
    assert result.per_tensor and all(abs(v - result.sparsity) < 0.02 for v in result.per_tensor.values()) \
        or kwargs.get("group") == "global"


def test_sparsity_is_counted_from_the_weights(llama, windows) -> None:
    saved = {k: v.clone() for k, v in llama.model.state_dict().items()}
    try:
        result = prune(llama, windows, score="sparsegpt", sparsity=0.5, keep=True, evaluate=False)
        named = dict(llama.model.named_parameters())
        zeros = sum(int((named[n] == 0).sum()) for n in result.targets)
        assert result.n_zero == zeros and result.achieved_sparsity == zeros / result.n_weights
        changed = [n for n in result.targets if not torch.equal(named[n][named[n] != 0], saved[n][named[n] != 0])]
        assert changed  # SparseGPT rewrote the weights it kept
    finally:
        llama.model.load_state_dict(saved)


def test_default_targets_are_block_linears(llama) -> None:
    names = [t.name for t in find_targets(llama)]
    assert len(names) == 14 and all(".layers." in n for n in names)
    assert not any("norm" in n or "embed" in n or "lm_head" in n for n in names)
    only_mlp = [t.name for t in find_targets(llama, exclude=["self_attn"])]
    assert len(only_mlp) == 6
    assert [t.name for t in find_targets(llama, include=["lm_head"])] == ["lm_head.weight"]


def test_conv1d_rows_are_output_rows(gpt2) -> None:
    ws = random_windows()
    targets = {t.name: t for t in find_targets(gpt2)}
    assert any(t.transposed for t in targets.values())
    for score in ("act_mag", "sparsegpt"):
        saved = {k: v.clone() for k, v in gpt2.model.state_dict().items()}
        result = prune(gpt2, ws, score=score, sparsity=0.25, keep=True, evaluate=False)
        named = dict(gpt2.model.named_parameters())
        for name, t in targets.items():
            rows = t.matrix(named[name].detach())  # [out, in]
            assert (rows == 0).sum(1).eq(int(t.n_in * 0.25)).all(), (score, name)
        gpt2.model.load_state_dict(saved)
        assert result.achieved_sparsity == pytest.approx(0.25, abs=1e-3)


def test_fused_experts_pruned_where_the_score_reaches(windows) -> None:
    lm = load_model("tiny-mixtral")
    fused = [t.name for t in find_targets(lm) if t.info.component == "expert"]
    assert fused
    before = checksums(lm.model)
    mag = prune(lm, windows, score="magnitude", sparsity=0.5)
    assert all(mag.per_tensor[n] == 0.5 for n in fused)
    wanda = prune(lm, windows, score="act_mag", sparsity=0.5)
    assert all(wanda.per_tensor[n] == 0 for n in fused) and any("left dense" in n for n in wanda.notes)
    assert checksums(lm.model) == before


def test_protected_weights_are_never_pruned(llama, windows) -> None:
    saved = {k: v.clone() for k, v in llama.model.state_dict().items()}
    names = [t.name for t in find_targets(llama)]
    mag = {n: p.detach().abs() for n, p in llama.model.named_parameters() if n in names}
    lowest = top_k(mag, 20, "global", largest=False).by_param()  # the weights magnitude prunes first
    name, flat = next(iter(lowest.items()))
    try:
        result = prune(llama, windows, score="magnitude", sparsity=0.5, protect_topk=20, protect_metric="act_mag",
                       protect_superweights=[(name, int(flat[0]))], keep=True, evaluate=False)
        named = dict(llama.model.named_parameters())
        assert named[name].detach().reshape(-1)[flat[0]] != 0
        act, _ = weight_scores(llama, windows, "act_mag", names, seed=0, batch_size=1)
        for n, idx in top_k(act, 20, "global").by_param().items():
            assert (named[n].detach().reshape(-1)[idx] != 0).all()
        assert result.n_protected in (20, 21)  # 21 unless the extra position is also in the act_mag top 20
    finally:
        llama.model.load_state_dict(saved)


@pytest.mark.parametrize("kwargs,match", [
    (dict(score="act_mag", sparsity=0.0), "strictly between"),
    (dict(score="act_mag", sparsity=1.0), "strictly between"),
    (dict(score="act_mag", pattern="4:4"), "0 < N < M"),
    (dict(score="act_mag", pattern="3:5"), "multiple of M=5"),
    (dict(score="act_mag", sparsity=0.5, protect_topk=10**6), "protecting"),
    (dict(score="nope", sparsity=0.5), "unknown score"),
    (dict(score="act_mag", sparsity=0.5, group="global", sequential=True), "globally"),
    (dict(score="sparsegpt", sparsity=0.5, group="global"), "sparsegpt"),
    (dict(score="act_mag", pattern="2:4", group="tensor"), "group 'row'"),
], ids=["s=0", "s=1", "N>=M", "group-too-small", "protect-too-many", "score", "seq-global", "sgpt-global", "nm-tensor"])
def test_bad_input_raises_before_work(llama, windows, monkeypatch, kwargs, match) -> None:
    def no_work(*args, **kw):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(prune_module, "weight_scores", no_work)
    monkeypatch.setattr(prune_module, "input_hessians", no_work)
    before = checksums(llama.model)
    with pytest.raises(EsaError, match=match):
        prune(llama, windows, **kwargs)
    assert checksums(llama.model) == before


def test_same_seed_same_result(llama, windows) -> None:
    a = prune(llama, windows, score="esa", sparsity=0.5, seed=3)
    b = prune(llama, windows, score="esa", sparsity=0.5, seed=3)
    assert a.ppl == b.ppl and a.per_tensor == b.per_tensor


def test_saved_model_loads_with_plain_transformers(llama, windows, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    saved = {k: v.clone() for k, v in llama.model.state_dict().items()}
    try:
        result = prune(llama, windows, score="act_mag", pattern="2:4", keep=True)
        path = save_pruned_model(llama, result, tmp_path / "pruned")
        (path / "pruning.json").write_text(json.dumps(pruning_provenance(llama, result, windows, "test")))
        loaded = AutoModelForCausalLM.from_pretrained(path)
        for name in result.targets:
            assert torch.equal(loaded.get_parameter(name), llama.model.get_parameter(name))
        assert json.loads((path / "pruning.json").read_text())["pattern"] == "2:4"
        assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    finally:
        llama.model.load_state_dict(saved)
    with pytest.raises(EsaError, match="keep=True"):
        save_pruned_model(llama, prune(llama, windows, score="magnitude", sparsity=0.5), tmp_path / "dense")


def test_failure_midway_restores_even_when_keeping(llama, windows, monkeypatch) -> None:
    calls = {"n": 0}
    real = prune_module.sparsegpt_layer

    def fail_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(prune_module, "sparsegpt_layer", fail_on_third)
    before = checksums(llama.model)
    for keep in (False, True):
        calls["n"] = 0
        with pytest.raises(RuntimeError, match="boom"):
            prune(llama, windows, score="sparsegpt", sparsity=0.5, keep=keep)
        assert checksums(llama.model) == before
    with pytest.raises(RuntimeError, match="boom"):
        calls["n"] = 0
        prune(llama, windows, score="magnitude", sparsity=0.5, keep=True, tasks=lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert checksums(llama.model) == before



def test_esa_allocates_per_tensor_sparsity_from_the_fisher(llama, windows) -> None:
    """esa = Wanda's order inside rows, each tensor's share from allocate_sparsity on F·W²: recomputed
    independently here from the dense model's act_mag and grad_squared, the pruned weights are exactly
    those; the budget is uniform pruning's and every tensor stays within s ± spread."""
    from esa.prune import allocate_sparsity

    targets = {t.name: t for t in find_targets(llama)}
    named = dict(llama.model.named_parameters())
    act, _ = weight_scores(llama, windows, "act_mag", list(targets), seed=0, batch_size=1)
    fisher, _ = weight_scores(llama, windows, "grad_squared", list(targets), seed=0, batch_size=1)
    mats = {n: t.matrix(act[n]) for n, t in targets.items()}
    sal = {n: t.matrix(fisher[n]) * t.matrix(named[n].detach()).float().square() for n, t in targets.items()}
    shares = allocate_sparsity(mats, sal, 0.5, spread=0.2)
    expected = {}
    for n, m in mats.items():
        k = round(shares[n] * m.shape[1])
        order = torch.sort(m, dim=-1, stable=True).indices[:, :k]
        expected[n] = torch.zeros_like(m, dtype=torch.bool).scatter_(1, order, True)
    saved = {k: v.clone() for k, v in llama.model.state_dict().items()}
    try:
        result = prune(llama, windows, score="esa", sparsity=0.5, spread=0.2, keep=True, evaluate=False)
        assert result.allocation["by"] == "grad_squared" and result.allocation["sparsity"] == shares
        widths = {n: m.shape[1] for n, m in mats.items()}
        assert all(int(0.3 * widths[n]) <= round(f * widths[n]) <= int(0.7 * widths[n]) for n, f in shares.items())
        assert len(set(shares.values())) > 1
        for n, t in targets.items():
            assert torch.equal(t.matrix(named[n].detach()) == 0, expected[n]), n
        pruned = sum(int(m.sum()) for m in expected.values())
        assert 0 <= pruned - int(0.5 * result.n_weights) < max(m.shape[0] for m in mats.values())
    finally:
        llama.model.load_state_dict(saved)


@pytest.mark.parametrize("kwargs,match", [
    (dict(score="act_mag", sparsity=0.5, allocate_by="magnitude"), "curvature metric"),
    (dict(score="act_mag", pattern="2:4", allocate_by="grad_squared"), "unstructured"),
    (dict(score="act_mag", sparsity=0.5, group="tensor", allocate_by="grad_squared"), "unstructured"),
    (dict(score="esa", sparsity=0.5, spread=1.5), "spread"),
    (dict(score="act_mag", sparsity=0.5, spread=1.0), "spread"),
], ids=["not-curvature", "n:m", "tensor-group", "spread", "spread-without-allocation"])
def test_bad_allocation_is_refused_before_work(llama, windows, monkeypatch, kwargs, match) -> None:
    monkeypatch.setattr(prune_module, "weight_scores", lambda *a, **k: (_ for _ in ()).throw(AssertionError("work")))
    with pytest.raises(EsaError, match=match):
        prune(llama, windows, **kwargs)


def test_esa_on_n_m_is_wandas_order(llama, windows) -> None:
    a = prune(llama, windows, score="esa", pattern="2:4")
    b = prune(llama, windows, score="act_mag", pattern="2:4")
    assert a.allocation is None and a.ppl == b.ppl and a.per_tensor == b.per_tensor


def test_sparsegpt_at_allocated_shares(llama, windows) -> None:
    """SparseGPT with --allocate-by: each tensor pruned by SparseGPT at its own share; model restored."""
    before = checksums(llama.model)
    r = prune(llama, windows, score="sparsegpt", sparsity=0.5, allocate_by="grad_squared", spread=0.2)
    assert checksums(llama.model) == before
    shares = r.allocation["sparsity"]
    assert r.allocation["by"] == "grad_squared" and len(set(shares.values())) > 1
    for name, share in shares.items():  # SparseGPT's per-block counts may floor one weight per row lower
        n_in = next(t.n_in for t in find_targets(llama) if t.name == name)
        assert share - 1.0 / n_in - 1e-9 <= r.per_tensor[name] <= share + 1e-9, name
