"""Our act_mag pruning equals Wanda: per-row masks identical to an independent re-implementation of
locuslab/wanda's `prune_wanda` (lib/prune.py), one-shot and sequential, on tiny-llama.

The reference follows prune_wanda's arithmetic: per linear layer of a block, scaler_row = running mean
of ‖x_j‖² over calibration samples, W_metric = |W|·sqrt(scaler_row), a stable ascending sort per row,
the first int(in·sparsity) indices zeroed (N:M: per group of M columns, topk(N, largest=False)).
Sequential: blocks in order, each block's statistics taken with the earlier blocks already pruned (here
by rerunning the whole model up to that block, not by caching block inputs as Wanda and ESA's code do).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from esa.prune import prune


def _linears(model: nn.Module, layer: int) -> dict[str, nn.Linear]:
    block = model.model.layers[layer]
    return {f"model.layers.{layer}.{n}.weight": m for n, m in block.named_modules() if isinstance(m, nn.Linear)}


def _scaler_rows(model: nn.Module, windows, subset: dict[str, nn.Linear]) -> dict[str, torch.Tensor]:
    """Wanda's WrappedGPT.add_batch: scaler_row *= n/(n+t); scaler_row += ‖x‖²/(n+t), one sample at a time."""
    rows = {n: torch.zeros(m.in_features) for n, m in subset.items()}
    count = {n: 0 for n in subset}

    def hook(name):
        def add_batch(module, inp, out):
            x = inp[0].reshape(-1, inp[0].shape[-1]).t().float()  # [in, tokens]
            tmp = 1
            rows[name] *= count[name] / (count[name] + tmp)
            count[name] += tmp
            rows[name] += torch.norm(x, p=2, dim=1) ** 2 / count[name]
        return add_batch

    handles = [m.register_forward_hook(hook(n)) for n, m in subset.items()]
    with torch.no_grad():
        for ids in windows.batches("calib", 1):
            model(input_ids=ids, use_cache=False)
    for h in handles:
        h.remove()
    return rows


def _wanda_mask(weight: torch.Tensor, scaler_row: torch.Tensor, sparsity: float, n: int, m: int) -> torch.Tensor:
    metric = weight.abs() * torch.sqrt(scaler_row.reshape(1, -1))
    mask = torch.zeros_like(metric, dtype=torch.bool)
    if n:
        for ii in range(metric.shape[1]):
            if ii % m == 0:
                tmp = metric[:, ii : ii + m].float()
                mask.scatter_(1, ii + torch.topk(tmp, n, dim=1, largest=False)[1], True)
    else:
        order = torch.sort(metric, dim=-1, stable=True)[1]
        mask.scatter_(1, order[:, : int(metric.shape[1] * sparsity)], True)
    return mask


def _reference(model: nn.Module, windows, sparsity: float, n: int, m: int, sequential: bool) -> dict[str, torch.Tensor]:
    """Masks of the reference procedure; the model is pruned in place while it runs and restored after."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    layers = len(model.model.layers)
    masks = {}
    rows = {} if sequential else _scaler_rows(model, windows, {k: v for i in range(layers) for k, v in _linears(model, i).items()})
    for i in range(layers):
        subset = _linears(model, i)
        if sequential:
            rows = _scaler_rows(model, windows, subset)
        for name, module in subset.items():
            masks[name] = _wanda_mask(module.weight.data, rows[name], sparsity, n, m)
            module.weight.data[masks[name]] = 0
    model.load_state_dict(saved)
    return masks


def _esa_masks(lm, windows, **kwargs) -> dict[str, torch.Tensor]:
    saved = {k: v.clone() for k, v in lm.model.state_dict().items()}
    result = prune(lm, windows, score="act_mag", keep=True, evaluate=False, **kwargs)
    named = dict(lm.model.named_parameters())
    masks = {n: named[n].detach() == 0 for n in result.targets}
    lm.model.load_state_dict(saved)
    return masks


@pytest.mark.parametrize("sequential", [False, True], ids=["one-shot", "sequential"])
@pytest.mark.parametrize("pattern,sparsity,n,m", [("unstructured", 0.3, 0, 0), ("2:4", None, 2, 4)])
def test_masks_equal_wanda(llama, windows, sequential, pattern, sparsity, n, m) -> None:
    ref = _reference(llama.model, windows, sparsity or 0.5, n, m, sequential)
    ours = _esa_masks(llama, windows, sparsity=sparsity, pattern=pattern, sequential=sequential)
    assert set(ours) == set(ref)
    for name in ref:
        assert torch.equal(ours[name], ref[name]), name


def test_sequential_differs_from_one_shot(llama, windows) -> None:
    """Otherwise the sequential test above could not tell the two modes apart."""
    one = _esa_masks(llama, windows, sparsity=0.5)
    seq = _esa_masks(llama, windows, sparsity=0.5, sequential=True)
    assert any(not torch.equal(one[n], seq[n]) for n in one if ".layers.1." in n)
    assert all(torch.equal(one[n], seq[n]) for n in one if ".layers.0." in n)
