"""Measured peak memory, to check the planner against: allocator-exact on CPU and on CUDA.

CPU: PyTorch's profiler with `profile_memory=True` records every allocation and free of the CPU allocator
with its size; the running sum of those events, in time order, is the live tensor bytes, and its maximum
is the peak. Unlike the process RSS (ru_maxrss) it sees neither the Python/torch baseline nor malloc's
arenas and fragmentation, so it measures exactly what the plan predicts (tensor bytes) and does not
drift with whatever ran before in the same process. CUDA: the caching allocator's own
`max_memory_allocated` (tensor bytes too, not the reserved pool).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from esa.evaluation.nll import next_token_nll


def measure_peak_memory(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Peak bytes of tensors live while `fn()` runs, above those live when it started (its result is dropped)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    if device.type != "cpu":
        raise ValueError(f"measure_peak_memory supports cpu and cuda, not {device.type}")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        e for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def folded_backward(
    model: nn.Module, batches: Iterable[torch.Tensor], keep_gradients: bool = False
) -> dict[str, torch.Tensor]:
    """Float32 sums of the gradients of the mean next-token loss of each batch: a grad_x_weight-like pass.

    Folding (the default): a post-accumulate-grad hook adds each gradient into its float32 accumulator
    and frees it the moment autograd finishes it, so one gradient at most lives beside the accumulators.
    `keep_gradients=True` is the naive way folding replaces: every `.grad` stays until the backward ends,
    then all are added at once (one extra model-sized gradient copy at the peak).
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    acc = {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in params.items()}

    def fold(name: str, param: torch.Tensor) -> None:
        acc[name].add_(param.grad.to(torch.float32))
        param.grad = None

    handles = [] if keep_gradients else [
        p.register_post_accumulate_grad_hook(lambda p, n=n: fold(n, p)) for n, p in params.items()
    ]
    try:
        for ids in batches:
            nll, _ = next_token_nll(model, ids)
            nll.mean().backward()
            if keep_gradients:
                for name, param in params.items():
                    fold(name, param)
    finally:
        for handle in handles:
            handle.remove()
    return acc
