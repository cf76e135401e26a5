"""LoRA (Hu et al. 2021) through `peft`, sized to a sparse budget so the two compare at equal trainable counts.

An adapter on a linear map W (out x in) adds B·A with A (r x in), B (out x r): r·(in + out) trainable
numbers. The targets are the nn.Linear projections inside the decoder blocks (found from ParamInfo, never
by attribute names). Rank rule, for a budget of k weights and S = Σ (in + out) over all targets:
r = round(k / S) when that is at least 1 (every target adapted); otherwise r = 1 on every s-th target in
model order, s = round(S / k), which keeps the count near k when even rank 1 everywhere is too many.
alpha = 2r (scaling 2), no dropout (training is deterministic). After training the adapters are merged
into the base weights (`merge_and_unload`), so the model keeps its own module types and can be saved and
restored like any other fine-tuned model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from esa.errors import EsaError
from esa.models import LoadedModel

RANK_RULE = (
    "targets = nn.Linear projections of the decoder blocks; S = sum(in + out); r = round(k / S) if >= 1 "
    "(all targets), else r = 1 on every s-th target in model order with s = round(S / k); alpha = 2r"
)


@dataclass(frozen=True)
class LoraPlan:
    rank: int
    targets: tuple[str, ...]  # module names
    trainable: int  # r · Σ (in + out) over the targets

    def describe(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": 2 * self.rank, "n_targets": len(self.targets),
                "trainable": self.trainable, "rule": RANK_RULE}


def lora_targets(lm: LoadedModel) -> dict[str, nn.Linear]:
    """Module name -> nn.Linear for every linear projection inside a decoder block, model order."""
    modules = dict(lm.model.named_modules())
    out: dict[str, nn.Linear] = {}
    for name, info in lm.params.items():
        module_name, _, leaf = name.rpartition(".")
        module = modules.get(module_name)
        if (info.linear and info.layer is not None and leaf == "weight" and isinstance(module, nn.Linear)
                and info.component in ("attention", "mlp", "expert")):
            out[module_name] = module
    return out


def plan_lora(lm: LoadedModel, k: int) -> LoraPlan:
    """The rank and targets of RANK_RULE for a budget of k trainable weights (EsaError without targets)."""
    targets = lora_targets(lm)
    if not targets:
        raise EsaError(
            f"LoRA needs nn.Linear projections inside the decoder blocks and {lm.model_id} has none; "
            "use --mode sparse or full"
        )
    width = {name: m.in_features + m.out_features for name, m in targets.items()}
    total = sum(width.values())
    rank = round(k / total)
    names = list(targets)
    if rank < 1:
        rank, names = 1, names[:: max(1, round(total / k))]
    return LoraPlan(rank=rank, targets=tuple(names), trainable=rank * sum(width[n] for n in names))


def attach(lm: LoadedModel, plan: LoraPlan) -> Any:
    """Inject the adapters into `lm.model` (in place) and return the peft model; only adapters train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise EsaError("--mode lora needs the `peft` package: pip install 'esa-llm[finetune]'") from None
    config = LoraConfig(r=plan.rank, lora_alpha=2 * plan.rank, lora_dropout=0.0, target_modules=list(plan.targets),
                        bias="none")
    return get_peft_model(lm.model, config)


def merge(peft_model: Any) -> None:
    """Fold B·A into the base weights and put the original module types back (in place)."""
    peft_model.merge_and_unload()
