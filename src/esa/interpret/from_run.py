"""The edge: a selection (and score tensors) read from a run directory, never written to.

Default selection: the first seed's rows of top_weights.csv (rank order, scores kept) followed by every
candidate of superweights.json marked a super weight; a weight in both keeps its top-k row and is
labelled "top-k + super weight".
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from esa.analysis.superweights import SUPER
from esa.artifacts.schema import IS_SUPER_WEIGHT, SUPERWEIGHTS, TOP_WEIGHTS, parse_index, score_file
from esa.errors import EsaError
from esa.interpret.selection import SelectedWeight


def run_selection(run_dir: str | Path, top: int | None = None, superweights: bool = True) -> list[SelectedWeight]:
    """The run's top-`top` weights (all when None) and its super weights; EsaError when there are none."""
    run = Path(run_dir)
    if not run.is_dir():
        raise EsaError(f"{run} is not a directory; give an esa run directory")
    chosen: dict[tuple[str, tuple[int, ...]], SelectedWeight] = {}
    csv = run / TOP_WEIGHTS
    if csv.is_file():
        table = pd.read_csv(csv, keep_default_na=False)
        if len(table):
            table = table[table["seed"] == table["seed"].iloc[0]].sort_values("rank")
            for row in table.head(top if top is not None else len(table)).itertuples():
                w = SelectedWeight(str(row.param), parse_index(str(row.index)), float(row.score), "top-k")
                chosen.setdefault((w.param, w.index), w)
    sw = run / SUPERWEIGHTS
    if superweights and sw.is_file():
        for cand in json.loads(sw.read_text()).get("candidates", []):
            if not (cand.get(IS_SUPER_WEIGHT) or cand.get("verdict") == SUPER):
                continue
            key = (str(cand["param"]), parse_index(str(cand["index"])))
            old = chosen.get(key)
            chosen[key] = SelectedWeight(*key, old.score if old else None,
                                         "top-k + super weight" if old else "super weight")
    if not chosen:
        raise EsaError(f"{run} has no selected weights (no rows in {TOP_WEIGHTS}, no super weight in {SUPERWEIGHTS}); "
                       "run `esa run` or `esa superweights` there first, or give --model with --weight")
    return list(chosen.values())


def run_scores(run_dir: str | Path) -> dict[str, torch.Tensor] | None:
    """The first seed's saved score tensors (`esa run --save-scores`), or None when not saved."""
    run = Path(run_dir)
    csv = run / TOP_WEIGHTS
    if not csv.is_file():
        return None
    seeds = pd.read_csv(csv, usecols=["seed"])["seed"]
    path = run / score_file(int(seeds.iloc[0])) if len(seeds) else None
    if path is None or not path.is_file():
        return None
    from safetensors.torch import load_file

    return load_file(str(path))
