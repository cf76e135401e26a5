"""A selection of individual weights: which tensor, which element, what score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch


@dataclass(frozen=True)
class WeightSet:
    """Selected weights in selection order: best score first (highest for a top-k, lowest for a
    bottom-k, see `largest`), ties by parameter order then flat index, so any prefix is itself the
    selection for a smaller k.

    Entries are columns: entry i is element `flat_index[i]` (row-major over the parameter's own
    shape, Hugging Face [row, col] order) of parameter `param_names[param_ids[i]]`, with score
    `score[i]`. `param_names` lists every ranked parameter in model order, selected or not.
    """

    param_names: tuple[str, ...]
    param_ids: torch.Tensor  # int64 [n]
    flat_index: torch.Tensor  # int64 [n]
    score: torch.Tensor  # float32 [n]
    largest: bool = True

    def __len__(self) -> int:
        return self.score.numel()

    def head(self, n: int) -> WeightSet:
        """The first n entries: the selection a smaller k would have made."""
        return WeightSet(self.param_names, self.param_ids[:n], self.flat_index[:n], self.score[:n], self.largest)

    def by_param(self) -> dict[str, torch.Tensor]:
        """Flat indices per selected parameter (model order), ascending: ready for x.view(-1)[idx]."""
        counts = torch.bincount(self.param_ids, minlength=len(self.param_names)).tolist()
        order = torch.sort(self.param_ids * (1 << 40) + self.flat_index).indices
        groups = torch.split(self.flat_index[order], counts)
        return {name: idx for name, idx, c in zip(self.param_names, groups, counts) if c}

    def counts(self) -> dict[str, int]:
        """Number of selected weights per selected parameter, in model order."""
        return {name: idx.numel() for name, idx in self.by_param().items()}

    def keys(self) -> set[tuple[str, int]]:
        """The selection as a set of (parameter name, flat index), for overlap between runs."""
        return {(self.param_names[p], f) for p, f in zip(self.param_ids.tolist(), self.flat_index.tolist())}

    def unravel(self, shapes: Mapping[str, Any]) -> list[tuple[int, ...]]:
        """Each entry's index in its parameter's own shape ([row, col] for a matrix), entry order.

        `shapes` maps names to a shape, or to anything with `.shape` (ParamInfo, tensors).
        """
        out: list[tuple[int, ...]] = [()] * len(self)
        ids = self.param_ids.tolist()
        positions: dict[int, list[int]] = {}
        for pos, p in enumerate(ids):
            positions.setdefault(p, []).append(pos)
        for p, pos in positions.items():
            shape = _shape(shapes[self.param_names[p]])
            coords = torch.unravel_index(self.flat_index[pos], shape)
            for i, index in zip(pos, torch.stack(coords, 1).tolist() if coords else [[]] * len(pos)):
                out[i] = tuple(index)
        return out


def _shape(obj: Any) -> tuple[int, ...]:
    shape: Sequence[int] = obj.shape if hasattr(obj, "shape") else obj
    return tuple(int(s) for s in shape)
