"""Index sets: which weights of which parameters, as parameter name -> flat indices.

Flat indices are row-major over the parameter's own shape (Hugging Face [row, col] order), as in
esa.ranking.WeightSet, which is accepted wherever an index set is.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from esa.errors import EsaError

IndexSets = Mapping[str, torch.Tensor]


def index_sets(selection: IndexSets | Any) -> dict[str, torch.Tensor]:
    """The selection as name -> flat indices (a WeightSet is split by parameter)."""
    return dict(selection.by_param() if hasattr(selection, "by_param") else selection)


def unique_flat_index(name: str, index: Any, numel: int) -> torch.Tensor:
    """`index` as sorted, duplicate-free int64 flat indices into a `numel`-element parameter.

    Duplicates are dropped (a weight perturbed twice is still one weight, and restore must write
    each weight once); anything else odd raises EsaError.
    """
    index = torch.as_tensor(index)
    if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
        raise EsaError(f"indices for {name} must be integers, got {index.dtype}")
    index = index.reshape(-1).long()
    if index.numel() > 1 and not bool((index[1:] > index[:-1]).all()):  # already sorted and unique: no sort
        index = torch.unique(index)  # sorted
    if index.numel() and (int(index[0]) < 0 or int(index[-1]) >= numel):
        bad = int(index[0]) if int(index[0]) < 0 else int(index[-1])
        raise EsaError(f"flat index {bad} is outside {name}, which has {numel} weights")
    return index
