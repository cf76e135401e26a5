"""Perturb selected weights in place for the duration of a with-block, then restore the exact bits.

    with apply_perturbation(model, selection, "bit_flip", generator, bit="sign") as info:
        evaluate(model)          # sees the perturbed weights; must not modify the touched tensors

Before anything is written, every new value is computed and validated (a bad option leaves the model
untouched) and what undoes it is saved: for a sparse selection the original stored bits at the
selected indices (index + bits, O(k) memory, never a copy of the model) and a checksum of the tensor
(esa.perturb.checksum); for a dense one (saving index + bits would cost more than the tensor itself,
e.g. pruning half of it) a copy of the whole tensor, which is both smaller and exact to compare. New
and original values are written through integer views of the stored bits, so NaN payloads,
infinities and -0.0 go in and come back exactly. On exit, even by an exception, the original bits are
written back and each tensor is proven equal to what it was (checksum recomputed, or bitwise equality
with the copy): a mismatch raises RuntimeError, since the model in memory is no longer the model that
was loaded (a bug, or a with-block that wrote to the weights).

Random draws come from `generator`, one parameter after another in the selection's order; see
esa.perturb.seeding for one generator per (seed, condition, trial).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping

import torch

from esa.errors import EsaError
from esa.perturb.base import Perturbation, int_view_dtype
from esa.perturb.checksum import Checksum, tensor_checksum
from esa.perturb.registry import get_perturbation
from esa.perturb.selection import IndexSets, index_sets, unique_flat_index


@dataclass
class ParamChange:
    """What the perturbation did to one parameter: `n_selected` distinct weights, of which
    `n_changed` got different bits, `n_nan` / `n_inf` of them NaN / ±inf afterwards; `details` are
    perturbation-specific (bit_flips: {bit position: count}; gauss_noise with noise_ref="std": std)."""

    n_selected: int
    n_changed: int
    n_nan: int
    n_inf: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PerturbationInfo:
    """One application of a perturbation; `saved_bytes` is the memory held for the restore."""

    perturbation: str
    definition: str
    options: dict[str, Any]
    params: dict[str, ParamChange]
    saved_bytes: int

    def totals(self) -> dict[str, Any]:
        """Counts summed over parameters, bit flips merged by position."""
        flips: dict[int, int] = {}
        for change in self.params.values():
            for position, n in change.details.get("bit_flips", {}).items():
                flips[position] = flips.get(position, 0) + n
        keys = ("n_selected", "n_changed", "n_nan", "n_inf")
        sums = {key: sum(getattr(c, key) for c in self.params.values()) for key in keys}
        return {**sums, **({"bit_flips": dict(sorted(flips.items()))} if flips else {})}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (bit positions become string keys when dumped)."""
        return {**asdict(self), "totals": self.totals()}


@dataclass
class _Saved:
    name: str
    tensor: torch.Tensor
    index: torch.Tensor  # unique flat indices, on the tensor's device
    original: torch.Tensor  # the stored bits there, integer dtype
    checksum: Checksum | None  # None when `copy` holds the whole tensor instead
    copy: torch.Tensor | None = None  # every stored bit of the tensor (dense selections), integer dtype

    def put_back(self) -> None:
        if self.copy is None:
            _write_bits(self.tensor, self.index, self.original)
        else:
            with torch.no_grad():
                _bits(self.tensor).copy_(self.copy.view(self.tensor.shape))

    def intact(self) -> bool:
        """The tensor holds exactly its stored bits from before the write."""
        if self.copy is None:
            return tensor_checksum(self.tensor) == self.checksum
        return torch.equal(_bits(self.tensor).reshape(-1), self.copy)


@contextmanager
def apply_perturbation(
    model_or_named_params: torch.nn.Module | Mapping[str, torch.Tensor],
    selection: IndexSets | Any,
    perturbation: str | Perturbation,
    generator: torch.Generator,
    **params: Any,
) -> Iterator[PerturbationInfo]:
    """Apply `perturbation` (a name in PERTURBATIONS or an object) with `params` to the weights in
    `selection` (name -> flat indices, or a WeightSet) for the duration of the with-block."""
    pert = get_perturbation(perturbation)
    tensors = _named_tensors(model_or_named_params)
    saved: list[_Saved] = []
    new_bits: list[torch.Tensor] = []
    changes: dict[str, ParamChange] = {}
    options: dict[str, Any] | None = None
    for name, raw in index_sets(selection).items():
        tensor = _tensor(tensors, name)
        opts = pert.options(tensor.dtype, **params)
        options = opts if options is None else options
        index = unique_flat_index(name, raw, tensor.numel()).to(tensor.device)
        if index.numel():
            entry, bits, changes[name] = _prepare(pert, name, tensor, index, generator, opts)
            saved.append(entry)
            new_bits.append(bits)
    if options is None:  # nothing selected: still reject bad options
        options = pert.options(torch.float32, **params)
    info = PerturbationInfo(
        perturbation=pert.name,
        definition=pert.definition(options),
        options=options,
        params=changes,
        saved_bytes=sum(s.copy.nbytes if s.copy is not None else s.index.nbytes + s.original.nbytes for s in saved),
    )
    written: list[_Saved] = []
    try:
        for entry, bits in zip(saved, new_bits):
            written.append(entry)  # before the write: a write that fails halfway is restored too
            _write_bits(entry.tensor, entry.index, bits)
        new_bits.clear()
        yield info
    finally:
        _restore(written, pert.name)


def _prepare(
    pert: Perturbation, name: str, tensor: torch.Tensor, index: torch.Tensor, generator: torch.Generator,
    opts: dict[str, Any],
) -> tuple[_Saved, torch.Tensor, ParamChange]:
    """Everything needed to perturb and restore one tensor, computed before anything is written."""
    original = _read_bits(tensor, index)
    values, details = pert.compute(original.clone().view(tensor.dtype), generator, tensor, opts)
    if values.dtype != tensor.dtype or values.shape != index.shape:
        raise EsaError(
            f"perturbation {pert.name!r} returned {values.dtype} {tuple(values.shape)} values for {name}, "
            f"expected {tensor.dtype} {tuple(index.shape)}"
        )
    bits = values.to(tensor.device).view(original.dtype)
    change = ParamChange(
        n_selected=index.numel(),
        n_changed=int((bits != original).sum()),
        n_nan=int(values.isnan().sum()),
        n_inf=int(values.isinf().sum()),
        details=details,
    )
    if (index.element_size() + original.element_size()) * index.numel() >= tensor.numel() * original.element_size():
        return _Saved(name, tensor, index, original, None, _bits(tensor).reshape(-1).clone()), bits, change
    return _Saved(name, tensor, index, original, tensor_checksum(tensor)), bits, change


def _stray_writes(saved: list[_Saved]) -> set[str]:
    """Names of copied tensors written outside every selection into them (tied names share one tensor):
    looked for before the restore, since putting the copy back would silently undo such a write."""
    by_tensor: dict[int, list[_Saved]] = {}
    for entry in saved:
        by_tensor.setdefault(entry.tensor.data_ptr(), []).append(entry)
    stray: set[str] = set()
    for entries in by_tensor.values():
        copy = next((e.copy for e in entries if e.copy is not None), None)
        if copy is None:
            continue
        moved = _bits(entries[0].tensor).reshape(-1) != copy
        for entry in entries:
            moved[entry.index] = False
        if bool(moved.any()):
            stray.update(e.name for e in entries)
    return stray


def _named_tensors(source: torch.nn.Module | Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """Every parameter by name, tied ones under each of their names."""
    if isinstance(source, torch.nn.Module):
        return dict(source.named_parameters(remove_duplicate=False))
    return source


def _tensor(tensors: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in tensors:
        raise EsaError(f"the selection names {name!r}, which is not a parameter of this model")
    tensor = tensors[name]
    if tensor.device.type == "meta":
        raise EsaError(f"{name} is offloaded (on the meta device); perturbation needs it in CPU or GPU memory")
    int_view_dtype(tensor.dtype, name)
    return tensor


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's stored bits as an integer view (same memory)."""
    return tensor.detach().view(int_view_dtype(tensor.dtype))


def _where(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Flat indices as an indexer: the flat index itself into a contiguous tensor's flat view (one
    gather), else unravelled to one index per dimension."""
    return index if tensor.is_contiguous() else torch.unravel_index(index, tensor.shape)


def _read_bits(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    bits = _bits(tensor)
    return (bits.view(-1) if tensor.is_contiguous() else bits)[_where(tensor, index)]


def _write_bits(tensor: torch.Tensor, index: torch.Tensor, bits: torch.Tensor) -> None:
    with torch.no_grad():
        view = tensor.detach().view(bits.dtype)
        (view.view(-1) if tensor.is_contiguous() else view)[_where(tensor, index)] = bits


def _restore(saved: list[_Saved], label: str) -> None:
    """Write the original bits back (last written first) and prove each tensor is as it was."""
    stray = _stray_writes(saved)
    for entry in reversed(saved):
        entry.put_back()
    broken = [entry.name for entry in saved if entry.name in stray or not entry.intact()]
    if broken:
        raise RuntimeError(
            f"restoring after {label!r} left {len(broken)} tensor(s) different from before: {', '.join(broken)}. "
            "The model in memory is corrupted (a bug, or code inside the with-block wrote to these weights); reload it."
        )
