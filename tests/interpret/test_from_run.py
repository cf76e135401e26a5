import json

import pandas as pd
import pytest

from esa.errors import EsaError
from esa.interpret import run_selection


def _write_run(path, rows, candidates):
    path.mkdir()
    if rows is not None:
        pd.DataFrame(rows).to_csv(path / "top_weights.csv", index=False)
    if candidates is not None:
        (path / "superweights.json").write_text(json.dumps({"candidates": candidates}))


ROWS = [{"seed": 1, "rank": 2, "param": "p.b", "index": "0,1", "score": 2.0},
        {"seed": 1, "rank": 1, "param": "p.a", "index": "3,4", "score": 5.0},
        {"seed": 2, "rank": 1, "param": "p.c", "index": "0,0", "score": 9.0}]


def test_top_k_first_seed_in_rank_order_then_super_weights(tmp_path):
    cands = [{"param": "p.a", "index": "3,4", "verdict": "super weight"},
             {"param": "p.s", "index": "7,8", "is_super_weight": True},
             {"param": "p.n", "index": "1,1", "verdict": "not a super weight: ..."}]
    _write_run(tmp_path / "run", ROWS, cands)
    sel = run_selection(tmp_path / "run")
    assert [(w.param, w.index, w.source) for w in sel] == [
        ("p.a", (3, 4), "top-k + super weight"), ("p.b", (0, 1), "top-k"), ("p.s", (7, 8), "super weight")]
    assert sel[0].score == 5.0 and sel[2].score is None
    assert [w.param for w in run_selection(tmp_path / "run", top=1, superweights=False)] == ["p.a"]


def test_run_without_selected_weights(tmp_path):
    _write_run(tmp_path / "run", None, [{"param": "p.n", "index": "1,1", "verdict": "not a super weight"}])
    with pytest.raises(EsaError, match="has no selected weights"):
        run_selection(tmp_path / "run")
    with pytest.raises(EsaError, match="not a directory"):
        run_selection(tmp_path / "missing")
