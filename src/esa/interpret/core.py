"""esa.interpret: what the selected weights compute, how they shape attention, where knowledge sits.

On the calibration windows (N tokens) and for each selected weight:
1. input side (esa.interpret.inputs): when its input channel fires;
2. output side (esa.interpret.effects): the model with the weight zeroed against the intact model and
   against `control_trials` control weights of the same tensor (one draw of esa.perturb.
   random_matched_magnitude per trial, matched to the tensor's largest selected |w|, shared by the
   tensor's selected weights): massive activations, first-token attention per layer and head, next-token
   probabilities (stopwords, promoted tokens), and the logit lens of residual-writing weights;
3. a role from esa.interpret.roles;
then, for the whole selection: per-head attention features with all selected weights zeroed vs random-k
(esa.interpret.heads) and knowledge localisation on the probes (esa.interpret.knowledge).
Every zeroing goes through esa.perturb.apply_perturbation (bit-exact restore, checksummed).
Cost: (2 + #weights + #tensors x trials + trials) eager forwards over the calibration windows, and
(1 + trials) x #groups probe batches; memory: one batch's attention probabilities and logits.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import torch
from tqdm import tqdm

from esa.artifacts.schema import format_index
from esa.data.windows import WindowSet
from esa.errors import EsaError
from esa.interpret import effects, heads, inputs, knowledge, roles
from esa.interpret.forward import Snapshot, eager_attention, snapshot
from esa.interpret.probes import BUILTIN_PROBES, Probe
from esa.interpret.selection import SelectedWeight, check_selection, flat_index
from esa.models.loader import input_device
from esa.models.types import LoadedModel
from esa.perturb import apply_perturbation, random_matched, random_matched_magnitude, trial_generator

DEFAULT_CONTROL_TRIALS = 2
RESIDUAL_WRITERS = {("attention", "o"), ("mlp", "down"), ("expert", "down")}


@dataclass
class InterpretResult:
    """JSON-ready rows per weight, the role summary, the head analysis, knowledge localisation, the protocol."""

    model_id: str
    protocol: dict[str, Any]
    weights: list[dict[str, Any]]
    roles: dict[str, Any]
    attention: dict[str, Any]
    knowledge: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interpret(
    lm: LoadedModel,
    windows: WindowSet,
    selection: Iterable[Any],
    *,
    seed: int,
    batch_size: int,
    probes: list[Probe] | None = None,
    control_trials: int = DEFAULT_CONTROL_TRIALS,
    scores: Mapping[str, torch.Tensor] | None = None,
    knowledge_probes: bool = True,
    progress: bool = False,
) -> InterpretResult:
    """Interpret `selection` (weights of `lm`) on the calibration windows; the model is bit-identical afterwards.

    `probes` default to BUILTIN_PROBES; `scores` (param -> score tensor) give the heads' sensitivity mass,
    else the selected weights' own scores do. `knowledge_probes=False` skips localisation.
    """
    weights = check_selection(lm, selection)
    if not (isinstance(control_trials, int) and control_trials >= 1):
        raise EsaError(f"control_trials must be a whole number >= 1, got {control_trials!r}")
    if batch_size < 1:
        raise EsaError(f"--batch-size must be at least 1, got {batch_size}")
    if not windows.calib_offsets or windows.seq_len < 2:
        raise EsaError("interpretation needs calibration windows of at least 2 tokens; raise --max-samples")
    probe_list = list(BUILTIN_PROBES if probes is None else probes)
    encoded = knowledge.encode_probes(lm, probe_list) if knowledge_probes else []
    start, timings, notes = time.perf_counter(), {}, []
    device = input_device(lm.model)
    named = dict(lm.model.named_parameters())
    batches = list(windows.batches("calib", batch_size, device))
    token_ids = torch.cat([b.reshape(-1).cpu() for b in batches])
    positions = torch.cat([torch.arange(b.shape[1]).repeat(b.shape[0]) for b in batches])
    nll_inputs = torch.cat([b[:, :-1].reshape(-1).cpu() for b in batches])
    nll_targets = torch.cat([b[:, 1:].reshape(-1).cpu() for b in batches])
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    stop, frequent = effects.stopword_ids(lm.tokenizer, vocab), effects.frequent_ids(token_ids, vocab)

    traces, medians = inputs.trace_inputs(lm, weights, batches)
    timings["input_side_s"] = time.perf_counter() - start

    def zeroed(sel: Mapping[str, torch.Tensor] | None) -> Snapshot:
        if sel is None:
            return snapshot(lm.model, batches)
        with apply_perturbation(lm.model, sel, "zero", torch.Generator()):
            return snapshot(lm.model, batches)

    with eager_attention(lm.model):
        base = zeroed(None)
        bar = tqdm(weights, desc="interpret: zeroing weights", disable=not progress)
        single = {w: zeroed({w.param: torch.tensor([flat_index(lm, w)])}) for w in bar}
        control_sel = _control_weights(lm, weights, named, seed, control_trials)
        control = {p: [(sel, zeroed(sel)) for sel in sels] for p, sels in control_sel.items()}
        timings["weights_s"] = time.perf_counter() - start - timings["input_side_s"]
        target = _as_index_sets(lm, weights)
        top = zeroed(target)
        shapes = {p: lm.params[p].shape for p in target}
        random_k = [zeroed(random_matched(target, shapes, trial_generator(seed, "interpret:random_k", t)))
                    for t in range(control_trials)]
    timings["attention_s"] = time.perf_counter() - start - timings["input_side_s"] - timings["weights_s"]

    rows = []
    for w in weights:
        rows.append(_weight_row(lm, w, named, traces, medians, base, single[w], control[w.param], stop, frequent,
                                token_ids, positions, windows.bos_id, nll_inputs, nll_targets))
    role_summary = {"taxonomy": roles.taxonomy(), "control_factor": roles.CONTROL_FACTOR,
                    **roles.summary([r["role"] for r in rows])}
    attention = _attention(lm, weights, scores, base, top, random_k, notes)
    local = None
    if knowledge_probes:
        t0 = time.perf_counter()
        local = _knowledge(lm, weights, encoded, probe_list, seed, control_trials, device)
        timings["knowledge_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    protocol = {
        "method": "zero each selected weight alone (and all together) on the calibration windows; compare with "
                  "control weights of the same tensors",
        "seed": seed, "control_trials": control_trials, "batch_size": batch_size,
        "control_rule": "per tensor and trial, one weight drawn by esa.perturb.random_matched_magnitude matched to "
                        "the tensor's largest selected |w| (trial_generator(seed, 'interpret:control:<param>', t)); "
                        "random-k: esa.perturb.random_matched of the whole selection ('interpret:random_k')",
        "fire_rule": inputs.FIRE_RULE, "stopword_rule": effects.STOPWORD_RULE,
        "frequent_tokens": f"the {effects.FREQUENT} most frequent tokens of the calibration windows",
        "attention": "sink = mean attention probability on key 0 over queries q >= 1; entropy in nats; eager kernel",
        "hidden_states": "max |h| of the residual stream entering each block (embedding output = block 0)",
        "interval_rule": heads.INTERVAL_RULE,
        "knowledge_rule": f"net drop = logp drop zeroing the group - mean drop zeroing random weights of the same "
                          f"tensors; a fact depends on a group when its net drop >= {knowledge.DEPEND_NATS} nats",
        "n_calibration_windows": len(windows.calib_offsets), "seq_len": windows.seq_len,
        "n_tokens": int(token_ids.numel()), "bos_id": windows.bos_id,
        "n_stopword_tokens": int(stop.numel()), "n_weights": len(weights),
        "n_probes": len(probe_list) if knowledge_probes else 0,
        "probes": "built-in" if probes is None else "user",
    }
    return InterpretResult(lm.model_id, protocol, rows, role_summary, attention, local, notes, timings)


def _weight_row(
    lm: LoadedModel, w: SelectedWeight, named: dict[str, torch.nn.Parameter], traces: dict, medians: dict,
    base: Snapshot, zero: Snapshot, controls: list[tuple[dict[str, torch.Tensor], Snapshot]], stop: torch.Tensor,
    frequent: torch.Tensor, token_ids: torch.Tensor, positions: torch.Tensor, bos_id: int | None,
    nll_inputs: torch.Tensor, nll_targets: torch.Tensor,
) -> dict[str, Any]:
    info = lm.params[w.param]
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    token = w.index[0] if info.component in ("embedding", "lm_head") and info.shape[0] == vocab else None
    downstream = not (info.layer is None and info.component != "embedding")
    value = float(named[w.param].detach().reshape(-1)[flat_index(lm, w)])
    found = inputs.channels(lm, w)
    side = None if found is None else inputs.input_side(traces[w], medians[found[0]], token_ids, positions, bos_id,
                                                        lm.tokenizer)
    measured = effects.measures(base, zero, info.layer, downstream, stop, frequent, token, nll_inputs, nll_targets)
    control_rows = []
    for sel, snap in controls:
        (param, idx), = sel.items()
        flat = int(idx[0])
        control_rows.append({
            "param": param, "index": format_index(torch.unravel_index(torch.tensor(flat), info.shape)),
            "value": float(named[param].detach().reshape(-1)[flat]),
            **effects.measures(base, snap, info.layer, downstream, stop, frequent, None, nll_inputs, nll_targets),
        })
    role, met = roles.assign(info.component, measured, control_rows)
    lens = None
    if found is not None and (info.component, info.role) in RESIDUAL_WRITERS and side and side.get("top_activations"):
        lens = effects.logit_lens(lm, found[2], value * side["top_activations"][0]["value"], stop)
    first = 0 if info.layer is None else info.layer + 1
    return {
        "param": w.param, "index": format_index(w.index), "label": w.label, "source": w.source, "score": w.score,
        "value": value, "layer": info.layer, "component": info.component, "param_role": info.role,
        "input_channel": None if found is None else found[1], "output_channel": None if found is None else found[2],
        "role": role, "roles_met": met,
        "input": side,
        "token": None if token is None else inputs.token_facts(token, token_ids, lm.tokenizer),
        "effects": measured, "controls": control_rows,
        "sink_per_layer": {
            "from_layer": first if downstream else None,
            "intact": base.sink.mean(1).tolist(), "zeroed": zero.sink.mean(1).tolist(),
            "control": torch.stack([s.sink.mean(1) for _, s in controls]).mean(0).tolist(),
        },
        "sink_per_head_zeroed": zero.sink.tolist(),
        "hidden_max_per_layer": {"intact": base.hidden_max.tolist(), "zeroed": zero.hidden_max.tolist()},
        "ablation_tokens": effects.promoted(base, zero, stop, lm.tokenizer),
        "logit_lens": lens,
    }


def _control_weights(
    lm: LoadedModel, weights: list[SelectedWeight], named: dict[str, torch.nn.Parameter], seed: int, trials: int
) -> dict[str, list[dict[str, torch.Tensor]]]:
    """Per tensor, `trials` single control weights in the magnitude decile of its largest selected weight."""
    out: dict[str, list[dict[str, torch.Tensor]]] = {}
    for param in dict.fromkeys(w.param for w in weights):
        flats = [flat_index(lm, w) for w in weights if w.param == param]
        values = named[param].detach().reshape(-1)[torch.tensor(flats, device=named[param].device)].abs()
        target = {param: torch.tensor([flats[int(values.argmax())]])}
        out[param] = [random_matched_magnitude(target, {param: named[param]},
                                               trial_generator(seed, f"interpret:control:{param}", t))
                      for t in range(trials)]
    return out


def _as_index_sets(lm: LoadedModel, weights: list[SelectedWeight]) -> dict[str, torch.Tensor]:
    sets: dict[str, list[int]] = {}
    for w in weights:
        sets.setdefault(w.param, []).append(flat_index(lm, w))
    return {p: torch.tensor(f) for p, f in sets.items()}


def _attention(
    lm: LoadedModel, weights: list[SelectedWeight], scores: Mapping[str, torch.Tensor] | None, base: Snapshot,
    top: Snapshot, random_k: list[Snapshot], notes: list[str],
) -> dict[str, Any]:
    """Per-head features intact / top-k zeroed / random-k zeroed, and their Spearman correlation with head mass."""
    if scores is None:
        sparse: dict[str, torch.Tensor] = {}
        for w in weights:
            t = sparse.setdefault(w.param, torch.zeros(lm.params[w.param].shape, dtype=torch.float64))
            t[w.index] += w.score or 0.0
        scores, mass_from = sparse, "the selected weights' own scores (no full score tensors given)"
    else:
        mass_from = "the full score tensors"
    mass, skipped = heads.head_mass(lm, scores)
    notes.extend(skipped)
    rnd_sink = torch.stack([s.sink for s in random_k]).mean(0)
    rnd_entropy = torch.stack([s.entropy for s in random_k]).mean(0)
    features = {
        "sink_intact": base.sink, "entropy_intact": base.entropy,
        "sink_change_topk": top.sink - base.sink, "entropy_change_topk": top.entropy - base.entropy,
        "sink_change_topk_minus_random": (top.sink - base.sink) - (rnd_sink - base.sink),
        "entropy_change_topk_minus_random": (top.entropy - base.entropy) - (rnd_entropy - base.entropy),
    }
    return {
        "mass_from": mass_from,
        "head_mass": mass.tolist(),
        "sink": {"intact": base.sink.tolist(), "topk_zeroed": top.sink.tolist(), "randomk_zeroed": rnd_sink.tolist()},
        "entropy": {"intact": base.entropy.tolist(), "topk_zeroed": top.entropy.tolist(),
                    "randomk_zeroed": rnd_entropy.tolist()},
        "hidden_max": {"intact": base.hidden_max.tolist(), "topk_zeroed": top.hidden_max.tolist(),
                       "randomk_zeroed": torch.stack([s.hidden_max for s in random_k]).mean(0).tolist()},
        "mean_sink": {"intact": float(base.sink.mean()), "topk_zeroed": float(top.sink.mean()),
                      "randomk_zeroed": float(rnd_sink.mean())},
        "mean_entropy": {"intact": float(base.entropy.mean()), "topk_zeroed": float(top.entropy.mean()),
                         "randomk_zeroed": float(rnd_entropy.mean())},
        "correlation_with_head_mass": {name: heads.spearman(mass, f) for name, f in features.items()},
    }


def _knowledge(
    lm: LoadedModel, weights: list[SelectedWeight], encoded: list[tuple[list[int], list[int]]], probes: list[Probe],
    seed: int, trials: int, device: torch.device,
) -> dict[str, Any]:
    def score(sel: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        if sel is None:
            return knowledge.answer_logprobs(lm, encoded, device)
        with apply_perturbation(lm.model, sel, "zero", torch.Generator()):
            return knowledge.answer_logprobs(lm, encoded, device)

    def controls(label: str, sel: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        shapes = {p: lm.params[p].shape for p in sel}
        return [random_matched(sel, shapes, trial_generator(seed, f"interpret:knowledge:{label}", t))
                for t in range(trials)]

    out = {}
    for by, key in (("layer", lambda i: "embedding/head" if i.layer is None else f"layer {i.layer}"),
                    ("component", lambda i: i.component)):
        groups: dict[str, list[SelectedWeight]] = {}
        for w in weights:
            groups.setdefault(key(lm.params[w.param]), []).append(w)
        out[f"by_{by}"] = knowledge.localise({g: _as_index_sets(lm, ws) for g, ws in groups.items()}, score,
                                             controls, probes)
    return out
