"""Critical-weight fine-tuning: train only the weights that matter (sparse), all (full), LoRA at the same
budget, or all but the critical ones (frozen-critical); optionally an EWC penalty toward the original weights.

    with esa.finetune.preserved(lm):                 # the model comes back bit for bit
        result = esa.finetune.finetune(lm, train, evals, mode="sparse", budget=0.001, retain_windows=retain)
"""

from esa._callable import callable_package
from esa.finetune import lora
from esa.finetune.data import (
    CODE_MODULES, DOMAIN_RULE, DOMAINS, builtin_domains, code_vs_docs, names_vs_docs, text_windows,
    topic_domains,
)
from esa.finetune.lora import RANK_RULE, LoraPlan, plan_lora
from esa.finetune.masks import RANDOM, metric_mask, random_mask, resolve_budget
from esa.finetune.preserve import preserved
from esa.finetune.save import DELTA_FILE, apply_delta, save_delta, save_finetuned
from esa.finetune.train import (
    DEFAULT_BUDGET, DEFAULT_FROZEN, DEFAULT_LAMBDA, MODES, FinetuneResult, finetune, superweight_candidates,
    watched_weight,
)

__all__ = [
    "CODE_MODULES", "DOMAINS", "builtin_domains", "code_vs_docs", "names_vs_docs", "superweight_candidates",
    "DEFAULT_BUDGET", "DEFAULT_FROZEN", "DEFAULT_LAMBDA", "DELTA_FILE", "DOMAIN_RULE", "MODES", "RANDOM", "RANK_RULE",
    "FinetuneResult", "LoraPlan", "apply_delta", "finetune", "lora", "metric_mask", "plan_lora", "preserved",
    "random_mask", "resolve_budget", "save_delta", "save_finetuned", "text_windows", "topic_domains", "watched_weight",
]

callable_package(__name__, finetune)
