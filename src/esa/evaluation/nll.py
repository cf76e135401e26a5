"""The one place where ESA turns token windows into next-token losses.

Evaluation, every gradient metric and every perturbation measure the same quantity, so they share
this function: a second copy would be a second, subtly different, definition of "the loss".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def next_token_nll(model: torch.nn.Module, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token negative log-likelihood (float32) and top-1 correctness, both shaped [batch, seq-1].

    Token t+1 is predicted from tokens 0..t of the same window; windows never see each other
    (the non-overlapping-window protocol of SparseGPT and Wanda). Logits are upcast to float32
    before the softmax so bf16/fp16 models are scored on the same footing as fp32 ones.
    """
    logits = model(input_ids=input_ids, use_cache=False).logits[:, :-1, :].float()
    target = input_ids[:, 1:].to(logits.device)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    correct = logits.argmax(dim=-1) == target
    return nll.view(target.shape), correct
