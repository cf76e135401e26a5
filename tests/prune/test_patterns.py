"""Masks from scores: unstructured counts per group, N:M exactness, protection, bad patterns."""

from __future__ import annotations

import pytest
import torch

from esa.errors import EsaError
from esa.prune.patterns import Pattern, check_sparsity, parse_pattern, prune_masks


def _scores(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.rand(6, 16, generator=g), "b": torch.rand(4, 8, generator=g) * 3}


@pytest.mark.parametrize("text,n,m", [("2:4", 2, 4), ("4:8", 4, 8), ("1:3", 1, 3)])
def test_n_m_masks_are_exact(text: str, n: int, m: int) -> None:
    score = torch.rand(5, 24, generator=torch.Generator().manual_seed(1))
    mask = prune_masks({"w": score}, check_sparsity(None, parse_pattern(text)), parse_pattern(text), "row")["w"]
    groups, sgroups = mask.view(5, -1, m), score.view(5, -1, m)
    assert (groups.sum(-1) == n).all()
    # within every group the pruned ones are the n lowest (brute force per group)
    for r in range(5):
        for g in range(groups.shape[1]):
            lowest = set(sgroups[r, g].argsort()[:n].tolist())
            assert set(groups[r, g].nonzero().flatten().tolist()) == lowest


def test_unstructured_groups_count_what_they_promise() -> None:
    scores = _scores()
    row = prune_masks(scores, 0.3, Pattern(), "row")
    assert (row["a"].sum(1) == int(16 * 0.3)).all() and (row["b"].sum(1) == int(8 * 0.3)).all()
    tensor = prune_masks(scores, 0.3, Pattern(), "tensor")
    assert int(tensor["a"].sum()) == int(96 * 0.3) and int(tensor["b"].sum()) == int(32 * 0.3)
    glob = prune_masks(scores, 0.3, Pattern(), "global")
    assert sum(int(m.sum()) for m in glob.values()) == int(128 * 0.3)
    all_scores = torch.cat([s.flatten() for s in scores.values()])
    pruned = torch.cat([s[glob[n]] for n, s in scores.items()])
    assert pruned.max() <= all_scores.sort().values[int(128 * 0.3) - 1]
    assert int(glob["b"].sum()) < int(glob["a"].sum())  # b's scores are larger: global prunes it less


def test_protected_weights_survive_and_overflow_is_an_error() -> None:
    score = torch.rand(2, 8, generator=torch.Generator().manual_seed(2))
    protect = score <= score.sort(dim=1).values[:, 1:2]  # the two lowest of each row
    mask = prune_masks({"w": score}, 0.5, Pattern(), "row", {"w": protect})["w"]
    assert not (mask & protect).any() and (mask.sum(1) == 4).all()
    too_many = torch.zeros_like(protect)
    too_many[0, :5] = True  # row 0 must keep 4 and has 5 protected
    with pytest.raises(EsaError, match="protected"):
        prune_masks({"w": score}, 0.5, Pattern(), "row", {"w": too_many})
    with pytest.raises(EsaError, match="protected"):
        prune_masks({"w": score}, 0.5, Pattern(2, 4), "row", {"w": too_many})


@pytest.mark.parametrize("text", ["2:2", "3:2", "0:4", "2-4", "half"])
def test_bad_patterns(text: str) -> None:
    with pytest.raises(EsaError):
        parse_pattern(text)


@pytest.mark.parametrize("sparsity", [0.0, 1.0, -0.1, 1.5, float("nan"), None])
def test_bad_sparsity(sparsity) -> None:
    with pytest.raises(EsaError):
        check_sparsity(sparsity, Pattern())


def test_n_m_sparsity_must_match() -> None:
    assert check_sparsity(0.5, Pattern(2, 4)) == 0.5
    with pytest.raises(EsaError, match="exactly 0.5"):
        check_sparsity(0.6, Pattern(2, 4))


def test_criterion_when_magnitude_does_not_hurt():
    """A magnitude gap <= 0 leaves nothing to improve on: the improvement is NaN, not an error."""
    import math

    from esa.prune.criterion import gap_improvement

    assert math.isnan(gap_improvement(ppl=20.0, ppl_magnitude=19.0, ppl_dense=19.5))


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "heavy-ties"])
@pytest.mark.parametrize("group", ["row", "tensor", "global"])
def test_selection_equals_the_first_k_of_a_stable_sort(ties: bool, group: str) -> None:
    """The linear-time selection gives exactly the mask of Wanda's stable sort, ties to the lower column."""
    gen = torch.Generator().manual_seed(3)
    scores = {n: torch.rand(7, 24, generator=gen) for n in ("a", "b")}
    if ties:
        scores = {n: (s * 4).round() for n, s in scores.items()}
    masks = prune_masks(scores, 0.4, parse_pattern("unstructured"), group)
    flat = {"row": scores, "tensor": {n: s.reshape(1, -1) for n, s in scores.items()},
            "global": {"all": torch.cat([s.reshape(1, -1) for s in scores.values()], 1)}}[group]
    expected = {}
    for n, s in flat.items():
        k = int(s.shape[1] * 0.4)
        order = torch.sort(s, dim=-1, stable=True).indices[:, :k]
        expected[n] = torch.zeros_like(s, dtype=torch.bool).scatter_(1, order, True)
    got = {"row": masks, "tensor": {n: m.reshape(1, -1) for n, m in masks.items()},
           "global": {"all": torch.cat([m.reshape(1, -1) for m in masks.values()], 1)}}[group]
    assert all(torch.equal(got[n], expected[n]) for n in expected)
