from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, GPT2Config

from esa.errors import EsaError
from esa.finetune import finetune, plan_lora, preserved
from esa.finetune.lora import lora_targets
from esa.models import LoadedModel, describe_parameters
from esa.models.tiny import byte_tokenizer


def _width(lm):
    return {n: m.in_features + m.out_features for n, m in lora_targets(lm).items()}


def test_targets_are_the_block_linear_projections(lm):
    names = list(lora_targets(lm))
    assert len(names) == 7 * lm.n_layers  # q, k, v, o, gate, up, down per block
    assert not any("lm_head" in n or "embed" in n for n in names)


@pytest.mark.parametrize("k", [10, 1000, 20000])
def test_rank_rule_and_peft_count(lm, domains, k):
    width = _width(lm)
    total = sum(width.values())
    plan = plan_lora(lm, k)
    if round(k / total) >= 1:
        expected = (round(k / total), list(width))
    else:
        expected = (1, list(width)[:: max(1, round(total / k))])
    assert (plan.rank, list(plan.targets)) == expected
    assert plan.trainable == plan.rank * sum(width[n] for n in plan.targets)
    train, retain = domains
    with preserved(lm):
        result = finetune(lm, train, train, superweight=None, mode="lora", budget_k=k, steps=1, batch_size=2)
    assert result.trainable == plan.trainable
    assert result.lora["rank"] == plan.rank


def test_lora_changes_the_adapted_weights_only_and_merges(lm, domains):
    train, _ = domains
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    types = [type(m) for m in lm.model.modules()]
    with preserved(lm):
        finetune(lm, train, train, superweight=None, mode="lora", budget_k=5000, steps=3, lr=1e-2, batch_size=2)
        assert [type(m) for m in lm.model.modules()] == types  # adapters merged away
        targets = {f"{n}.weight" for n in plan_lora(lm, 5000).targets}
        changed = {n for n, p in lm.model.named_parameters() if not p.detach().equal(before[n])}
        assert changed and changed <= targets


def test_lora_without_linear_targets_is_an_error_before_work():
    model = AutoModelForCausalLM.from_config(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=259,
                                                        n_positions=64, bos_token_id=256, eos_token_id=257))
    params = describe_parameters(model)
    gpt2 = LoadedModel(model=model, tokenizer=byte_tokenizer(), model_id="tiny-gpt2", source="config",
                       family="gpt2", n_params=sum(p.numel() for p in model.parameters()), n_layers=2,
                       params=params, dtype=model.dtype, device=model.device, max_seq_len=64)
    with pytest.raises(EsaError, match="LoRA needs nn.Linear"):
        plan_lora(gpt2, 100)
