"""The run directory's schema, in one place: file names, criterion names, verdict flags, index format.

Every writer (pipeline commands) and every reader (compare, plots, reports, studies) takes these names
from here, so a file renamed or a field added is changed once. Weight positions follow Hugging Face's
`[row, col]` order (PyTorch's row-major layout); in CSV they are written as "row,col" (or "e,row,col"
for a fused expert tensor), and `flat` is the row-major offset into the flattened tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Files every command writes.
MANIFEST = "experiment_manifest.json"  # its presence marks a finished run
CONFIG = "config.json"
# Per-command results.
BASELINE = "baseline.json"
SENSITIVITY_STATS = "sensitivity_stats.json"
TOP_WEIGHTS = "top_weights.csv"
PERTURBATION = "perturbation_results.json"
PERTURBATION_TABLE = "perturbation_results.csv"
SUPERWEIGHTS = "superweights.json"
SUPERWEIGHTS_TABLE = "superweights.csv"
COMPARISON = "comparison.json"
PRUNE = "prune_results.json"
PRUNE_TABLE = "prune_results.csv"
QUANT = "quant_results.json"
QUANT_TABLE = "quant_results.csv"
PRECISION_PLAN = "precision_plan.json"
FAULTS = "faults.json"
FAULTS_TABLE = "faults.csv"
ATTACK = "attack.json"
FINETUNE = "finetune_results.json"
FINETUNE_TABLE = "finetune_results.csv"
INTERPRET = "interpret.json"
SCALING = "scaling.json"
FAMILIES = "families.json"
FIGURES_INDEX = "figures.json"
PLOTS_DIR = "plots"
SCORES_DIR = "scores"

# The result files a reader looks for (any one of them makes a directory worth reading).
RESULT_FILES = (CONFIG, SENSITIVITY_STATS, TOP_WEIGHTS, PERTURBATION, SUPERWEIGHTS, BASELINE, PRUNE, QUANT,
                FAULTS, ATTACK, FINETUNE, INTERPRET, SCALING, FAMILIES)

# Criterion names (phase 3), as they appear in perturbation_results.json and the report.
IMPACT, SEPARATION_3X, SEPARATION_5X, SIGNIFICANCE, HIERARCHY_3X = (
    "impact", "separation_3x", "separation_5x", "significance", "hierarchy_3x")

# Verdict flag of a super-weight candidate in superweights.json (a boolean; `verdict` is its sentence).
IS_SUPER_WEIGHT = "is_super_weight"


def score_file(seed: int) -> str:
    """Path, relative to the run directory, of one seed's full score tensors (`--save-scores`)."""
    return f"{SCORES_DIR}/scores_seed{seed}.safetensors"


def unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    """Row-major flat offset -> index tuple ([row, col] for a matrix)."""
    flat = int(flat)
    total = 1
    for size in shape:
        total *= int(size)
    if not 0 <= flat < max(total, 1):
        raise ValueError(f"flat index {flat} outside a tensor of shape {tuple(shape)}")
    out = []
    for size in reversed(tuple(shape)):
        out.append(flat % int(size))
        flat //= int(size)
    return tuple(reversed(out))


def ravel(index: Sequence[int], shape: Sequence[int]) -> int:
    """Index tuple -> row-major flat offset; the inverse of `unravel`."""
    if len(index) != len(shape):
        raise ValueError(f"index {tuple(index)} has {len(index)} coordinates for a tensor of shape {tuple(shape)}")
    flat = 0
    for i, size in zip(index, shape):
        if not 0 <= int(i) < int(size):
            raise ValueError(f"index {tuple(index)} outside a tensor of shape {tuple(shape)}")
        flat = flat * int(size) + int(i)
    return flat


def format_index(index: Iterable[int]) -> str:
    """(507, 1229) -> "507,1229", the form used in CSV files and summaries."""
    return ",".join(str(int(i)) for i in index)


def parse_index(text: str) -> tuple[int, ...]:
    """ "507,1229" (or "[507, 1229]") -> (507, 1229)."""
    body = str(text).strip().strip("[]()")
    try:
        return tuple(int(x) for x in body.split(",") if x.strip() != "")
    except ValueError:
        raise ValueError(f"not a weight index: {text!r} (expected 'row,col')") from None


def criterion_label(criterion: dict) -> str:
    """PASS / FAIL / N/A of a saved criterion (`passed` true / false / null)."""
    passed = criterion.get("passed")
    return "N/A" if passed is None else ("PASS" if passed else "FAIL")
