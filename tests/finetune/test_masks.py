from __future__ import annotations

import pytest
import torch

from esa.errors import EsaError
from esa.finetune.masks import mask_size, metric_mask, random_mask, resolve_budget, weight_params


def test_random_mask_is_k_distinct_in_range_and_seeded(lm):
    params = weight_params(lm)
    for k in (1, 37, 5000, sum(p.numel() for p in params.values()) // 2):
        mask = random_mask(params, k, seed=3)
        assert mask_size(mask) == k
        for name, idx in mask.items():
            assert idx.unique().numel() == idx.numel() and bool((idx[1:] > idx[:-1]).all())
            assert 0 <= int(idx.min()) and int(idx.max()) < params[name].numel()
        again = random_mask(params, k, seed=3)
        assert mask.keys() == again.keys() and all(torch.equal(mask[n], again[n]) for n in mask)
    assert any(not torch.equal(a, b) for a, b in zip(random_mask(params, 37, 3).values(),
                                                        random_mask(params, 37, 4).values()))


def test_random_mask_spreads_over_parameters_by_size(lm):
    params = weight_params(lm)
    total = sum(p.numel() for p in params.values())
    mask = random_mask(params, total // 10, seed=0)
    big = max(params, key=lambda n: params[n].numel())
    share = mask[big].numel() / (total // 10)
    assert abs(share - params[big].numel() / total) < 0.02


def test_metric_mask_is_the_brute_force_top_k_of_magnitude(lm, domains):
    params = weight_params(lm)
    mask = metric_mask(lm, params, "magnitude", domains[0], 50, seed=0, batch_size=2, progress=False)
    flat = torch.cat([p.detach().abs().reshape(-1) for p in params.values()])
    threshold = flat.topk(50).values[-1]
    chosen = torch.cat([params[n].detach().abs().reshape(-1)[idx] for n, idx in mask.items()])
    assert chosen.numel() == 50 and bool((chosen >= threshold).all())


@pytest.mark.parametrize("budget, budget_k, match", [
    (0.0, None, "above 0"), (1.5, None, "at most 100%"), (-0.1, None, "above 0"),
    (None, 0, "between 1"), (None, 10**9, "between 1"), (0.1, 5, "not both"),
])
def test_bad_budget(budget, budget_k, match):
    with pytest.raises(EsaError, match=match):
        resolve_budget(1000, budget, budget_k, 0.005)


def test_budget_fraction_and_count():
    assert resolve_budget(1000, 0.01, None, 0.5) == 10
    assert resolve_budget(1000, None, 7, 0.5) == 7
    assert resolve_budget(1000, None, None, 0.5) == 500
    assert resolve_budget(1000, None, None, 3) == 3
