"""Integrity fingerprints: per-tensor SHA-256 of the stored bytes plus the exact top-K critical weights.

A fingerprint holds the model's identity (architecture, class, dtype, every tensor's shape), the
SHA-256 of each parameter's stored bytes (row-major, native byte order; a tied tensor is hashed
once, under its first name), and the K most critical weights of a metric: position, stored bits,
value, score, rank. `verify` re-hashes the model (one read of every byte: about a second per
100M bf16 weights on one CPU core), names the tensors whose hash changed, which stored critical
weights changed inside them, and, given the fingerprinted model as `reference`, every changed
weight exactly (integer-view comparison of the changed tensors only).
The JSON form carries a SHA-256 of its own canonical content, so a corrupted or edited file, or a
fingerprint of another model, is refused (EsaError) before anything is compared.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from esa.artifacts.schema import unravel
from esa.data import WindowSet
from esa.errors import EsaError
from esa.models import LoadedModel
from esa.perturb.base import int_view_dtype
from esa.ranking import WeightSet

VERSION = 1
_KEYS = {"version", "model", "hashes", "critical", "digest"}
_MODEL_KEYS = {"model_id", "architecture", "model_class", "dtype", "n_params", "shapes"}
_CRITICAL_KEYS = {"metric", "k", "weights"}
_WEIGHT_KEYS = {"param", "flat", "index", "bits", "value", "score", "rank"}


@dataclass(frozen=True)
class Fingerprint:
    model: dict[str, Any]  # identity: model_id, architecture, model_class, dtype, n_params, shapes
    hashes: dict[str, str]  # param -> SHA-256 hex of its stored bytes
    critical: dict[str, Any]  # metric, k, weights: [{param, flat, index, bits, value, score, rank}]
    version: int = VERSION

    def to_json(self) -> str:
        body = {"version": self.version, "model": self.model, "hashes": self.hashes, "critical": self.critical}
        return json.dumps({**body, "digest": _digest(body)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Fingerprint:
        """Parse and validate strictly: any missing, extra or mistyped field, or a digest mismatch, is an EsaError."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EsaError(f"the fingerprint is not valid JSON ({exc.msg}); give a file written by esa fingerprint") from None
        _expect(isinstance(data, dict) and set(data) == _KEYS, "top-level fields")
        _expect(data["version"] == VERSION, f"version (this ESA reads version {VERSION})")
        body = {k: data[k] for k in ("version", "model", "hashes", "critical")}
        if data["digest"] != _digest(body):
            raise EsaError("the fingerprint's digest does not match its content: the file is corrupted or was edited")
        model, hashes, critical = data["model"], data["hashes"], data["critical"]
        _expect(isinstance(model, dict) and set(model) == _MODEL_KEYS, "model fields")
        _expect(isinstance(model["shapes"], dict) and all(
            isinstance(s, list) and all(isinstance(x, int) for x in s) for s in model["shapes"].values()), "shapes")
        _expect(isinstance(hashes, dict) and set(hashes) == set(model["shapes"]) and all(
            isinstance(h, str) and len(h) == 64 for h in hashes.values()), "hashes")
        _expect(isinstance(critical, dict) and set(critical) == _CRITICAL_KEYS, "critical fields")
        _expect(isinstance(critical["weights"], list) and all(
            isinstance(w, dict) and set(w) == _WEIGHT_KEYS and w["param"] in hashes for w in critical["weights"]),
            "critical weights")
        return cls(model=model, hashes=hashes, critical=critical, version=data["version"])


@dataclass(frozen=True)
class WeightChange:
    """One changed weight; `critical_rank` is its rank in the fingerprint's top-K (1 = most critical), or None."""

    param: str
    layer: int | None
    component: str
    index: tuple[int, ...]
    old: float
    new: float
    critical_rank: int | None
    score: float | None


@dataclass
class TensorChange:
    param: str
    layer: int | None
    component: str
    n_changed: int | None  # exact count with a reference model, else None
    n_critical: int  # fingerprinted critical weights in this tensor
    n_critical_changed: int


@dataclass
class VerifyResult:
    intact: bool
    n_tensors: int
    changed: list[TensorChange]
    weights: list[WeightChange]  # every changed weight with a reference (up to max_listed per tensor), else the critical ones
    exact: bool  # whether `weights` comes from a reference model
    metric: str
    timing: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(lm: LoadedModel, *, metric: str = "grad_x_weight", k: int = 100, windows: WindowSet | None = None,
                critical: WeightSet | None = None, seed: int = 0, batch_size: int = 4) -> Fingerprint:
    """Hashes of every tensor plus the global top-`k` weights of `metric` (scored on `windows`' calibration
    split), or of a precomputed `critical` selection."""
    if critical is None:
        if windows is None:
            raise EsaError("a fingerprint needs calibration windows to score critical weights, or a given selection")
        from esa.security.faults import critical_weights

        critical = critical_weights(lm, windows, metric, k, seed=seed, batch_size=batch_size)
    tensors = _tensors(lm)
    weights = []
    for rank, (pid, flat, score) in enumerate(zip(critical.param_ids.tolist(), critical.flat_index.tolist(),
                                                  critical.score.tolist()), start=1):
        name = critical.param_names[pid]
        bits, value = _read(tensors[name], flat)
        weights.append({"param": name, "flat": flat, "index": list(unravel(flat, lm.params[name].shape)),
                        "bits": bits, "value": value, "score": score, "rank": rank})
    return Fingerprint(model=identity(lm), hashes={n: tensor_sha256(t) for n, t in tensors.items()},
                       critical={"metric": metric, "k": len(critical), "weights": weights})


def verify(lm: LoadedModel, fp: Fingerprint, reference: LoadedModel | None = None, max_listed: int = 1000) -> VerifyResult:
    """Is `lm` the fingerprinted model? EsaError if it is another model (identity differs) or if
    `reference` is not the fingerprinted model either."""
    start = time.perf_counter()
    _same_identity(identity(lm), fp.model, "the model")
    tensors = _tensors(lm)
    changed_names = [n for n, t in tensors.items() if tensor_sha256(t) != fp.hashes[n]]
    ref = _tensors(reference) if reference is not None else None
    if reference is not None:
        _same_identity(identity(reference), fp.model, "the reference model")
        bad = [n for n in changed_names if tensor_sha256(ref[n]) != fp.hashes[n]]
        if bad:
            raise EsaError(f"the reference model is not the fingerprinted one ({bad[0]} differs too); give the original model")
    critical = {(w["param"], w["flat"]): w for w in fp.critical["weights"]}
    changes: list[TensorChange] = []
    weights: list[WeightChange] = []
    for name in changed_names:
        info, tensor = lm.params[name], tensors[name]
        mine = [w for w in fp.critical["weights"] if w["param"] == name]
        moved = [w for w in mine if _read(tensor, w["flat"])[0] != w["bits"]]
        if ref is not None:
            a = tensor.detach().reshape(-1).view(int_view_dtype(tensor.dtype))
            b = ref[name].detach().reshape(-1).view(int_view_dtype(tensor.dtype)).to(a.device)
            flats = torch.nonzero(a != b).reshape(-1).tolist()
            n_changed: int | None = len(flats)
            listed = [(f, float(b[f : f + 1].view(tensor.dtype).float())) for f in flats[:max_listed]]
        else:
            n_changed, listed = None, [(w["flat"], w["value"]) for w in moved]
        for flat, old in listed:
            crit = critical.get((name, flat))
            weights.append(WeightChange(name, info.layer, info.component, unravel(flat, info.shape), old,
                                        _read(tensor, flat)[1], crit["rank"] if crit else None,
                                        crit["score"] if crit else None))
        changes.append(TensorChange(name, info.layer, info.component, n_changed, len(mine), len(moved)))
    return VerifyResult(not changed_names, len(tensors), changes, weights, ref is not None, fp.critical["metric"],
                        {"verify_s": time.perf_counter() - start})


def identity(lm: LoadedModel) -> dict[str, Any]:
    config = getattr(lm.model, "config", None)
    return {"model_id": lm.model_id, "architecture": getattr(config, "model_type", None),
            "model_class": type(lm.model).__name__, "dtype": str(lm.dtype).replace("torch.", ""),
            "n_params": lm.n_params, "shapes": {n: list(p.shape) for n, p in lm.params.items()}}


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of the stored bytes, row-major (the tensor is read once; copied to the host if on a GPU)."""
    flat = tensor.detach().reshape(-1)
    raw = flat.view(int_view_dtype(flat.dtype)) if flat.dtype.is_floating_point else flat
    return hashlib.sha256(raw.cpu().contiguous().numpy().tobytes()).hexdigest()


def _tensors(lm: LoadedModel) -> dict[str, torch.Tensor]:
    named = dict(lm.model.named_parameters(remove_duplicate=False))
    return {n: named[n] for n in lm.params}


def _read(tensor: torch.Tensor, flat: int) -> tuple[int, float]:
    stored = tensor.detach().reshape(-1)[flat : flat + 1]
    return int(stored.view(int_view_dtype(tensor.dtype))), float(stored.float())


def _same_identity(actual: dict[str, Any], stored: dict[str, Any], what: str) -> None:
    for key in ("architecture", "model_class", "dtype", "n_params", "shapes"):
        if actual[key] != stored[key]:
            raise EsaError(f"the fingerprint is of another model: {what}'s {key} differs from the fingerprint's "
                           f"({stored['model_id']}); fingerprint this model first")


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise EsaError(f"the fingerprint's {what} are malformed; give a file written by esa fingerprint")
