"""grad_x_weight against one big-batch gradient of Hugging Face's own mean loss."""

from __future__ import annotations

import torch

from esa.metrics import get_metric
from esa.models.tiny import build_tiny_model


def hf_mean_loss_gradients(model: torch.nn.Module, ids: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Gradient of the mean next-token loss over every token of `ids`, in one batch (transformers' loss)."""
    named = dict(model.named_parameters())
    loss = model(input_ids=ids, labels=ids).loss
    return dict(zip(names, torch.autograd.grad(loss, [named[n] for n in names])))


def test_matches_big_batch_gradient(make_ctx) -> None:
    model = build_tiny_model("tiny-llama")
    ctx = make_ctx(model, n_windows=6, batch_size=4)  # batches of 4 and 2: uneven on purpose
    result = get_metric("grad_x_weight")(ctx)
    grads = hf_mean_loss_gradients(model, torch.cat(list(ctx.batches())), list(ctx.params))
    named = dict(model.named_parameters())
    for name, g in grads.items():
        signed = named[name].detach() * g
        torch.testing.assert_close(result.scores[name], signed.abs(), rtol=1e-4, atol=1e-9)


def test_batch_size_does_not_change_scores(make_ctx) -> None:
    model = build_tiny_model("tiny-phi3")
    one = get_metric("grad_x_weight")(make_ctx(model, batch_size=1))
    four = get_metric("grad_x_weight")(make_ctx(model, batch_size=4, accumulate_on="cpu"))
    for name in one.scores:
        torch.testing.assert_close(one.scores[name], four.scores[name], rtol=1e-4, atol=1e-9)


def test_activation_checkpointing_gives_the_same_scores(make_ctx) -> None:
    """--checkpointing recomputes block activations in backward; scores and model state are unchanged."""
    from dataclasses import replace

    model = build_tiny_model("tiny-llama")
    ctx = make_ctx(model, n_windows=4, batch_size=2)
    plain = get_metric("grad_x_weight")(ctx)
    checkpointed = get_metric("grad_x_weight")(replace(ctx, checkpointing=True))
    for name, score in plain.scores.items():
        torch.testing.assert_close(checkpointed.scores[name], score, rtol=1e-5, atol=1e-10)
    assert not model.training and not any(m.training for m in model.modules())


def test_checkpointing_saves_fewer_activations() -> None:
    """Proof that checkpointing is really on: autograd saves far fewer bytes for backward."""
    from esa.metrics._accumulate import _enable_checkpointing, _restore_blocks

    model = build_tiny_model("tiny-llama")
    ids = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(0))

    def saved_bytes() -> int:
        total = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids).logits.sum()
        return total[0]

    plain = saved_bytes()
    saved = _enable_checkpointing(model)
    try:
        assert saved_bytes() < plain / 2
    finally:
        _restore_blocks(saved)
