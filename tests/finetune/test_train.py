from __future__ import annotations

import pytest
import torch

from esa.errors import EsaError
from esa.finetune import finetune, metric_mask, preserved
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
