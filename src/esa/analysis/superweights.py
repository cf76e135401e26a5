"""Super-weight detection (Yu et al. 2024, "The Super Weight in Large Language Models").

A super weight is a single scalar of an MLP output projection whose removal wrecks the model. It shows
itself as a "super activation": one input channel of the projection fires massively at a few tokens,
and the weight carries that spike into one output channel. The detector:

1. runs a few prompts (plus the calibration windows, if any) and, per projection (per expert for MoE),
   finds the largest |input activation| (channel `col`, token t) and, through the weight column `col`,
   the output channel `row` receiving most of it (argmax_r |W[r, col] · x_col(t)|);
2. calls it a candidate when the input spike is >= `threshold` x the projection's median |input| AND the
   output at that token, channel `row`, is >= `threshold` x the median |output|; ratios to the median
   (not the paper's absolute magnitudes) make one threshold work across models and dtypes;
3. zeroes the candidate with the largest output ratio, keeps it zeroed, and repeats until no candidate
   is left or `max_iter` candidates are found; then restores every weight bit for bit;
4. validates each candidate alone on the evaluation windows: perplexity with only that weight zeroed,
   against `n_controls` draws that each zero one weight at least as large in the same projections (the
   paper's control: large weights that are not super weights) and `n_controls` draws that each zero one
   random weight of those projections (shared by all candidates).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ContextManager, Iterator

import torch
from tqdm import tqdm

from esa.artifacts import schema
from esa.analysis.activations import MEDIAN_RULE, ActivationPass, ProjectionStats, activation_pass
from esa.analysis.projections import OutputProjection, find_output_projections
from esa.data.windows import WindowSet
from esa.errors import EsaError
from esa.evaluation.perplexity import evaluate
from esa.models.loader import input_device
from esa.models.types import LoadedModel
from esa.perturb import apply_perturbation

DEFAULT_PROMPTS: tuple[str, ...] = (
    "Apple Inc. is a worldwide tech company.",  # the prompt of Yu et al. 2024
    "The capital of France is Paris. It is known for the Eiffel Tower and the Louvre.",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Water boils at 100 degrees Celsius at sea level, but at a lower temperature on a mountain.",
)
# Sun et al. 2024 ("Massive Activations in LLMs") call an activation massive at ~1000x the median.
DEFAULT_THRESHOLD = 1000.0
DEFAULT_MAX_ITER = 8
DEFAULT_N_CONTROLS = 3
VERDICT_FACTOR = 10.0
VERDICT_MIN_INCREASE = 0.01
SUPER = "super weight"
NOT_SUPER = "not a super weight: zeroing it does not hurt more than controls"
NOT_VALIDATED = "not validated: no evaluation windows"
TOP_TOKENS = 10
NONE_AS_LARGE = "no other weight of the MLP output projections is at least as large"

CANDIDATE_RULE = (
    "input spike = largest |input| of the projection (channel col, token t); row = argmax_r |W[r, col] * x_col(t)|; "
    "candidate when |x_col(t)| >= threshold * median |input| and |y_row(t)| >= threshold * median |output|"
)
VERDICT_RULE = (
    f"super weight when zeroing it raises perplexity by at least {VERDICT_MIN_INCREASE:.0%} of the baseline and by at "
    f"least {VERDICT_FACTOR:g}x the largest increase of any control draw (controls that lower perplexity count as 0)"
)
CONTROL_RULE = (
    "each control zeroes one weight of the MLP output projections, never a candidate: 'magnitude' draws among "
    "those with |w| >= |candidate| (the paper's large non-super weights), 'random' draws uniformly; "
    "torch.Generator().manual_seed(seed), random draws first, then magnitude draws candidate by candidate"
)


@dataclass(frozen=True)
class Candidate:
    """One detected weight and the activation event that pointed at it."""

    projection: OutputProjection
    iteration: int
    out_channel: int
    in_channel: int
    flat_index: int
    value: float  # the weight before zeroing
    input_spike: float  # signed input activation x_col(t)
    output_spike: float  # signed output y_row(t), same token
    input_median: float
    output_median: float
    token: int  # index of t in the pass's token stream

    @property
    def index(self) -> tuple[int, ...]:
        return self.projection.index(self.out_channel, self.in_channel)

    @property
    def input_ratio(self) -> float:
        return abs(self.input_spike) / self.input_median

    @property
    def output_ratio(self) -> float:
        return abs(self.output_spike) / self.output_median


@dataclass
class SuperweightResult:
    """Candidates (JSON-ready rows, detection order), per-projection activation maxima, and the protocol."""

    model_id: str
    protocol: dict[str, Any]
    candidates: list[dict[str, Any]]
    series: list[dict[str, Any]]  # one row per projection: the unmodified model's activation maxima
    iterations: list[dict[str, Any]]
    baseline_ppl: float | None
    stopped: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def super_weights(self) -> list[dict[str, Any]]:
        return [c for c in self.candidates if c.get(schema.IS_SUPER_WEIGHT)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_superweights(
    lm: LoadedModel,
    windows: WindowSet | None,
    prompts: list[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    max_iter: int = DEFAULT_MAX_ITER,
    n_controls: int = DEFAULT_N_CONTROLS,
    seed: int = 0,
    batch_size: int = 1,
    progress: bool = False,
) -> SuperweightResult:
    """Find super-weight candidates of `lm` and validate each on the evaluation windows of `windows`.

    `prompts` default to DEFAULT_PROMPTS (tokenized with the tokenizer's own special tokens); the
    calibration windows of `windows` join them. The model is bit-identical afterwards.
    """
    _check_options(threshold, max_iter, n_controls, batch_size)
    start = time.perf_counter()
    projections = find_output_projections(lm)
    prompts = list(DEFAULT_PROMPTS if prompts is None else prompts)
    sequences = _sequences(lm, windows, prompts, batch_size)
    named = dict(lm.model.named_parameters())

    candidates: list[Candidate] = []
    iterations: list[dict[str, Any]] = []
    tokens: list[dict[str, Any]] = []
    series: list[dict[str, Any]] = []
    stopped = f"max_iter ({max_iter}) candidates found"
    bar = tqdm(total=max_iter, desc="super weights: activation passes", disable=not progress)
    with ExitStack() as stack, bar:
        for iteration in range(max_iter):
            seen = activation_pass(lm.model, projections, sequences())
            bar.update()
            if iteration == 0:
                series = _series(seen, lm.tokenizer)
            found = [
                c for p in projections
                if (c := _candidate(p, seen.stats[p], named[p.param], threshold, iteration)) is not None
            ]
            if not found:
                stopped = "no spike above the threshold remains"
                break
            best = max(found, key=lambda c: c.output_ratio)
            candidates.append(best)
            tokens.append(_spike_tokens(best, seen, threshold, lm.tokenizer))
            iterations.append({
                "iteration": iteration,
                "n_projections_spiking": len(found),
                "zeroed": f"{best.projection.param}[{schema.format_index(best.index)}]",
                "output_ratio": best.output_ratio,
            })
            stack.enter_context(zeroed(lm.model, best.projection.param, best.flat_index))
    detection_s = time.perf_counter() - start

    rows = [_candidate_row(c, t) for c, t in zip(candidates, tokens)]
    baseline: float | None = None
    notes: list[str] = []
    if windows is not None and windows.eval_offsets:
        params = list(dict.fromkeys(p.param for p in projections))
        baseline = _validate(
            lm, windows, candidates, rows, named, params, n_controls, seed, batch_size, progress, notes
        )
    else:
        notes.append("no evaluation windows: candidates were not validated")
        for row in rows:
            row["verdict"] = NOT_VALIDATED
            row[schema.IS_SUPER_WEIGHT] = False
    total_s = time.perf_counter() - start
    protocol = {
        "method": "super weights (Yu et al. 2024): massive activations of MLP output projections, zeroing validated",
        "threshold": threshold,
        "typical_activation": MEDIAN_RULE,
        "candidate_rule": CANDIDATE_RULE,
        "max_iter": max_iter,
        "n_controls": n_controls,
        "seed": seed,
        "control_rule": CONTROL_RULE,
        "verdict_rule": VERDICT_RULE,
        "prompts": prompts,
        "n_calibration_windows": len(windows.calib_offsets) if windows is not None else 0,
        "n_tokens_per_pass": int(sum(s.numel() for s in sequences())),
        "n_projections": len(projections),
        "evaluation": _eval_protocol(windows),
    }
    return SuperweightResult(
        model_id=lm.model_id,
        protocol=protocol,
        candidates=rows,
        series=series,
        iterations=iterations,
        baseline_ppl=baseline,
        stopped=stopped,
        notes=notes,
        timings={"detection_s": detection_s, "validation_s": total_s - detection_s, "total_s": total_s},
    )


def rank_under_metrics(
    result: SuperweightResult, scores_by_metric: dict[str, dict[str, torch.Tensor]]
) -> dict[str, Any]:
    """Where each candidate ranks under each metric: 1 + the number of scored weights with a strictly larger score."""
    rows = []
    for cand in result.candidates:
        ranks: dict[str, Any] = {}
        for metric, scores in scores_by_metric.items():
            if cand["param"] not in scores:
                ranks[metric] = {"rank": None, "note": f"{metric} did not score {cand['param']}"}
                continue
            score = scores[cand["param"]].reshape(-1)[cand["flat_index"]]
            larger = sum(int((t > score.to(t.device)).sum()) for t in scores.values())
            n = sum(t.numel() for t in scores.values())
            rank = 1 + larger
            ranks[metric] = {"rank": rank, "score": float(score), "n_scored": n, "top_percent": 100.0 * rank / n}
        rows.append({"param": cand["param"], "index": cand["index"], "verdict": cand["verdict"],
                     schema.IS_SUPER_WEIGHT: cand.get(schema.IS_SUPER_WEIGHT, False), "ranks": ranks})
    rule = "rank = 1 + number of scored weights (all tensors) with a strictly larger score"
    return {"rule": rule, "candidates": rows}


def zeroed(model: torch.nn.Module, param: str, flat_index: int) -> ContextManager[Any]:
    """One weight set to 0 for a with-block; esa.perturb restores its exact bits on exit."""
    return apply_perturbation(model, {param: torch.tensor([flat_index])}, "zero", torch.Generator())


def _check_options(threshold: float, max_iter: int, n_controls: int, batch_size: int) -> None:
    if not (math.isfinite(threshold) and threshold > 0):
        raise EsaError(
            f"the super-weight threshold must be a number > 0 (a multiple of the median activation), got {threshold}"
        )
    if max_iter < 1:
        raise EsaError(f"max_iter must be at least 1, got {max_iter}")
    if n_controls < 0:
        raise EsaError(f"n_controls must be at least 0, got {n_controls}")
    if batch_size < 1:
        raise EsaError(f"--batch-size must be at least 1, got {batch_size}")


def _sequences(
    lm: LoadedModel, windows: WindowSet | None, prompts: list[str], batch_size: int
) -> Callable[[], Iterator[torch.Tensor]]:
    """A fresh iterator over the prompts (one [1, len] batch each) then the calibration windows."""
    device = input_device(lm.model)
    encoded = []
    for i, prompt in enumerate(prompts):
        ids = lm.tokenizer(prompt)["input_ids"]
        if not ids:
            raise EsaError(f"prompt {i + 1} has no tokens; give non-empty prompts")
        encoded.append(torch.tensor([ids], dtype=torch.long, device=device))
    has_calib = windows is not None and bool(windows.calib_offsets)
    if not encoded and not has_calib:
        raise EsaError("super-weight detection needs prompts or calibration windows; give at least one")

    def sequences() -> Iterator[torch.Tensor]:
        yield from encoded
        if has_calib:
            yield from windows.batches("calib", batch_size, device)

    return sequences


def _candidate(
    proj: OutputProjection, stats: ProjectionStats, weight: torch.Tensor, threshold: float, iteration: int
) -> Candidate | None:
    """The weight carrying this projection's largest input spike, if both sides clear the threshold."""
    in_median, out_median = stats.inputs.median(), stats.outputs.median()
    if stats.outputs_at_spike is None or not in_median or not out_median:
        return None
    if abs(stats.spike_value) < threshold * in_median:
        return None
    matrix = proj.matrix(weight.detach())
    contribution = (matrix[:, stats.spike_channel].float().cpu() * stats.spike_value).abs()
    row = int(contribution.argmax())
    if contribution[row] == 0:  # the whole column is already zeroed
        return None
    output = float(stats.outputs_at_spike[row])
    if abs(output) < threshold * out_median:
        return None
    index = proj.index(row, stats.spike_channel)
    flat = 0
    for i, size in zip(index, weight.shape):
        flat = flat * size + i
    return Candidate(
        projection=proj, iteration=iteration, out_channel=row, in_channel=stats.spike_channel, flat_index=flat,
        value=float(matrix[row, stats.spike_channel]), input_spike=stats.spike_value, output_spike=output,
        input_median=in_median, output_median=out_median, token=stats.spike_token,
    )


def _spike_tokens(cand: Candidate, seen: ActivationPass, threshold: float, tokenizer: Any) -> dict[str, Any]:
    """The tokens at which the candidate's input channel spikes (is the token's largest and clears the threshold)."""
    stream, peak, channel = seen.stats[cand.projection].inputs.per_token()
    hits = stream[(channel == cand.in_channel) & (peak >= threshold * cand.input_median)]
    ids = Counter(seen.token_ids[hits].tolist())
    positions = Counter(seen.positions[hits].tolist())
    return {
        "spike_token": _token(tokenizer, int(seen.token_ids[cand.token]), position=int(seen.positions[cand.token])),
        "n_spiking_tokens": int(hits.numel()),
        "spike_tokens": [{**_token(tokenizer, t), "count": n} for t, n in _most_common(ids)],
        "spike_positions": [{"position": p, "count": n} for p, n in _most_common(positions)],
    }


def _series(seen: ActivationPass, tokenizer: Any) -> list[dict[str, Any]]:
    """Per projection: the largest input and output activation, where it occurs, and the medians."""
    rows = []
    for proj, stats in seen.stats.items():
        row: dict[str, Any] = {"layer": proj.layer, "expert": proj.expert, "param": proj.param}
        for side, side_stats in (("input", stats.inputs), ("output", stats.outputs)):
            stream, peak, channel = side_stats.per_token()
            median = side_stats.median()
            if peak.numel() == 0:
                row.update({f"{side}_max": None, f"{side}_channel": None, f"{side}_median": None,
                            f"{side}_ratio": None, f"{side}_token": None})
                continue
            at = int(peak.argmax())
            t = int(stream[at])
            row.update({
                f"{side}_max": float(peak[at]),
                f"{side}_channel": int(channel[at]),
                f"{side}_median": median,
                f"{side}_ratio": float(peak[at]) / median if median else None,
                f"{side}_token": _token(tokenizer, int(seen.token_ids[t]), position=int(seen.positions[t])),
            })
        row["n_tokens"] = sum(t.numel() for t in stats.inputs.tokens)
        rows.append(row)
    return rows


def _validate(
    lm: LoadedModel, windows: WindowSet, candidates: list[Candidate], rows: list[dict[str, Any]],
    named: dict[str, torch.nn.Parameter], params: list[str], n_controls: int, seed: int, batch_size: int,
    progress: bool, notes: list[str],
) -> float:
    """Fill each row's perplexities and verdict; returns the baseline perplexity."""
    baseline = evaluate(lm.model, windows, "eval", batch_size).ppl
    if not candidates:
        return baseline
    excluded = {(c.projection.param, c.flat_index) for c in candidates}
    generator = torch.Generator().manual_seed(seed)
    random_draws = _random_draws(named, params, n_controls, excluded, generator)
    magnitude_draws = [
        _magnitude_draws(named, params, abs(c.value), n_controls, excluded, generator) for c in candidates
    ]
    # each distinct weight is zeroed and evaluated once, however many candidates share it as a control
    wanted = [*random_draws, *((c.projection.param, c.flat_index) for c in candidates), *sum(magnitude_draws, [])]
    ppl = {
        (param, flat): _ppl_zeroed(lm, windows, param, flat, batch_size)
        for param, flat in tqdm(list(dict.fromkeys(wanted)), desc="super weights: validation", disable=not progress)
    }
    random_rows = [_control_row(lm, named, p, f, ppl[p, f]) for p, f in random_draws]
    for cand, row, draws in zip(candidates, rows, magnitude_draws):
        magnitude_rows = [_control_row(lm, named, p, f, ppl[p, f]) for p, f in draws]
        row.update(_judge(baseline, ppl[cand.projection.param, cand.flat_index], magnitude_rows, random_rows))
        none_as_large = not draws and n_controls > 0
        row["magnitude_control_note"] = NONE_AS_LARGE if none_as_large else None
    if n_controls == 0:
        notes.append("n_controls = 0: verdicts rest on the minimum perplexity increase alone")
    return baseline


def _random_draws(
    named: dict[str, torch.nn.Parameter], params: list[str], n: int, excluded: set[tuple[str, int]],
    generator: torch.Generator,
) -> list[tuple[str, int]]:
    """`n` distinct weights drawn uniformly from the projections, candidates excluded."""
    sizes = [named[p].numel() for p in params]
    return _draw_distinct(params, sizes, n, excluded, len(excluded), generator, lambda p, k: k)


def _magnitude_draws(
    named: dict[str, torch.nn.Parameter], params: list[str], magnitude: float, n: int,
    excluded: set[tuple[str, int]], generator: torch.Generator,
) -> list[tuple[str, int]]:
    """Up to `n` distinct non-candidate weights of the projections with |w| >= `magnitude`, uniformly."""

    def large(p: str) -> torch.Tensor:
        return named[p].detach().reshape(-1).abs() >= magnitude

    sizes = [int(large(p).sum()) for p in params]
    inside = sum(1 for p, f in excluded if p in named and bool(large(p)[f]))
    return _draw_distinct(params, sizes, n, excluded, inside, generator, lambda p, k: int(large(p).nonzero()[k]))


def _draw_distinct(
    params: list[str], sizes: list[int], n: int, excluded: set[tuple[str, int]], n_excluded: int,
    generator: torch.Generator, locate: Callable[[str, int], int],
) -> list[tuple[str, int]]:
    """min(n, available) distinct (param, flat index) draws, uniform over the `sizes[i]` slots of each param
    (slot k of param p is flat index locate(p, k)); `n_excluded` of the slots are in `excluded` and skipped.

    Rejection sampling: nothing the size of the pool is ever materialised, so a pool of billions is fine.
    """
    ends = torch.tensor(sizes).cumsum(0)
    total = int(ends[-1]) if sizes else 0
    draws: list[tuple[str, int]] = []
    while len(draws) < min(n, total - n_excluded):
        g = int(torch.randint(total, (1,), generator=generator))
        i = int(torch.searchsorted(ends, torch.tensor(g), right=True))
        draw = (params[i], locate(params[i], g - int(ends[i]) + sizes[i]))
        if draw not in excluded and draw not in draws:
            draws.append(draw)
    return draws


def _ppl_zeroed(lm: LoadedModel, windows: WindowSet, param: str, flat: int, batch_size: int) -> float:
    """Evaluation perplexity with one weight zeroed (inf when the loss stops being finite)."""
    with zeroed(lm.model, param, flat):
        try:
            return evaluate(lm.model, windows, "eval", batch_size).ppl
        except EsaError:  # the baseline evaluated fine, so only a non-finite loss gets here
            return math.inf


def _control_row(
    lm: LoadedModel, named: dict[str, torch.nn.Parameter], param: str, flat: int, ppl: float
) -> dict[str, Any]:
    index = schema.unravel(flat, lm.params[param].shape)
    return {"param": param, "index": schema.format_index(index), "value": float(named[param].detach().reshape(-1)[flat]), "ppl": ppl}


def _judge(
    baseline: float, ppl_zeroed: float, magnitude: list[dict[str, Any]], random: list[dict[str, Any]]
) -> dict[str, Any]:
    """Perplexity figures and the verdict of one candidate (see VERDICT_RULE)."""
    delta = ppl_zeroed - baseline
    controls = [c["ppl"] - baseline for c in magnitude + random]
    worst = max([0.0, *controls])
    hurts = delta >= VERDICT_MIN_INCREASE * baseline and delta >= VERDICT_FACTOR * worst

    def summary(rows: list[dict[str, Any]]) -> tuple[float | None, float | None]:
        if not rows:
            return None, None
        mean = sum(r["ppl"] for r in rows) / len(rows)
        return mean, (delta / (mean - baseline) if mean > baseline else None)

    mag_mean, mag_ratio = summary(magnitude)
    rnd_mean, rnd_ratio = summary(random)
    return {
        "ppl_baseline": baseline,
        "ppl_zeroed": ppl_zeroed,
        "delta_ppl": delta,
        "magnitude_controls": magnitude,
        "magnitude_control_ppl_mean": mag_mean,
        "ratio_vs_magnitude_controls": mag_ratio,
        "random_controls": random,
        "random_control_ppl_mean": rnd_mean,
        "ratio_vs_random_controls": rnd_ratio,
        "verdict": SUPER if hurts else NOT_SUPER,
        schema.IS_SUPER_WEIGHT: bool(hurts),
    }


def _candidate_row(cand: Candidate, tokens: dict[str, Any]) -> dict[str, Any]:
    proj = cand.projection
    index = cand.index
    return {
        "iteration": cand.iteration,
        "layer": proj.layer,
        "expert": proj.expert,
        "param": proj.param,
        "index": schema.format_index(index),
        "row": index[-2],
        "col": index[-1],
        "flat_index": cand.flat_index,
        "value": cand.value,
        "input_channel": cand.in_channel,
        "output_channel": cand.out_channel,
        "input_spike": cand.input_spike,
        "output_spike": cand.output_spike,
        "input_median": cand.input_median,
        "output_median": cand.output_median,
        "input_ratio": cand.input_ratio,
        "output_ratio": cand.output_ratio,
        **tokens,
    }


def _token(tokenizer: Any, token_id: int, position: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": token_id, "token": tokenizer.convert_ids_to_tokens(token_id), "text": tokenizer.decode([token_id])
    }
    if position is not None:
        out["position"] = position
    return out


def _eval_protocol(windows: WindowSet | None) -> dict[str, Any] | None:
    if windows is None:
        return None
    return {
        "split": "eval", "seq_len": windows.seq_len, "n_windows": len(windows.eval_offsets),
        "bos_id": windows.bos_id, "n_predicted_tokens": windows.n_predicted_tokens("eval"),
    }



def _most_common(counts: Counter) -> list[tuple[int, int]]:
    """The TOP_TOKENS most frequent keys, ties by key."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TOKENS]

