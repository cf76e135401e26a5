"""Out-of-memory errors as one line that says which settings would fit, computed by the planner."""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from esa.errors import EsaError
from esa.scale.facts import model_facts
from esa.scale.hardware import get_device
from esa.scale.memory import Settings
from esa.scale.plan import plan_run, suggest

_TRIED = re.compile(r"Tried to allocate ([\d.]+ [KMGT]i?B)")
_GENERIC = "retry with a smaller --batch-size, --checkpointing, --accumulate-on cpu or --dtype bf16"


def oom_advice(exc: BaseException, context: Mapping[str, Any]) -> EsaError:
    """An EsaError naming settings predicted to fit, for an out-of-memory `exc` raised while running `context`.

    `context` holds `plan_run`'s arguments for the run that failed (model, metric, dtype, seq_len,
    batch_size, n_gpus, checkpointing, accumulate_on, probes; gpu or gpu_memory_gb optional: without
    them the memory of CUDA device 0 is used). If the plan thought the run fits, the advice asks for
    settings predicted to cut the peak by a quarter.
    """
    what = "GPU memory" if isinstance(exc, torch.OutOfMemoryError) else "memory"
    tried = _TRIED.search(str(exc))
    head = f"out of {what}" + (f" (tried to allocate {tried.group(1)})" if tried else "")
    args = dict(context)
    if args.get("gpu") is None and args.get("gpu_memory_gb") is None and torch.cuda.is_available():
        args["gpu_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    try:
        plan = plan_run(**args)
    except (EsaError, TypeError) as err:  # an unplannable model or an incomplete context: still one line
        return EsaError(f"{head} running {args.get('metric', 'the metric')}; {_GENERIC} (no plan: {err})")
    peak, capacity = plan["peak_gib"], plan["capacity_gib"]
    where = f"running {plan['inputs']['metric']} on {plan['model']['name']}: predicted peak {peak:.1f} GiB per device"
    options = plan["suggestions"]
    if not options:
        target = capacity if capacity is not None and not plan["fits"] else 0.75 * peak
        i = plan["inputs"]
        settings = Settings(
            metric=i["metric"], dtype=i["dtype"], seq_len=i["seq_len"], batch_size=i["batch_size"], n_gpus=i["n_gpus"],
            checkpointing=i["checkpointing"], accumulate_on=i["accumulate_on"], attention=i["attention"],
        )
        device = get_device(i["gpu"]) if i["gpu"] is not None else None
        options = suggest(model_facts(i["model"]), settings, device, target, i["n_samples"], i["probes"])
    if capacity is not None:
        where += f" vs {capacity:.1f} GiB" if not plan["fits"] else f", expected to fit in {capacity:.1f} GiB"
    if not options:
        return EsaError(f"{head} {where}; nothing ESA can change fits: use a GPU with more memory or shorter --seq-len")
    listed = "; ".join(f"{o['flags']} (~{o['peak_gib']:.1f} GiB)" for o in options[:3])
    return EsaError(f"{head} {where}; {'lighter settings' if plan['fits'] else 'predicted to fit'}: {listed}")
