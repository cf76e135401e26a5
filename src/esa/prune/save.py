"""A pruned model as a plain Hugging Face directory, and the provenance that goes beside it.

`save_pruned_model` writes what `prune(..., keep=True)` left in memory with `save_pretrained`
(safetensors weights, config, generation config) plus the tokenizer, so that
`transformers.AutoModelForCausalLM.from_pretrained(directory)` loads it with nothing from ESA.
`pruning_provenance` is the JSON-ready record for pruning.json (written by the caller).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esa.data import WindowSet
from esa.errors import EsaError
from esa.models.types import LoadedModel
from esa.prune.prune import PruneResult


def save_pruned_model(lm: LoadedModel, result: PruneResult, directory: str | Path) -> Path:
    """Write the model in memory (which must hold `result`'s pruned weights) as a Hugging Face directory."""
    if not result.kept:
        raise EsaError("the model in memory is the dense one (prune was called without keep=True); prune with keep=True first")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(path, safe_serialization=True)
    lm.tokenizer.save_pretrained(path)
    return path


def superweight_positions(superweights: Any) -> list[tuple[str, int]]:
    """(parameter, flat index) of each validated super weight of an esa.analysis SuperweightResult."""
    return [(c["param"], int(c["flat_index"])) for c in superweights.super_weights()]


def pruning_provenance(lm: LoadedModel, result: PruneResult, windows: WindowSet, command: str | None = None) -> dict[str, Any]:
    """Where the masks came from: command, model, score, pattern, sparsity, seed, calibration windows."""
    return {
        "command": command,
        "source_model": lm.model_id,
        "score": result.score,
        "pattern": result.pattern,
        "group": result.group,
        "sparsity": result.sparsity,
        "achieved_sparsity": result.achieved_sparsity,
        "mode": result.mode,
        "seed": result.seed,
        "n_protected": result.n_protected,
        "targets": result.targets,
        "per_tensor_sparsity": result.per_tensor,
        "calibration": {**windows.protocol(), "calib_offsets": list(windows.calib_offsets)},
        "ppl": result.ppl,
        "notes": result.notes,
    }
