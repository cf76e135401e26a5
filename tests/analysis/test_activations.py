import torch

from esa.analysis.activations import SideStats, activation_pass
from esa.analysis.projections import find_output_projections


def test_streaming_median_is_within_the_stated_bound():
    g = torch.Generator().manual_seed(0)
    chunks = [torch.randn(50, 64, generator=g) * 10 ** torch.randn(1, generator=g) for _ in range(5)]
    side = SideStats()
    for i, chunk in enumerate(chunks):
        side.add(chunk, torch.arange(50) + 50 * i)
    exact = torch.cat(chunks).abs().reshape(-1).sort().values
    lower, upper = exact[exact.numel() // 2 - 1], exact[exact.numel() // 2]  # even count: the two middle values
    assert lower / 1.006 <= side.median() <= upper * 1.006


def test_zeros_and_empty_sides():
    side = SideStats()
    assert side.median() is None
    side.add(torch.zeros(3, 4), torch.arange(3))
    assert side.median() < 1e-11


def test_per_token_maxima_and_spike_match_brute_force(tiny):
    lm = tiny("tiny-llama")
    batches = [torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(s)) for s in range(2)]
    captured = {0: [], 1: []}
    for layer, block in enumerate(lm.model.model.layers):
        block.mlp.down_proj.register_forward_hook(
            lambda m, a, out, layer=layer: captured[layer].append((a[0].detach().reshape(-1, 64), out.detach().reshape(-1, 32))))
    projections = find_output_projections(lm)
    seen = activation_pass(lm.model, projections, batches)
    assert torch.equal(seen.token_ids, torch.cat([b.reshape(-1) for b in batches]))
    assert seen.positions.tolist() == list(range(9)) * 4
    for proj in projections:
        x = torch.cat([c[0] for c in captured[proj.layer]])
        y = torch.cat([c[1] for c in captured[proj.layer]])
        stats = seen.stats[proj]
        tokens, peak, channel = stats.inputs.per_token()
        assert tokens.tolist() == list(range(36))
        assert torch.equal(peak, x.abs().max(dim=1).values) and torch.equal(channel, x.abs().argmax(dim=1))
        t, c = divmod(int(x.abs().argmax()), 64)
        assert (stats.spike_token, stats.spike_channel, stats.spike_value) == (t, c, float(x[t, c]))
        assert torch.equal(stats.outputs_at_spike, y[t])
        assert torch.equal(stats.outputs.per_token()[1], y.abs().max(dim=1).values)
