"""WeightSet views against direct computation."""

from __future__ import annotations

import numpy as np
import torch

from esa.models.types import ParamInfo
from esa.ranking import WeightSet, top_k


def scores() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.rand(50, 8, generator=g),
        "model.layers.0.mlp.down_proj.weight": torch.rand(8, 16, generator=g),
        "model.norm.weight": torch.rand(8, generator=g),
        "experts": torch.rand(3, 4, 5, generator=g),
    }


def test_views_agree_with_entries():
    s = scores()
    ws = top_k(s, 60, "global")
    names = [ws.param_names[i] for i in ws.param_ids.tolist()]
    entries = list(zip(names, ws.flat_index.tolist()))
    assert ws.keys() == set(entries) and len(ws) == 60
    by_param = ws.by_param()
    assert list(by_param) == [n for n in s if n in set(names)]  # model order
    for name, idx in by_param.items():
        assert idx.tolist() == sorted(f for n, f in entries if n == name)
    assert ws.counts() == {n: idx.numel() for n, idx in by_param.items()}
    for (name, flat), score in zip(entries, ws.score.tolist()):
        assert s[name].reshape(-1)[flat].item() == score


def test_unravel_matches_numpy_for_any_rank():
    s = scores()
    ws = top_k(s, 10, "per_layer")
    params = {n: ParamInfo(n, tuple(t.shape), None, "other") for n, t in s.items()}
    for shapes in (params, s, {n: tuple(t.shape) for n, t in s.items()}):
        got = ws.unravel(shapes)
        for pid, flat, index in zip(ws.param_ids.tolist(), ws.flat_index.tolist(), got):
            name = ws.param_names[pid]
            assert index == tuple(int(i) for i in np.unravel_index(flat, s[name].shape))
            assert s[name][index].item() == s[name].reshape(-1)[flat].item()


def test_empty_selection():
    ws = WeightSet(("a",), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), torch.empty(0))
    assert len(ws) == 0 and ws.by_param() == {} and ws.keys() == set() and ws.unravel({"a": (2, 2)}) == []
