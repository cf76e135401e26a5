"""Knowledge localisation: which selected weights do the probes' answers depend on?

For each probe (prompt, answer) the score is log p(answer | prompt), summed over the answer's tokens
(the prompt tokenised with the tokenizer's special tokens, the answer without). The selected weights
are grouped by layer and by component; for each group G, drop_G(p) = logp(p) - logp_G(p) with G's
weights zeroed, and the control drop is the mean over trials of the same with as many random weights
of the same tensors zeroed (esa.perturb.random_matched). The net effect of G on probe p is drop - control;
the group's effect is its mean over probes. Localisation score = max_G effect_G / sum_G max(effect_G, 0):
1 when one group carries all the (positive) effect, 1/#groups when it is spread evenly. A fact
*depends on* G when its net drop is >= DEPEND_NATS. Cost: (1 + trials) batched forwards of all probes
per group.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from esa.errors import EsaError
from esa.interpret.probes import Probe
from esa.models.types import LoadedModel

DEPEND_NATS = 1.0


def encode_probes(lm: LoadedModel, probes: list[Probe]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) per probe; EsaError for a probe that tokenises to nothing."""
    encoded = []
    for i, probe in enumerate(probes, 1):
        prompt = lm.tokenizer(probe.prompt)["input_ids"]
        answer = lm.tokenizer(probe.answer, add_special_tokens=False)["input_ids"]
        if not prompt:
            raise EsaError(f"probe {i} ({probe.prompt!r}) has a prompt with no tokens; give a non-empty prompt")
        if not answer:
            raise EsaError(f"probe {i} ({probe.prompt!r}) has an answer {probe.answer!r} that tokenises to nothing; "
                           "give a non-empty answer")
        encoded.append((prompt, answer))
    return encoded


@torch.no_grad()
def answer_logprobs(lm: LoadedModel, encoded: list[tuple[list[int], list[int]]], device: torch.device) -> torch.Tensor:
    """log p(answer | prompt) of every probe, one right-padded batch (padding never precedes a real token)."""
    seqs = [p + a for p, a in encoded]
    width = max(map(len, seqs))
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    logp = torch.log_softmax(lm.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                      use_cache=False).logits.float(), dim=-1).cpu()
    out = torch.zeros(len(seqs), dtype=torch.float64)
    for row, (prompt, answer) in enumerate(encoded):
        at = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(answer))
        out[row] = logp[row, at, torch.tensor(answer)].double().sum()
    return out


def localise(
    groups: dict[str, dict[str, torch.Tensor]], score: Callable[[dict[str, torch.Tensor] | None], torch.Tensor],
    controls: Callable[[str, dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]], probes: list[Probe],
) -> dict[str, Any]:
    """Per group: the probes' drops zeroing the group vs its controls, the net effect, the dependent facts.

    `score(selection)` gives every probe's log-prob with `selection` zeroed (None: intact);
    `controls(label, selection)` the control selections of a group.
    """
    base = score(None)
    rows = []
    for label, selection in groups.items():
        drop = base - score(selection)
        control = torch.stack([base - score(c) for c in controls(label, selection)]).mean(0)
        net = drop - control
        rows.append({
            "group": label, "n_weights": sum(int(t.numel()) for t in selection.values()),
            "mean_drop": float(drop.mean()), "mean_control_drop": float(control.mean()), "effect": float(net.mean()),
            "facts": [probes[i].prompt + probes[i].answer for i in (net >= DEPEND_NATS).nonzero().flatten().tolist()],
            "_net": net,
        })
    positive = sum(max(r["effect"], 0.0) for r in rows)
    top = max(rows, key=lambda r: r["effect"]) if rows else None
    per_fact = []
    for i, probe in enumerate(probes):
        best = max(rows, key=lambda r: float(r["_net"][i])) if rows else None
        net = float(best["_net"][i]) if best else 0.0
        per_fact.append({"prompt": probe.prompt, "answer": probe.answer, "logprob": float(base[i]),
                         "depends_on": best["group"] if best and net >= DEPEND_NATS else None, "net_drop": net})
    for r in rows:
        del r["_net"]
    return {
        "groups": rows,
        "top_group": top["group"] if top else None,
        "localisation_score": top["effect"] / positive if top and positive > 0 and top["effect"] > 0 else None,
        "n_facts_dependent": sum(f["depends_on"] is not None for f in per_fact),
        "facts": per_fact,
    }
