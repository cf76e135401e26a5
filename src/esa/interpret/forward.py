"""One forward pass over the calibration batches, summarised into what interpretation compares.

Attention probabilities need the eager attention kernel (fused kernels never form them), so the pass
switches the model to "eager" for its duration and back afterwards. Per pass it keeps, for N tokens,
L layers, H heads and a vocabulary of V:
- sink[l, h]: mean over queries q >= 1 of the attention probability on key 0 (the first token);
- entropy[l, h]: mean over queries q >= 1 of -sum_k A[q, k] ln A[q, k] (nats);
- hidden_max[i] and hidden_max_pos0[i]: max |h| of the residual stream entering block i (i = 0 is the
  embedding output) over all tokens, and at position 0 only; the final norm's output is not included;
- nll[N']: next-token negative log-likelihood of every predicted token (N' = N minus one per window);
- mean_prob[V]: the next-token distribution averaged over the predicted positions.
Memory: one batch's attention probabilities (L x b x H x s^2) and logits (b x s x V) at a time; O(N + V) kept.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from esa.errors import EsaError


@dataclass
class Snapshot:
    sink: torch.Tensor  # [L, H]
    entropy: torch.Tensor  # [L, H]
    hidden_max: torch.Tensor  # [L]
    hidden_max_pos0: torch.Tensor  # [L]
    nll: torch.Tensor  # [N'] float64
    mean_prob: torch.Tensor  # [V] float64


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """The model with eager attention (probabilities materialised) inside the block, its own kernel after."""
    before = getattr(model.config, "_attn_implementation", None)
    if before == "eager":
        yield
        return
    if not hasattr(model, "set_attn_implementation"):
        raise EsaError(f"{type(model).__name__} cannot switch to eager attention; attention probabilities "
                       "are needed for the sink analysis")
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


@torch.no_grad()
def snapshot(model: nn.Module, batches: list[torch.Tensor]) -> Snapshot:
    """Run `batches` ([b, s] token ids, s >= 2) through `model` (already in eager attention)."""
    sink_sum = entropy_sum = None
    queries = 0
    hidden_max = hidden_pos0 = None
    nll: list[torch.Tensor] = []
    prob_sum = None
    for batch in batches:
        out = model(input_ids=batch, output_attentions=True, output_hidden_states=True, use_cache=False)
        if not out.attentions or out.attentions[0] is None:
            raise EsaError(f"{type(model).__name__} returns no attention probabilities even with eager attention")
        probs = torch.stack([a[:, :, 1:, :].float() for a in out.attentions])  # [L, b, H, s-1, s]
        sink = probs[..., 0].sum(dim=(1, 3))
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1).sum(dim=(1, 3))
        sink_sum = sink if sink_sum is None else sink_sum + sink
        entropy_sum = entropy if entropy_sum is None else entropy_sum + entropy
        queries += probs.shape[1] * probs.shape[3]
        residual = torch.stack([h.float().abs() for h in out.hidden_states[:-1]])  # [L, b, s, D]
        peak, peak0 = residual.amax(dim=(1, 2, 3)), residual[:, :, 0].amax(dim=(1, 2))
        hidden_max = peak if hidden_max is None else torch.maximum(hidden_max, peak)
        hidden_pos0 = peak0 if hidden_pos0 is None else torch.maximum(hidden_pos0, peak0)
        logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
        nll.append(-logp.gather(-1, batch[:, 1:, None]).reshape(-1).double().cpu())
        total = logp.exp().sum(dim=(0, 1)).double().cpu()
        prob_sum = total if prob_sum is None else prob_sum + total
    if queries == 0:
        raise EsaError("interpretation needs calibration windows of at least 2 tokens; give some")
    n = torch.cat(nll)
    return Snapshot(
        sink=(sink_sum / queries).cpu(), entropy=(entropy_sum / queries).cpu(), hidden_max=hidden_max.cpu(),
        hidden_max_pos0=hidden_pos0.cpu(), nll=n, mean_prob=prob_sum / n.numel(),
    )
