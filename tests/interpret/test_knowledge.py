import pytest
import torch

from esa.interpret.knowledge import DEPEND_NATS, answer_logprobs, encode_probes, localise
from esa.interpret.probes import Probe

PROBES = [Probe("a", " x"), Probe("b", " y"), Probe("c", " z")]


def test_localise_brute_force():
    """Group A hurts probe 0 by 3 nats (control 0.5), group B hurts every probe by 0.2 (control 0.2)."""
    base = torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)
    drops = {"A": torch.tensor([3.0, 0.0, 0.0]), "B": torch.full((3,), 0.2), "ctrl A": torch.tensor([0.5, 0, 0]),
             "ctrl B": torch.full((3,), 0.2)}

    def score(sel):
        return base if sel is None else base - drops[next(iter(sel))].double()

    groups = {"A": {"A": torch.tensor([0, 1])}, "B": {"B": torch.tensor([0])}}
    controls = lambda label, sel: [{f"ctrl {label}": torch.tensor([5])}]  # noqa: E731
    out = localise(groups, score, controls, PROBES)
    a, b = out["groups"]
    assert a["effect"] == pytest.approx(2.5 / 3) and b["effect"] == pytest.approx(0.0)
    assert out["top_group"] == "A" and out["localisation_score"] == pytest.approx(1.0)
    assert a["facts"] == ["a x"] and b["facts"] == [] and (a["n_weights"], b["n_weights"]) == (2, 1)
    assert [f["depends_on"] for f in out["facts"]] == ["A", None, None]
    assert out["facts"][0]["net_drop"] == pytest.approx(2.5) and 2.5 >= DEPEND_NATS


def test_answer_logprobs_match_one_probe_at_a_time(planted):
    """Right padding of the batch must not change any probe's log-prob."""
    probes = [Probe("The capital of France is", " Paris"), Probe("Snow is", " white")]
    encoded = encode_probes(planted, probes)
    batched = answer_logprobs(planted, encoded, torch.device("cpu"))
    for i, (prompt, answer) in enumerate(encoded):
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            logp = torch.log_softmax(planted.model(input_ids=ids).logits.float(), -1)[0]
        ref = sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(answer))
        assert float(batched[i]) == pytest.approx(ref, abs=1e-4)
