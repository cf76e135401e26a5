"""Statistical fault-injection campaigns: flip stored bits at random sites, evaluate, restore.

Each trial draws `faults_per_trial` distinct sites from a population (every weight, or the top-k
critical weights of a metric) and one bit position for each from the chosen bits, flips those bits
of the STORED values (bf16/fp16: 16 bits, fp32: 32) through esa.perturb.apply_perturbation, which
writes and restores through integer views and proves each restore by checksum (NaN/inf included),
evaluates the model once on the evaluation windows, and restores. A trial fails when the criterion
holds: "dppl>X" (perplexity rose by more than X), "acc_drop>X" (next-token accuracy fell by more
than X) or "nonfinite"; a non-finite loss always counts as a failure ("crashing"), a failure with a
finite loss is "silent".

With `codes` (an esa.security.codes.CodeSpace of a model quantized by esa.quantize) the faults hit
the integer codes instead: bit i of a weight's b-bit code flips and the weight takes the value the
flipped code stands for (see esa.security.codes); sites are the quantized weights less the kept ones.

Sample size: `injections`, or Leveugle et al. (2009) for a `margin` at `confidence` over the
population of N = sites x bit positions possible single faults (esa.security.rates). Failure
probabilities carry Wilson intervals, overall and per bit position, bit class, component and layer;
with several faults per trial a trial counts once in every group one of its faults belongs to.
Cost: one evaluation pass per trial plus two checksums of each touched tensor (timing reports the
median pass and the campaign's time over the summed pass times); memory O(faults).
"""

from __future__ import annotations

import math
import re
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ContextManager, Mapping, Protocol

import numpy as np
import pandas as pd
import torch

from esa.artifacts.schema import format_index, unravel
from esa.data import WindowSet
from esa.errors import EsaError
from esa.evaluation import evaluate
from esa.models import LoadedModel
from esa.perturb import apply_perturbation
from esa.perturb.base import bit_value, bit_width, int_view_dtype
from esa.ranking import WeightSet
from esa.security.rates import Rate, leveugle_sample_size, wilson, z_value
from esa.security.sites import Site, SitePopulation, bit_class, bit_positions

if TYPE_CHECKING:
    from esa.security.codes import CodeSpace

_FAILURE = re.compile(r"^(dppl|acc_drop)>(\d+(?:\.\d*)?|\.\d+)$")
GROUPS = ("bit", "bit_class", "component", "layer")
_CODE = ("code", "new_code")  # Fault fields only code faults fill: absent from a float campaign's table


@dataclass(frozen=True)
class Failure:
    """A parsed failure criterion: kind 'dppl', 'acc_drop' or 'nonfinite' and its threshold."""

    kind: str
    threshold: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Failure:
        text = str(text).replace(" ", "")
        if text == "nonfinite":
            return cls("nonfinite")
        match = _FAILURE.match(text)
        if not match:
            raise EsaError(f"unknown failure criterion {text!r}; use 'dppl>X', 'acc_drop>X' or 'nonfinite'")
        return cls(match.group(1), float(match.group(2)))

    def failed(self, ppl: float, accuracy: float, base_ppl: float, base_accuracy: float) -> bool:
        if not math.isfinite(ppl):
            return True
        if self.kind == "dppl":
            return ppl - base_ppl > self.threshold
        if self.kind == "acc_drop":
            return base_accuracy - accuracy > self.threshold
        return False


@dataclass(frozen=True)
class Fault:
    """One flipped bit: where (parameter, its place in the model, [row, col]), which bit, values before/after."""

    param: str
    layer: int | None
    component: str
    index: tuple[int, ...]
    bit: int
    bit_class: str
    old: float
    new: float
    code: int | None = None  # integer-code faults: the unsigned code before and after the flip
    new_code: int | None = None


@dataclass(frozen=True)
class Trial:
    trial: int
    faults: tuple[Fault, ...]
    ppl: float
    accuracy: float
    failed: bool
    crashed: bool  # non-finite loss (NaN/inf)


@dataclass
class FaultResult:
    """A campaign: its protocol, every trial, and failure rates (Wilson intervals at `confidence`)."""

    population: str
    population_size: int  # sites
    dtype: str
    bits: str
    bit_positions: list[int]
    faults_per_trial: int
    failure: str
    confidence: float
    sample_size: dict[str, Any]  # how the number of injections was chosen
    baseline: dict[str, float]
    trials: list[Trial]
    overall: Rate
    silent: Rate  # P(failure with a finite loss) per trial
    crashing: Rate  # P(NaN/inf loss) per trial
    groups: dict[str, dict[str, Rate]]  # group kind (GROUPS) -> key -> rate
    timing: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; trials as table rows (see `table`)."""
        out = {k: v for k, v in asdict(self).items() if k != "trials"}
        failures = self.overall.failures
        out["silent_share_of_failures"] = self.silent.failures / failures if failures else None
        out["crashing_share_of_failures"] = self.crashing.failures / failures if failures else None
        out["trials"] = self.table().to_dict(orient="records")
        return out

    def table(self) -> pd.DataFrame:
        """One row per fault (a trial of F faults gives F rows sharing its outcome)."""
        rows = [{"trial": t.trial,
                 **{k: v for k, v in asdict(f).items() if k != "index" and (k not in _CODE or v is not None)},
                 "index": format_index(f.index), "ppl": t.ppl, "accuracy": t.accuracy, "failed": t.failed,
                 "crashed": t.crashed} for t in self.trials for f in t.faults]
        return pd.DataFrame(rows)


class BitSpace(Protocol):
    """Where a campaign's faults flip bits: the stored floats (StoredBits) or integer codes (CodeSpace).

    `describe`: the result's `dtype` text; `positions`: the bits a fault may hit in a tensor (EsaError
    for bad `bits`, before any work); `fault`: what flipping `bit` at `site` does, computed, not
    written; `inject`: a context manager that writes it and restores the stored bits, proven by checksum.
    """

    def describe(self, names: list[str]) -> str: ...
    def positions(self, name: str, bits: str | int) -> list[int]: ...
    def fault(self, lm: LoadedModel, site: Site, bit: int) -> Fault: ...
    def inject(self, lm: LoadedModel, site: Site, fault: Fault) -> ContextManager[Any]: ...


class StoredBits:
    """Faults in the stored IEEE bits of each weight, flipped by esa.perturb's bit_flip."""

    def __init__(self, lm: LoadedModel) -> None:
        self._tensors = dict(lm.model.named_parameters(remove_duplicate=False))
        self._unused = torch.Generator().manual_seed(0)  # bit_flip with a fixed bit draws nothing

    def describe(self, names: list[str]) -> str:
        return ", ".join(sorted({str(self._tensors[n].dtype).replace("torch.", "") for n in names}))

    def positions(self, name: str, bits: str | int) -> list[int]:
        return bit_positions(bits, self._tensors[name].dtype)

    def fault(self, lm: LoadedModel, site: Site, bit: int) -> Fault:
        tensor = self._tensors[site.param]
        stored = tensor.detach().reshape(-1)[site.flat : site.flat + 1]
        flipped = stored.view(int_view_dtype(tensor.dtype)) ^ bit_value(bit, bit_width(tensor.dtype))
        info = lm.params[site.param]
        return Fault(site.param, info.layer, info.component, unravel(site.flat, info.shape), bit,
                     bit_class(bit, tensor.dtype), float(stored.float()), float(flipped.view(tensor.dtype).float()))

    def inject(self, lm: LoadedModel, site: Site, fault: Fault) -> ContextManager[Any]:
        return apply_perturbation(lm.model, {site.param: torch.tensor([site.flat])}, "bit_flip", self._unused,
                                  bit=fault.bit)


def fault_campaign(
    lm: LoadedModel, windows: WindowSet, *, injections: int | None = None, margin: float | None = None,
    confidence: float = 0.95, sites: str | tuple[str, str, int] | WeightSet = "random", bits: str | int = "all",
    faults_per_trial: int = 1, failure: str = "dppl>1", seed: int = 0, batch_size: int = 4,
    params: list[str] | None = None, codes: CodeSpace | None = None, progress: bool = False,
    max_seconds: float | None = None,
) -> FaultResult:
    """Run a campaign of single- or multi-bit faults; the model is bit-exactly restored after each trial.

    `sites`: "random" (every weight of `params`, default all), ("topk", metric, k) (the global top-k
    of `metric` scored on the calibration windows) or a WeightSet. Give exactly one of `injections`
    or `margin` (Leveugle's sample size). Evaluation uses every "eval" window of `windows`: a
    campaign costs one pass per trial, so build `windows` with few evaluation windows. With
    `max_seconds` the campaign stops drawing trials after that long (the trials run are the same
    prefix the full campaign would run; `sample_size["stopped_early"]` says so). With `codes`, faults
    flip bits of the integer codes of the quantized model `lm` now holds (`params` default: every
    quantized tensor; `bits`: "all" or a position below the code width; kept weights are no sites).
    """
    criterion = Failure.parse(failure)
    space: BitSpace = StoredBits(lm) if codes is None else codes
    names = (list(lm.params) if codes is None else codes.names(lm)) if params is None else params
    unknown = [n for n in names if n not in lm.params]
    if unknown:
        raise EsaError(f"{unknown[0]} is not a parameter of {lm.model_id}; name parameters from lm.params")
    if faults_per_trial < 1:
        raise EsaError(f"faults per trial must be at least 1, got {faults_per_trial}")
    if (injections is None) == (margin is None):
        raise EsaError("give exactly one of injections (a number of trials) or margin (Leveugle's sample size)")
    positions = {n: space.positions(n, bits) for n in names}
    population = _population(lm, windows, sites, names, seed, batch_size)
    positions.update({n: space.positions(n, bits) for n in population.names if n not in positions})  # given sites
    if codes is not None:
        population = population.without(codes.kept, f"{len(codes.kept)} kept 16-bit weights")
    n_choices = max(len(p) for p in positions.values())
    rule: dict[str, Any]
    if margin is not None:
        injections = leveugle_sample_size(len(population) * n_choices, margin, confidence)
        rule = {"rule": "Leveugle et al. 2009: n = N / (1 + e^2 (N-1) / (t^2 p (1-p)))", "N": len(population) * n_choices,
                "e": margin, "t": z_value(confidence), "p": 0.5, "n": injections}
    else:
        rule = {"rule": "given", "n": injections}
    if injections < 1:
        raise EsaError(f"a campaign needs at least 1 injection, got {injections}")

    base = evaluate(lm.model, windows, "eval", batch_size)
    rng = np.random.default_rng(seed)
    trials: list[Trial] = []
    eval_times: list[float] = []
    start = time.perf_counter()
    for t in range(injections):
        if max_seconds is not None and t and time.perf_counter() - start > max_seconds:
            rule["stopped_early"] = f"after {t} of {injections} trials (max_seconds={max_seconds:g})"
            break
        chosen = population.draw(rng, faults_per_trial)
        faults = [space.fault(lm, s, _draw(positions[s.param], rng)) for s in chosen]
        with ExitStack() as stack:
            for site, fault in zip(chosen, faults):
                stack.enter_context(space.inject(lm, site, fault))
            tick = time.perf_counter()
            res = evaluate(lm.model, windows, "eval", batch_size, allow_nonfinite=True)
            eval_times.append(time.perf_counter() - tick)
        crashed = not math.isfinite(res.mean_nll)
        failed = criterion.failed(res.ppl, res.accuracy, base.ppl, base.accuracy)
        trials.append(Trial(t, tuple(faults), res.ppl, res.accuracy, failed, crashed))
        if progress and (t + 1) % 25 == 0:
            print(f"  {t + 1}/{injections} trials, {sum(x.failed for x in trials)} failures", flush=True)
    campaign_s = time.perf_counter() - start
    return FaultResult(
        population=population.description, population_size=len(population), dtype=space.describe(names),
        bits=str(bits), bit_positions=sorted({b for p in positions.values() for b in p}),
        faults_per_trial=faults_per_trial, failure=failure, confidence=confidence, sample_size=rule,
        baseline={"ppl": base.ppl, "accuracy": base.accuracy, "n_windows": base.n_windows, "n_tokens": base.n_tokens},
        trials=trials,
        overall=wilson(sum(t.failed for t in trials), len(trials), confidence),
        silent=wilson(sum(t.failed and not t.crashed for t in trials), len(trials), confidence),
        crashing=wilson(sum(t.crashed for t in trials), len(trials), confidence),
        groups={g: _group_rates(trials, g, confidence) for g in GROUPS},
        timing={"eval_pass_s": float(np.median(eval_times)), "campaign_s": campaign_s,
                "trials_per_s": len(trials) / campaign_s, "overhead_vs_eval": campaign_s / math.fsum(eval_times)},
    )


def side_by_side(results: Mapping[str, FaultResult]) -> pd.DataFrame:
    """Campaigns in columns (p, lo, hi, n per campaign), groups in rows: e.g. random vs critical sites."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for label, res in results.items():
        entries = [("overall", "all", res.overall), ("silent", "all", res.silent), ("crashing", "all", res.crashing)]
        entries += [(g, k, r) for g, rates in res.groups.items() for k, r in rates.items()]
        for group, key, rate in entries:
            row = rows.setdefault((group, key), {"group": group, "key": key})
            row.update({f"{label}_p": rate.p, f"{label}_lo": rate.lo, f"{label}_hi": rate.hi, f"{label}_n": rate.n})
    return pd.DataFrame(list(rows.values()))


def _population(lm: LoadedModel, windows: WindowSet, sites: Any, names: list[str], seed: int,
                batch_size: int) -> SitePopulation:
    if isinstance(sites, WeightSet):
        return SitePopulation.from_weight_set(f"top-{len(sites)} given", sites)
    if sites == "random":
        return SitePopulation.every_weight({n: lm.params[n].shape for n in names})
    if isinstance(sites, (tuple, list)) and len(sites) == 3 and sites[0] == "topk":
        _, metric, k = sites
        return SitePopulation.from_weight_set(f"top-{k} {metric}", critical_weights(lm, windows, metric, int(k),
                                                                                      names, seed, batch_size))
    raise EsaError(f"sites must be 'random', ('topk', METRIC, K) or a WeightSet, got {sites!r}")


def critical_weights(lm: LoadedModel, windows: WindowSet, metric: str, k: int, names: list[str] | None = None,
                     seed: int = 0, batch_size: int = 4) -> WeightSet:
    """The global top-k weights of `metric`, scored on the calibration windows."""
    from esa.metrics import get_metric
    from esa.pipeline.profile import score_model
    from esa.ranking import top_k

    if k < 1:
        raise EsaError(f"the site population is empty (top-{k}); use k >= 1")
    names = list(lm.params) if names is None else names
    result = score_model(lm, get_metric(metric), windows, names, seed=seed, batch_size=batch_size)
    return top_k(result.scores, k, mode="global")


def _draw(positions: list[int], rng: np.random.Generator) -> int:
    return positions[int(rng.integers(len(positions)))]


def _group_rates(trials: list[Trial], group: str, confidence: float) -> dict[str, Rate]:
    counts: dict[str, list[int]] = {}
    for t in trials:
        keys = {_key(f, group) for f in t.faults}
        for key in keys:
            c = counts.setdefault(key, [0, 0])
            c[0] += 1
            c[1] += t.failed
    order = sorted(counts, key=lambda k: (len(k), k) if group in ("bit", "layer") else k)
    return {k: wilson(counts[k][1], counts[k][0], confidence) for k in order}


def _key(fault: Fault, group: str) -> str:
    value = getattr(fault, group)
    return "none" if value is None else str(value)
