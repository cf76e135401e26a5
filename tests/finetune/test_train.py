from __future__ import annotations

import pytest
import torch

from esa.errors import EsaError
from esa.finetune import finetune, metric_mask, preserved, superweight_candidates
from esa.finetune.masks import weight_params


def _changed(before, after):
    """{name: bool tensor of changed positions} (flat)."""
    return {n: before[n].reshape(-1) != after[n].reshape(-1) for n in before}


@pytest.mark.parametrize("metric", ["grad_squared", "random"])
def test_sparse_trains_the_mask_only(bits, lm, domains, metric):
    train, retain = domains
    k = 400
    mask = metric_mask(lm, weight_params(lm), metric, train, k, seed=0, batch_size=2, progress=False)
    before = bits(lm)
    with preserved(lm):
        result = finetune(lm, train, train, superweight=None, mode="sparse", budget_k=k, mask_metric=metric, retain_windows=retain,
                          steps=4, lr=1e-2, batch_size=2)
        after = bits(lm)
    assert result.trainable == k
    in_mask = {n: torch.zeros(b.numel(), dtype=torch.bool) for n, b in before.items()}
    for n, idx in mask.items():
        in_mask[n][idx] = True
    changed = _changed(before, after)
    assert not any(bool((changed[n] & ~in_mask[n]).any()) for n in before)  # outside: bit-identical
    n_changed = sum(int(c.sum()) for c in changed.values())
    assert n_changed > k // 2  # the mask did train
    assert sum(int(i.numel()) for i, _ in result.delta.values()) == n_changed
    assert result.train_ppl_after < result.train_ppl_before


def test_sparse_optimizer_state_is_two_floats_per_masked_weight(lm, domains):
    train, _ = domains
    sizes = {}
    for k in (100, 1000, 4000):
        with preserved(lm):
            sizes[k] = finetune(lm, train, train, superweight=None, mode="sparse", budget_k=k, steps=1, batch_size=2).optimizer_state_bytes
        assert 8 * k <= sizes[k] <= 8 * k + 16  # exp_avg + exp_avg_sq in float32, plus AdamW's step counter
    with preserved(lm):
        full = finetune(lm, train, train, superweight=None, mode="full", steps=1, batch_size=2)
    assert full.optimizer_state_bytes >= 8 * full.trainable > 8 * sizes[4000]


def test_frozen_critical_weights_keep_their_bits_under_weight_decay(bits, lm, domains):
    train, retain = domains
    k = 300
    frozen = metric_mask(lm, weight_params(lm), "grad_squared", retain, k, seed=0, batch_size=2, progress=False)
    before = bits(lm)
    with preserved(lm):
        result = finetune(lm, train, train, superweight=None, mode="frozen-critical", budget_k=k, retain_windows=retain, steps=3,
                          lr=1e-2, weight_decay=0.1, batch_size=2)
        after = bits(lm)
    for n, idx in frozen.items():
        assert torch.equal(after[n].reshape(-1)[idx], before[n].reshape(-1)[idx])
    changed = sum(int(c.sum()) for c in _changed(before, after).values())
    assert changed >= result.n_weights - k - 100 and result.trainable == result.n_weights - k


def test_ewc_holds_the_protected_weights_closer(lm, domains):
    train, retain = domains
    original = {n: p.detach().clone() for n, p in lm.model.named_parameters()}

    def distance(**kw) -> float:
        with preserved(lm):
            finetune(lm, train, train, superweight=None, mode="full", retain_windows=retain, steps=4, lr=1e-2, batch_size=2, **kw)
            return sum(float((p.detach() - original[n]).square().sum()) for n, p in lm.model.named_parameters())

    assert distance(protect="ewc", protect_lambda=1e6) < 0.5 * distance()


def test_same_seed_same_weights_and_curve_and_the_model_comes_back(bits, lm, domains):
    train, retain = domains
    before = bits(lm)
    runs = []
    for _ in range(2):
        with preserved(lm):
            r = finetune(lm, train, train, superweight=None, mode="full", retain_windows=retain, steps=3, lr=1e-3, batch_size=2,
                         eval_every=1, seed=5)
            runs.append((r.curve, bits(lm)))
        assert all(torch.equal(v, before[n]) for n, v in bits(lm).items())
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 3 and all("eval_ppl" in row for row in runs[0][0])
    assert all(torch.equal(runs[0][1][n], runs[1][1][n]) for n in before)


@pytest.mark.parametrize("kw, match", [
    ({"mode": "sparse", "budget": 0.0}, "above 0"),
    ({"mode": "sparse", "budget": 1.01}, "at most 100%"),
    ({"mode": "full", "budget": 0.1}, "trains every weight"),
    ({"mode": "dense"}, "unknown fine-tuning mode"),
    ({"mode": "sparse", "mask_metric": "nope"}, "unknown mask metric"),
    ({"mode": "full", "protect": "ewc"}, "needs --retain"),
    ({"mode": "lora", "protect": "ewc"}, "LoRA never moves"),
    ({"mode": "full", "steps": 0}, "--steps"),
    ({"mode": "full", "lr": 0.0}, "--lr"),
])
def test_bad_input_is_one_error_before_work(bits, lm, domains, kw, match):
    train, _ = domains
    before = bits(lm)
    with pytest.raises(EsaError, match=match):
        finetune(lm, train, train, superweight=None, **kw)
    assert all(torch.equal(v, before[n]) for n, v in bits(lm).items())


def test_no_training_windows_is_an_error(lm, domains):
    train, _ = domains
    empty = type(train)(train.tokens, train.seq_len, (), train.eval_offsets, None, {})
    with pytest.raises(EsaError, match="no training windows"):
        finetune(lm, empty, train, mode="full")


def test_watched_weight_and_precomputed_mask_scores(lm, domains):
    train, _ = domains
    params = weight_params(lm)
    name = next(n for n in params if n.endswith("down_proj.weight"))
    scores = {n: p.detach().abs().float() for n, p in params.items()}  # the magnitude metric, by hand
    runs = []
    for kw in ({"mask_scores": scores}, {}):
        with preserved(lm):
            runs.append(finetune(lm, train, train, mode="sparse", budget_k=100, mask_metric="magnitude", steps=2,
                                 lr=1e-2, batch_size=2, superweight=(name, 7), **kw))
    assert runs[0].curve == runs[1].curve  # the same mask either way
    sw = runs[0].superweight
    assert sw["param"] == name and sw["flat_index"] == 7
    assert sw["value_before"] == float(params[name].detach().reshape(-1)[7])
    with pytest.raises(EsaError, match="not in the model"):
        finetune(lm, train, train, mode="full", superweight=("nope.weight", 0))


def test_protected_superweights_keep_their_bits_and_join_the_frozen_set(bits, lm, domains):
    train, retain = domains
    params = weight_params(lm)
    name = next(n for n in params if n.endswith("down_proj.weight"))
    pinned = [(name, 3), (name, 11), (name, 3)]  # a repeat counts once
    k = 50
    top = metric_mask(lm, params, "grad_squared", retain, k, seed=0, batch_size=2, progress=False)
    new = sum(f not in set(top.get(name, torch.empty(0)).tolist()) for f in (3, 11))
    before = bits(lm)
    for mode, kw, n_frozen in (("full", {}, 2), ("frozen-critical", {"budget_k": k}, k + new)):
        with preserved(lm):
            result = finetune(lm, train, train, superweight=None, mode=mode, retain_windows=retain, steps=2, lr=1e-2,
                              batch_size=2, protect_superweights=pinned, **kw)
            after = bits(lm)
        flat_before, flat_after = before[name].reshape(-1), after[name].reshape(-1)
        assert torch.equal(flat_after[[3, 11]], flat_before[[3, 11]])
        assert bool((flat_after != flat_before).any())  # the rest of the parameter trained
        assert result.n_frozen == n_frozen and result.trainable == result.n_weights - n_frozen
        assert len(result.protocol["protected_superweights"]) == 3


@pytest.mark.parametrize("mode, pinned, match", [
    ("sparse", [("model.layers.0.mlp.down_proj.weight", 0)], "is not one of them"),
    ("full", [("nope.weight", 0)], "not a weight of the model"),
    ("full", [("model.layers.0.mlp.down_proj.weight", 10**9)], "not a weight of the model"),
])
def test_protect_superweights_bad_input(lm, domains, mode, pinned, match):
    train, _ = domains
    with pytest.raises(EsaError, match=match):
        finetune(lm, train, train, superweight=None, mode=mode, protect_superweights=pinned)


def test_superweight_candidates_are_weights_of_the_model(lm):
    params = weight_params(lm)
    found = superweight_candidates(lm)
    assert found == superweight_candidates(lm)  # deterministic
    assert all(n in params and 0 <= f < params[n].numel() for n, f in found)
