"""Several models under one protocol: one baseline row per model, with the workflow's phase-1 criteria.

Models are loaded one at a time (`load(spec)`), evaluated with `run_baseline` on their own
tokenization of the same dataset, optionally scored on lm-eval tasks, and released before the next:
peak memory is one model. Token PPL is not comparable across tokenizers; bits per byte and word
perplexity are (see `esa.data.windows.TEXT_MEASURES_RULE`), so every row carries them.

Phase-1 criteria of the workflow guide, judged per model (PASS / FAIL / N/A):
- `ppl_seed_cv_below_5pct`: sample std / mean of the per-seed PPLs < 0.05 (N/A with fewer than 2 seeds);
- `accuracy_above_99pct_production`, `accuracy_above_96pct_research`: next-token top-1 accuracy on the
  fixed windows above the guide's thresholds for production (> 99%) and research (> 96%) models;
  both are given, since which class a model belongs to is the reader's call;
- `finite_loss`: no NaN or infinite loss on the fixed windows.
"""

from __future__ import annotations

import gc
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from esa.data.corpus import load_corpus
from esa.errors import EsaError
from esa.evaluation.baseline import run_baseline
from esa.evaluation.zeroshot import DEFAULT_SEED, TaskResults, evaluate_tasks
from esa.models.types import LoadedModel

PASS, FAIL, NA = "PASS", "FAIL", "N/A"
PPL_CV_LIMIT = 0.05
ACCURACY_THRESHOLDS = {"production": 0.99, "research": 0.96}


@dataclass(frozen=True)
class ModelRow:
    """One model's phase-1 figures; `baseline` is run_baseline's full dict, `tasks` TaskResults.to_dict()."""

    model: str
    family: str
    n_params: int
    ppl: float
    bits_per_byte: float | None
    word_ppl: float | None
    accuracy: float
    ppl_seed_mean: float | None
    ppl_seed_std: float | None
    ppl_seed_cv: float | None
    task_scores: dict[str, dict[str, float | None]]  # task -> acc, acc_stderr, acc_norm, acc_norm_stderr
    criteria: dict[str, str]
    baseline: dict[str, Any]
    tasks: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def phase1_criteria(baseline: dict[str, Any]) -> dict[str, str]:
    """The workflow's phase-1 verdicts for one run_baseline result (see the module docstring)."""
    fixed, spread = baseline["fixed"], baseline["across_seeds"]
    cv = _seed_cv(spread)
    finite = math.isfinite(fixed["mean_nll"])
    criteria = {"ppl_seed_cv_below_5pct": NA if cv is None else (PASS if cv < PPL_CV_LIMIT else FAIL)}
    for tier, threshold in ACCURACY_THRESHOLDS.items():
        criteria[f"accuracy_above_{round(100 * threshold)}pct_{tier}"] = PASS if fixed["accuracy"] > threshold else FAIL
    criteria["finite_loss"] = PASS if finite else FAIL
    return criteria


def baseline_row(lm: LoadedModel, baseline: dict[str, Any], tasks: TaskResults | None = None) -> ModelRow:
    """The row of one model, from its run_baseline result and (optionally) its task scores."""
    fixed, spread = baseline["fixed"], baseline["across_seeds"]
    ppl_spread = spread["ppl"] if spread else None
    task_scores = {
        s.task: {"acc": s.acc, "acc_stderr": s.acc_stderr, "acc_norm": s.acc_norm, "acc_norm_stderr": s.acc_norm_stderr}
        for s in (tasks.scores if tasks is not None else ())
    }
    return ModelRow(
        model=lm.model_id,
        family=lm.family,
        n_params=lm.n_params,
        ppl=fixed["ppl"],
        bits_per_byte=fixed.get("bits_per_byte"),
        word_ppl=fixed.get("word_ppl"),
        accuracy=fixed["accuracy"],
        ppl_seed_mean=ppl_spread["mean"] if ppl_spread else None,
        ppl_seed_std=ppl_spread["std"] if ppl_spread else None,
        ppl_seed_cv=_seed_cv(spread),
        task_scores=task_scores,
        criteria=phase1_criteria(baseline),
        baseline=baseline,
        tasks=tasks.to_dict() if tasks is not None else None,
    )


def compare_baselines(
    model_specs: Sequence[str],
    load: Callable[[str], LoadedModel],
    *,
    dataset: str = "builtin",
    max_chars: int | None = None,
    preset: str = "standard",
    seq_len: int | None = None,
    n_eval: int | None = None,
    seeds: Sequence[int] = (0,),
    protocol: str = "last",
    batch_size: int = 1,
    bos_id_for: Callable[[LoadedModel], int | None] | None = None,
    tasks: Sequence[str] = (),
    limit: int | None = None,
    task_seed: int = DEFAULT_SEED,
    progress: bool = False,
) -> list[ModelRow]:
    """Evaluate every model of `model_specs` under one protocol; one ModelRow each, in the given order.

    `load(spec)` opens a model (the CLI passes its loader with the dtype/device options);
    `bos_id_for(lm)` decides BOS per model (None: no BOS). Each model's tokenizer cuts its own windows
    of the same text, so PPL differs in meaning between families while bits/byte does not.
    """
    if not model_specs:
        raise EsaError("no models given; pass --model a,b,c")
    if len(set(model_specs)) != len(model_specs):
        raise EsaError(f"--model lists a model twice ({', '.join(model_specs)}); give each once")
    rows = []
    for spec in model_specs:
        lm = load(spec)
        corpus = load_corpus(dataset, lm.tokenizer, max_chars=max_chars)
        baseline = run_baseline(
            lm.model, corpus, preset=preset, seq_len=seq_len, n_eval=n_eval, seeds=seeds, batch_size=batch_size,
            bos_id=bos_id_for(lm) if bos_id_for is not None else None, max_seq_len=lm.max_seq_len,
            progress=progress, protocol=protocol, tokenizer=lm.tokenizer,
        )
        baseline["model"] = lm.model_id
        scored = evaluate_tasks(lm, tasks, limit=limit, batch_size=batch_size, seed=task_seed, progress=progress) if tasks else None
        rows.append(baseline_row(lm, baseline, scored))
        del lm, corpus
        gc.collect()
    return rows


def _seed_cv(spread: dict[str, Any] | None) -> float | None:
    if not spread or spread["ppl"]["std"] is None:
        return None
    mean = spread["ppl"]["mean"]
    return spread["ppl"]["std"] / mean if math.isfinite(mean) and mean > 0 else math.inf
