"""grad_squared: the mean over windows of each window's squared gradient, exact whatever the batch size."""

from __future__ import annotations

import torch

from esa.metrics import get_metric
from esa.models.tiny import build_tiny_model


def per_window_fisher(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Brute force: each window alone, the gradient of its mean loss (transformers' loss), squared; then the mean."""
    names, params = zip(*model.named_parameters())
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for window in ids:
        loss = model(input_ids=window[None], labels=window[None]).loss
        for t, g in zip(total, torch.autograd.grad(loss, params)):
            t += g.double() ** 2
    return {n: (t / len(ids)).float() for n, t in zip(names, total)}


def test_matches_explicit_loop_over_windows(make_ctx) -> None:
    model = build_tiny_model("tiny-mistral")
    ctx = make_ctx(model, batch_size=3)
    result = get_metric("grad_squared")(ctx)
    reference = per_window_fisher(model, torch.cat(list(ctx.batches())))
    for name, ref in reference.items():
        torch.testing.assert_close(result.scores[name], ref, rtol=1e-4, atol=1e-12)


def test_batch_size_1_and_4_identical(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    one = get_metric("grad_squared")(make_ctx(model, batch_size=1))
    four = get_metric("grad_squared")(make_ctx(model, batch_size=4))
    for name in one.scores:
        assert torch.equal(one.scores[name], four.scores[name]), name


def test_squaring_the_batch_mean_gradient_would_differ(make_ctx) -> None:
    """The trap micro-batching avoids: (mean of gradients)² drops the per-window variance."""
    model = build_tiny_model("tiny-llama")
    ctx = make_ctx(model, batch_size=4)
    exact = get_metric("grad_squared")(ctx).scores
    ids = torch.cat(list(ctx.batches()))
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(model(input_ids=ids, labels=ids).loss, params)
    wrong = torch.cat([(g**2).flatten() for g in grads])
    right = torch.cat([exact[n].flatten() for n in names])
    assert bool((right >= wrong * (1 - 1e-4) - 1e-12).all())  # Jensen: E[g²] >= E[g]² per coordinate
    assert (right - wrong).norm() > 0.5 * right.norm()
