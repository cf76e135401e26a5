"""Fine-tune a causal LM in one of four ways and measure what it learned and what it forgot.

All modes minimise the mean next-token NLL (`esa.evaluation.next_token_nll`) of seeded batches of the
training windows with AdamW (weight decay 0 unless asked), dropout off (eval mode), for `steps` steps.
- sparse (FISH mask, Sung et al. 2021; SIFT): only the k masked weights train. They are gathered into one
  float32 vector θ; each parameter's gradient is gathered at the mask by a post-accumulate hook and freed
  at once, AdamW updates θ, and θ is scattered back. Optimizer state is 2k floats (O(k), not O(model));
  every weight outside the mask keeps its bits because nothing else is ever written.
- full: every weight trains (AdamW state: two model-sized buffers).
- lora: peft adapters sized to the budget (esa.finetune.lora), merged into the weights at the end.
- frozen-critical: full fine-tuning, except that the top-K critical weights get their saved bits written
  back after every step, so momentum and weight decay cannot move them.
- protect_superweights (full and frozen-critical): the given positions (e.g. `superweight_candidates`)
  join the frozen set. A ranking by gradient (grad_squared) need not contain a super weight, which is
  large but can have a small gradient; this names it explicitly.
- protect="ewc" (Kirkpatrick et al. 2017): the gradient of (λ/2) Σ F_i (w_i - w0_i)² is added before each
  step, F = grad_squared (empirical Fisher diagonal) on the retain windows' calibration split. It costs an
  anchor copy and a Fisher copy of the trained weights (O(k) in sparse mode, two model copies in full).
Masks for sparse mode are scored on the training windows; frozen-critical and EWC measure what to protect
on the retain windows when given (the knowledge to keep), else on the training windows.
The model is changed in place (use `esa.finetune.preserved` to get it back bit for bit).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from tqdm import tqdm

from esa.analysis import detect_superweights
from esa.artifacts.schema import format_index, unravel
from esa.data.windows import WindowSet
from esa.errors import EsaError
from esa.evaluation import evaluate, next_token_nll
from esa.finetune import lora
from esa.finetune.masks import RANDOM, Mask, mask_size, metric_mask, resolve_budget, score, weight_params
from esa.metrics import METRICS
from esa.models import LoadedModel, input_device
from esa.ranking import top_k

MODES = ("sparse", "full", "lora", "frozen-critical")
PROTECTABLE_MODES = ("full", "frozen-critical")  # the modes that can hold protected super weights frozen
PROTECTIONS = ("ewc",)
DEFAULT_BUDGET = 0.005  # sparse and lora: 0.5% of the weights
DEFAULT_FROZEN = 1000  # frozen-critical: "lock the top 1000 critical weights"
DEFAULT_LAMBDA = 1e5
SAMPLING_RULE = "each epoch a torch.Generator().manual_seed(seed) permutation of the training windows, cut into batches"


@dataclass
class FinetuneResult:
    """What one fine-tuning run trained, what it cost, and how target and retain perplexity moved."""

    mode: str
    protect: str | None
    protect_lambda: float | None
    mask_metric: str | None
    budget_k: int | None  # masked (sparse), matched (lora) or frozen (frozen-critical) weights
    n_frozen: int  # weights that kept their bits by construction: frozen-critical top-K ∪ protected super weights
    n_weights: int
    trainable: int
    optimizer_state_bytes: int
    steps: int
    lr: float
    batch_size: int
    seed: int
    time_s: float
    train_ppl_before: float
    train_ppl_after: float
    retain_ppl_before: float | None
    retain_ppl_after: float | None
    superweight: dict[str, Any] | None  # param, index, flat_index, value_before, value_after
    curve: list[dict[str, Any]]  # one row per step: loss (and eval_ppl where evaluated)
    lora: dict[str, Any] | None
    protocol: dict[str, Any]
    delta: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = field(default=None, repr=False)

    @property
    def train_ppl_gain(self) -> float:
        return self.train_ppl_before - self.train_ppl_after

    @property
    def retain_ppl_loss(self) -> float | None:
        if self.retain_ppl_before is None or self.retain_ppl_after is None:
            return None
        return self.retain_ppl_after - self.retain_ppl_before

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the sparse delta's tensors are summarised by their size)."""
        out = {k: v for k, v in asdict(self).items() if k != "delta"}
        out["n_changed"] = None if self.delta is None else sum(int(i.numel()) for i, _ in self.delta.values())
        out["train_ppl_gain"] = self.train_ppl_gain
        out["retain_ppl_loss"] = self.retain_ppl_loss
        return out


def finetune(
    lm: LoadedModel,
    train_windows: WindowSet,
    eval_windows: WindowSet,
    *,
    mode: str = "sparse",
    budget: float | None = None,
    budget_k: int | None = None,
    mask_metric: str = "grad_squared",
    protect: str | None = None,
    protect_lambda: float = DEFAULT_LAMBDA,
    retain_windows: WindowSet | None = None,
    steps: int = 50,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    batch_size: int = 4,
    eval_every: int | None = None,
    seed: int = 0,
    superweight: str | tuple[str, int] | None = "detect",
    mask_scores: dict[str, torch.Tensor] | None = None,
    fisher: dict[str, torch.Tensor] | None = None,
    protect_superweights: Sequence[tuple[str, int]] = (),
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune `lm` on the calibration windows of `train_windows` and evaluate before and after.

    Target-domain perplexity is measured on the eval windows of `eval_windows`, forgetting on the eval
    windows of `retain_windows`; `eval_every` steps (default steps // 4) the target perplexity is added to
    the learning curve. The same seed gives the same weights and numbers.
    `superweight` is the weight (parameter name, flat index) whose value is reported before and after:
    "detect" takes the strongest super-weight candidate (one activation pass), None reports none.
    `mask_scores` (scores of `mask_metric` on the mask's data) and `fisher` (grad_squared on the protect
    data) skip recomputing them when several runs share one model. `protect_superweights` lists
    (parameter name, flat index) positions that keep their exact bits (full and frozen-critical modes).
    """
    params = weight_params(lm)
    n_weights = sum(p.numel() for p in params.values())
    k = _check(lm, train_windows, eval_windows, retain_windows, mode, budget, budget_k, mask_metric, protect,
               protect_lambda, steps, lr, weight_decay, batch_size, eval_every, n_weights)
    pinned = _positions(params, protect_superweights, mode)
    plan = lora.plan_lora(lm, k) if mode == "lora" else None
    eval_every = eval_every or max(1, steps // 4)
    protect_on = retain_windows if retain_windows is not None and retain_windows.calib_offsets else train_windows

    sw = watched_weight(lm, superweight)
    before = evaluate(lm.model, eval_windows, "eval", batch_size).ppl
    retain_before = evaluate(lm.model, retain_windows, "eval", batch_size).ppl if retain_windows else None

    mask = frozen = None
    if mode in ("sparse", "frozen-critical"):
        on = train_windows if mode == "sparse" else protect_on
        chosen = (top_k({n: mask_scores[n] for n in params}, k, "global").by_param()
                  if mask_scores is not None and mask_metric != RANDOM
                  else metric_mask(lm, params, mask_metric, on, k, seed=seed, batch_size=batch_size,
                                   progress=progress))
        mask, frozen = (chosen, None) if mode == "sparse" else (None, chosen)
    if pinned:
        frozen = _union(frozen or {}, pinned)
    if protect == "ewc" and fisher is None:
        fisher = score(lm, params, "grad_squared", protect_on, seed=seed, batch_size=batch_size, progress=progress)

    start = time.perf_counter()
    with _training_state(lm.model):
        trainer = _make_trainer(lm, params, mode, mask, frozen, plan)
        ewc = _Ewc(trainer.with_fisher(fisher), protect_lambda) if fisher is not None else None
        del fisher
        optimizer = torch.optim.AdamW(trainer.optimized, lr=lr, weight_decay=weight_decay)
        curve = _loop(lm, trainer, optimizer, ewc, train_windows, eval_windows, steps, batch_size, eval_every,
                      seed, progress)
        state_bytes = _state_bytes(optimizer)
        delta = trainer.finish()
    elapsed = time.perf_counter() - start

    after = evaluate(lm.model, eval_windows, "eval", batch_size).ppl
    curve[-1]["eval_ppl"] = after
    retain_after = evaluate(lm.model, retain_windows, "eval", batch_size).ppl if retain_windows else None
    if sw is not None:
        sw["value_after"] = float(dict(lm.model.named_parameters())[sw["param"]].detach().reshape(-1)[sw["flat_index"]])
    return FinetuneResult(
        mode=mode, protect=protect, protect_lambda=protect_lambda if protect else None,
        mask_metric=mask_metric if mode in ("sparse", "frozen-critical") else None,
        budget_k=k if mode != "full" else None, n_weights=n_weights, trainable=trainer.trainable,
        n_frozen=mask_size(frozen) if frozen else 0,
        optimizer_state_bytes=state_bytes, steps=steps, lr=lr, batch_size=batch_size, seed=seed, time_s=elapsed,
        train_ppl_before=before, train_ppl_after=after, retain_ppl_before=retain_before,
        retain_ppl_after=retain_after, superweight=sw, curve=curve,
        lora=plan.describe() if plan else None,
        protocol={
            "objective": "mean next-token NLL of each batch (esa.evaluation.next_token_nll)",
            "optimizer": f"AdamW(lr={lr}, betas=(0.9, 0.999), weight_decay={weight_decay})",
            "dropout": "off (model in eval mode)",
            "sampling": SAMPLING_RULE,
            "n_train_windows": len(train_windows.calib_offsets),
            "seq_len": train_windows.seq_len,
            "mask_data": "training windows" if mode == "sparse" else
                         ("retain calibration windows" if protect_on is retain_windows else "training windows"),
            "protected_superweights": [f"{n}[{format_index(unravel(i, params[n].shape))}]"
                                       for n, i in protect_superweights],
            "ewc_penalty": "(lambda/2) * sum F (w - w0)^2, F = grad_squared on the protect data" if protect else None,
            "train_ppl": "perplexity on the eval windows of the training domain",
            "retain_ppl": "perplexity on the eval windows of the retain text" if retain_windows else None,
            "superweight": ("strongest super-weight candidate (esa.analysis.detect_superweights, one pass, "
                            "not validated) of the model before training") if superweight == "detect" else
                           ("given by the caller" if sw else None),
        },
        delta=delta,
    )


def _check(
    lm: LoadedModel, train: WindowSet, evals: WindowSet, retain: WindowSet | None, mode: str, budget: float | None,
    budget_k: int | None, mask_metric: str, protect: str | None, protect_lambda: float, steps: int, lr: float,
    weight_decay: float, batch_size: int, eval_every: int | None, n_weights: int,
) -> int:
    """Every check that needs no heavy work; returns the budget in weights."""
    if mode not in MODES:
        raise EsaError(f"unknown fine-tuning mode {mode!r}; choose one of {', '.join(MODES)}")
    if protect is not None and protect not in PROTECTIONS:
        raise EsaError(f"unknown protection {protect!r}; choose one of {', '.join(PROTECTIONS)}")
    if protect is not None and mode == "lora":
        raise EsaError("--protect ewc penalises moves of the base weights, which LoRA never moves; use another mode")
    if protect is not None and not (math.isfinite(protect_lambda) and protect_lambda > 0):
        raise EsaError(f"--protect-lambda must be a number > 0, got {protect_lambda}")
    if mask_metric != RANDOM and mask_metric not in METRICS:
        raise EsaError(f"unknown mask metric {mask_metric!r}; choose one of: {', '.join([*METRICS, RANDOM])}")
    if steps < 1:
        raise EsaError(f"--steps must be at least 1, got {steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise EsaError(f"--lr must be a number > 0, got {lr}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise EsaError(f"weight decay must be a number >= 0, got {weight_decay}")
    if batch_size < 1:
        raise EsaError(f"--batch-size must be at least 1, got {batch_size}")
    if eval_every is not None and eval_every < 1:
        raise EsaError(f"eval_every must be at least 1, got {eval_every}")
    if not train.calib_offsets:
        raise EsaError("there are no training windows; give a longer training text or a smaller --seq-len")
    if not evals.eval_offsets:
        raise EsaError("there are no evaluation windows; give a longer evaluation text or a smaller --seq-len")
    if retain is not None and not retain.eval_offsets:
        raise EsaError("there are no retain windows to evaluate; give a longer --retain text or a smaller --seq-len")
    if protect is not None and retain is None:
        raise EsaError("--protect ewc needs --retain data (the knowledge to protect)")
    if mode == "full":
        if budget is not None or budget_k is not None:
            raise EsaError("--mode full trains every weight; --budget applies to sparse, lora and frozen-critical")
        return n_weights
    default = DEFAULT_FROZEN if mode == "frozen-critical" else DEFAULT_BUDGET
    return resolve_budget(n_weights, budget, budget_k, default)


def check_protectable(modes: Sequence[str]) -> None:
    """EsaError unless every mode can keep protected super weights frozen (full, frozen-critical)."""
    other = [m for m in modes if m not in PROTECTABLE_MODES]
    if other:
        raise EsaError("--protect-superweights freezes weights during full or frozen-critical fine-tuning; "
                       f"--mode {', '.join(other)} is not one of them: give only those modes")


def _positions(params: dict[str, nn.Parameter], positions: Sequence[tuple[str, int]], mode: str) -> Mask:
    """(name, flat index) pairs as a mask; EsaError for a mode that cannot freeze or a position not in the model."""
    if positions:
        check_protectable([mode])
    out: dict[str, list[int]] = {}
    for name, flat in positions:
        if name not in params or not 0 <= flat < params[name].numel():
            raise EsaError(f"the protected weight {name}[{flat}] is not a weight of the model; "
                           "give (parameter, flat index) positions of lm.params")
        out.setdefault(name, []).append(int(flat))
    return {n: torch.tensor(sorted(set(v)), dtype=torch.long) for n, v in out.items()}


def _union(a: Mask, b: Mask) -> Mask:
    """Sorted distinct flat indices of both masks, per parameter."""
    none = torch.empty(0, dtype=torch.long)
    return {n: torch.unique(torch.cat([a.get(n, none), b.get(n, none)])) for n in {**a, **b}}


def superweight_candidates(lm: LoadedModel) -> list[tuple[str, int]]:
    """(parameter, flat index) of every super-weight candidate of `lm` (detect_superweights, default passes,
    not validated: freezing a candidate that is not a super weight costs nothing but one frozen weight)."""
    return [(c["param"], int(c["flat_index"])) for c in detect_superweights(lm, None, n_controls=0).candidates]


def watched_weight(lm: LoadedModel, which: str | tuple[str, int] | None) -> dict[str, Any] | None:
    """The watched weight before training: given, or the strongest super-weight candidate (not validated)."""
    if which is None:
        return None
    if which == "detect":
        found = detect_superweights(lm, None, max_iter=1, n_controls=0).candidates
        if not found:
            return None
        which = (found[0]["param"], found[0]["flat_index"])
    name, flat = which
    named = dict(lm.model.named_parameters())
    if name not in named or not 0 <= flat < named[name].numel():
        raise EsaError(f"the watched super weight {name}[{flat}] is not in the model")
    value = float(named[name].detach().reshape(-1)[flat])
    return {"param": name, "index": format_index(unravel(flat, named[name].shape)), "flat_index": flat,
            "value_before": value}


@contextmanager
def _training_state(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and grad flags set by the trainer; both put back afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
            p.grad = None
        for m, training in modes:
            m.training = training


class _Dense:
    """full and frozen-critical: AdamW on the parameters themselves; frozen entries re-written after each step."""

    def __init__(self, params: dict[str, nn.Parameter], frozen: Mask | None) -> None:
        self.params = params
        self.frozen = {n: (params[n], idx, params[n].detach().reshape(-1)[idx].clone()) for n, idx in (frozen or {}).items()}
        for p in params.values():
            p.requires_grad_(True)
        self.optimized = list(params.values())
        self.trainable = sum(p.numel() for p in params.values()) - (mask_size(frozen) if frozen else 0)

    def with_fisher(self, fisher: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(trained tensor, its Fisher values) pairs for the EWC penalty."""
        return [(p, fisher[n]) for n, p in self.params.items()]

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        with torch.no_grad():
            for p, idx, saved in self.frozen.values():
                p.view(-1)[idx] = saved

    def finish(self) -> None:
        return None


class _Sparse:
    """sparse: θ = the masked values (float32), AdamW on θ only; gradients gathered at the mask by hooks."""

    def __init__(self, params: dict[str, nn.Parameter], mask: Mask) -> None:
        self.params = {n: params[n] for n in mask}
        self.mask = mask
        self.sizes = [idx.numel() for idx in mask.values()]
        self.original = {n: p.detach().reshape(-1)[mask[n]].clone() for n, p in self.params.items()}
        self.theta = nn.Parameter(torch.cat([v.float() for v in self.original.values()]))
        self.optimized = [self.theta]
        self.trainable = self.theta.numel()
        self.grads: dict[str, torch.Tensor] = {}
        for p in self.params.values():
            p.requires_grad_(True)
        self.handles = [p.register_post_accumulate_grad_hook(self._gather(n)) for n, p in self.params.items()]

    def _gather(self, name: str):
        def hook(p: torch.Tensor) -> None:
            self.grads[name] = p.grad.reshape(-1)[self.mask[name]].float()
            p.grad = None
        return hook

    def with_fisher(self, fisher: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """θ and the Fisher values of its entries (O(k))."""
        return [(self.theta, torch.cat([fisher[n].reshape(-1)[idx] for n, idx in self.mask.items()]))]

    def before_step(self) -> None:
        zero = torch.zeros(0)
        self.theta.grad = torch.cat([self.grads.get(n, zero.new_zeros(s)) for n, s in zip(self.mask, self.sizes)])
        self.grads.clear()

    def after_step(self) -> None:
        with torch.no_grad():
            for (n, idx), chunk in zip(self.mask.items(), self.theta.detach().split(self.sizes)):
                p = self.params[n]
                p.view(-1)[idx] = chunk.to(p.dtype)

    def finish(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Remove the hooks; the delta is the masked entries whose stored value changed."""
        for handle in self.handles:
            handle.remove()
        delta = {}
        for n, idx in self.mask.items():
            new = self.params[n].detach().reshape(-1)[idx]
            changed = new.view(torch.uint8).view(-1, new.element_size()).ne(
                self.original[n].view(torch.uint8).view(-1, new.element_size())).any(1)
            if bool(changed.any()):
                delta[n] = (idx[changed].clone(), new[changed].clone())
        return delta


class _Lora:
    """lora: peft adapters; only their A and B train; merged into the weights by `finish`."""

    def __init__(self, lm: LoadedModel, plan: lora.LoraPlan) -> None:
        self.peft_model = lora.attach(lm, plan)
        self.optimized = [p for p in self.peft_model.parameters() if p.requires_grad]
        self.trainable = sum(p.numel() for p in self.optimized)

    def with_fisher(self, fisher: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return []

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def finish(self) -> None:
        lora.merge(self.peft_model)
        return None


def _make_trainer(lm: LoadedModel, params: dict[str, nn.Parameter], mode: str, mask: Mask | None,
                  frozen: Mask | None, plan: lora.LoraPlan | None) -> _Dense | _Sparse | _Lora:
    for p in lm.model.parameters():
        p.requires_grad_(False)
    if mode == "sparse":
        return _Sparse(params, mask)
    if mode == "lora":
        return _Lora(lm, plan)
    return _Dense(params, frozen)


class _Ewc:
    """Adds λ F (w - w0) to each trained tensor's gradient: the gradient of (λ/2) Σ F (w - w0)²."""

    def __init__(self, pairs: list[tuple[torch.Tensor, torch.Tensor]], lam: float) -> None:
        self.lam = lam
        self.terms = [(tensor, tensor.detach().clone(), f.to(tensor.dtype)) for tensor, f in pairs]

    def apply(self) -> float:
        """Add the penalty's gradient; return the penalty's value."""
        total = 0.0
        with torch.no_grad():
            for tensor, anchor, f in self.terms:
                diff = tensor - anchor
                total += 0.5 * self.lam * float((f * diff * diff).sum(dtype=torch.float64))
                grad = self.lam * f * diff
                tensor.grad = grad if tensor.grad is None else tensor.grad.add_(grad)
        return total


def _loop(lm: LoadedModel, trainer: Any, optimizer: torch.optim.Optimizer, ewc: _Ewc | None, train: WindowSet,
          evals: WindowSet, steps: int, batch_size: int, eval_every: int, seed: int, progress: bool) -> list[dict]:
    curve: list[dict[str, Any]] = []
    batches = _batches(train, batch_size, seed, input_device(lm.model))
    bar = tqdm(range(1, steps + 1), desc="fine-tuning", unit="step", disable=not progress)
    for step in bar:
        ids = next(batches)
        nll, _ = next_token_nll(lm.model, ids)
        loss = nll.mean()
        if not torch.isfinite(loss):
            raise EsaError(f"non-finite training loss at step {step}; lower --lr or use --dtype fp32")
        loss.backward()
        trainer.before_step()
        row: dict[str, Any] = {"step": step, "loss": float(loss.detach())}
        if ewc is not None:
            row["penalty"] = ewc.apply()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        trainer.after_step()
        if step % eval_every == 0 and step != steps:
            row["eval_ppl"] = evaluate(lm.model, evals, "eval", batch_size).ppl
        curve.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
    return curve


def _batches(windows: WindowSet, batch_size: int, seed: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Endless batches of training windows: a seeded permutation per epoch (SAMPLING_RULE)."""
    offsets = windows.calib_offsets
    generator = torch.Generator().manual_seed(seed)
    pending: list[int] = []
    while True:
        while len(pending) < batch_size:
            pending += [offsets[i] for i in torch.randperm(len(offsets), generator=generator).tolist()]
        take, pending = pending[:batch_size], pending[batch_size:]
        yield torch.stack([windows.window(o) for o in take]).to(device)


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's per-parameter state tensors (AdamW: exp_avg, exp_avg_sq, step)."""
    return sum(v.numel() * v.element_size() for state in optimizer.state.values()
               for v in state.values() if isinstance(v, torch.Tensor))
