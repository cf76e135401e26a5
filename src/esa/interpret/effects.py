"""Output side: what zeroing one weight changes downstream, measured against the intact model.

With snapshots (esa.interpret.forward) of the intact model B, the model with the weight zeroed Z and
with a control weight zeroed C (same tensor, same magnitude decile, see esa.interpret.core):
- massive_drop = 1 - max_i>l hidden_max_Z[i] / max_i>l hidden_max_B[i]: how much of the largest residual
  activation downstream of the weight's block l disappears (i indexes the stream entering block i);
- sink_drop = mean_{l'>l, h} (sink_B - sink_Z): absolute loss of attention mass on the first token in the
  later layers (all layers for embedding weights);
- stopword_rise = (S_Z - S_B) / S_B, S = the mean next-token probability mass on STOPWORDS tokens, and
  frequent_rise likewise for the calibration data's FREQUENT most frequent tokens;
- delta_nll = mean next-token NLL change (nats); token_locality (embedding / lm_head rows) = mean |dNLL|
  where the row's token is the input or the target, over mean |dNLL| elsewhere;
- promoted / suppressed: the tokens whose mean next-token probability rises / falls most when zeroed.
The logit lens reads a weight that writes the residual stream (attention output, MLP down projection)
directly: its contribution c = w * x_c(t*) at the input's largest |x| token, as the residual vector
c * e_row, through the final norm and the unembedding (minus the same for the zero vector, removing biases).
"""

from __future__ import annotations

from typing import Any

import torch

from esa.interpret.forward import Snapshot
from esa.interpret.inputs import decode
from esa.models.types import LoadedModel

TOP = 10
FREQUENT = 50
# English function words and the commonest punctuation: what Yu et al. 2024 saw promoted without the super weight.
_FUNCTION_WORDS = """
the a an and or but if of to in on at by for with from as is are was were be been being it its this that these
those he she they we you i me him her them us my your his their our not no so than then there here what which who
whom whose when where why how all any each some such only own same too very can will just do does did has have had
would should could may might must shall into over under about after before between through during up down out off
again further once also
"""
_PUNCTUATION = ",.;:!?'\"-()"
STOPWORDS = frozenset(_FUNCTION_WORDS.split()) | frozenset(_PUNCTUATION)
STOPWORD_RULE = (f"a token is a stopword when its decoded text, stripped and lower-cased, is one of "
                 f"{len(set(_FUNCTION_WORDS.split()))} English function words or one of {' '.join(_PUNCTUATION)}")


def stopword_ids(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    texts = tokenizer.batch_decode([[i] for i in range(vocab_size)])
    return torch.tensor([i for i, t in enumerate(texts) if t.strip() and t.strip().lower() in STOPWORDS], dtype=torch.long)


def frequent_ids(token_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    counts = torch.bincount(token_ids, minlength=vocab_size)
    return torch.argsort(counts, descending=True, stable=True)[:FREQUENT]


def measures(
    base: Snapshot, zeroed: Snapshot, layer: int | None, downstream: bool, stop: torch.Tensor, frequent: torch.Tensor,
    token: int | None, inputs: torch.Tensor, targets: torch.Tensor,
) -> dict[str, Any]:
    """The scalar effects of one zeroing (see the module docstring); None where a measure does not apply."""
    first = 0 if layer is None else layer + 1
    later = downstream and first < base.sink.shape[0]
    delta = float(zeroed.nll.mean() - base.nll.mean())
    out: dict[str, Any] = {"delta_nll": delta, "abs_delta_nll": abs(delta)}
    if later:
        b_max, z_max = float(base.hidden_max[first:].max()), float(zeroed.hidden_max[first:].max())
        out.update({
            "hidden_max_before": b_max, "hidden_max_after": z_max, "massive_drop": 1 - z_max / b_max if b_max else None,
            "hidden_max_pos0_before": float(base.hidden_max_pos0[first:].max()),
            "hidden_max_pos0_after": float(zeroed.hidden_max_pos0[first:].max()),
            "sink_before": float(base.sink[first:].mean()), "sink_after": float(zeroed.sink[first:].mean()),
            "sink_drop": float((base.sink[first:] - zeroed.sink[first:]).mean()),
            "entropy_change": float((zeroed.entropy[first:] - base.entropy[first:]).mean()),
        })
    else:
        out.update(dict.fromkeys(("massive_drop", "sink_drop")))
    for key, ids in (("stopword", stop), ("frequent", frequent)):
        b, z = float(base.mean_prob[ids].sum()), float(zeroed.mean_prob[ids].sum())
        out.update({f"{key}_mass_before": b, f"{key}_mass_after": z, f"{key}_rise": (z - b) / b if b else None})
    if token is not None:
        at = (inputs == token) | (targets == token)
        change = (zeroed.nll - base.nll).abs()
        inside = float(change[at].mean()) if at.any() else None
        outside = float(change[~at].mean()) if (~at).any() else None
        out.update({"token_positions": int(at.sum()), "token_abs_dnll": inside, "other_abs_dnll": outside,
                    "token_locality": inside / outside if inside is not None and outside else None})
    return out


def promoted(base: Snapshot, zeroed: Snapshot, stop: torch.Tensor, tokenizer: Any) -> dict[str, Any]:
    """Tokens whose mean next-token probability rises / falls most when the weight is zeroed."""
    return _ranked(zeroed.mean_prob - base.mean_prob, stop, tokenizer, "delta_mean_prob")


def logit_lens(lm: LoadedModel, out_channel: int, contribution: float, stop: torch.Tensor) -> dict[str, Any] | None:
    """Tokens the weight's residual-stream contribution promotes and suppresses through final norm + unembedding."""
    head, norm = lm.model.get_output_embeddings(), final_norm(lm)
    if head is None or norm is None or contribution == 0:
        return None
    weight = head.weight
    vector = torch.zeros(2, weight.shape[1], dtype=weight.dtype, device=weight.device)
    vector[0, out_channel] = contribution
    with torch.no_grad():
        logits = head(norm(vector)).float().cpu()
    return {"contribution": contribution, **_ranked(logits[0] - logits[1], stop, lm.tokenizer, "logit")}


def final_norm(lm: LoadedModel) -> torch.nn.Module | None:
    """The norm outside the decoder blocks (applied before the unembedding), found by ParamInfo."""
    names = [n for n, i in lm.params.items() if i.component == "norm" and i.layer is None]
    return lm.model.get_submodule(names[0].rpartition(".")[0]) if names else None


def _ranked(values: torch.Tensor, stop: torch.Tensor, tokenizer: Any, key: str) -> dict[str, Any]:
    is_stop = torch.zeros(values.numel(), dtype=torch.bool)
    is_stop[stop] = True
    order = torch.argsort(values, descending=True, stable=True)
    up, down = order[:TOP].tolist(), order.flip(0)[:TOP].tolist()

    def rows(ids: list[int]) -> list[dict[str, Any]]:
        return [{**decode(tokenizer, i), key: float(values[i]), "stopword": bool(is_stop[i])} for i in ids]

    return {"promoted": rows(up), "suppressed": rows(down),
            "stopword_share_promoted": float(is_stop[up].float().mean()),
            "stopword_share_suppressed": float(is_stop[down].float().mean())}
