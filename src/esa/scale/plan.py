"""`esa plan`: will a scoring run fit, how long will it take, and what would make it fit.

`plan_run` returns a JSON-ready dict (every memory figure in GiB = 2^30 bytes); `format_plan` renders it
for the terminal. The numbers come from `esa.scale.memory` (formulas checked against measured peaks in
tests/scale and benchmarks/bench_plan.py); they are estimates and the output says so.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

from esa.errors import EsaError
from esa.scale.facts import ModelFacts, model_facts
from esa.scale.hardware import CUDA_CONTEXT_GIB, FRAGMENTATION, MFU, Device, get_device
from esa.scale.memory import (
    DTYPE_BYTES, DeviceMemory, Settings, device_memory, forward_flops, host_bytes, is_scored, run_flops,
)

_ACCUMULATE_ALIASES = {"device": "param", "param": "param", "cpu": "cpu"}
# Changes a suggestion may make, cheapest first: same results and compute, then more compute or
# transfers, then more hardware, then different numerics.
_CHANGE_ORDER = ("batch_size", "checkpointing", "accumulate_on", "n_gpus", "dtype")
_MAX_SUGGESTIONS = 5


def plan_run(
    model: str,
    metric: str,
    dtype: str = "bf16",
    seq_len: int = 512,
    batch_size: int = 1,
    n_samples: int = 200,
    gpu: str | None = None,
    gpu_memory_gb: float | None = None,
    n_gpus: int = 1,
    checkpointing: bool = False,
    accumulate_on: str = "device",
    probes: int = 8,
    attention: str = "sdpa",
) -> dict[str, Any]:
    """Predict memory per device, compute and time of scoring `model` with `metric`, and what fits.

    `gpu` names a device in `esa.scale.hardware.GPUS` (or "cpu"); `gpu_memory_gb` (GiB) overrides its
    memory or stands alone. `n_gpus` > 1 splits the decoder layers evenly (device_map="auto" style).
    `accumulate_on`: "device" (alias "param", beside each parameter) or "cpu" (host memory).
    `attention`: "sdpa" (fused kernels, no s² memory) or "eager".
    """
    if accumulate_on not in _ACCUMULATE_ALIASES:
        raise EsaError(f"accumulate_on must be device (or param) or cpu, not {accumulate_on!r}")
    if n_samples < 1 or probes < 1:
        raise EsaError("n_samples and probes must be >= 1")
    if gpu_memory_gb is not None and not (math.isfinite(gpu_memory_gb) and gpu_memory_gb > 0):
        raise EsaError(f"--gpu-memory must be a positive number of GiB, not {gpu_memory_gb}")
    settings = Settings(
        metric=metric, dtype=dtype, seq_len=seq_len, batch_size=batch_size, n_gpus=n_gpus,
        checkpointing=checkpointing, accumulate_on=_ACCUMULATE_ALIASES[accumulate_on], attention=attention,
    )
    facts = model_facts(model)
    if n_gpus > facts.layers:
        raise EsaError(f"n_gpus={n_gpus} exceeds the model's {facts.layers} layers")
    device = get_device(gpu) if gpu is not None else None
    capacity = gpu_memory_gb if gpu_memory_gb is not None else (device.memory_gib if device else None)
    estimate = _estimate(facts, settings, device)
    plan: dict[str, Any] = {
        "inputs": {
            "model": model, "metric": metric, "dtype": dtype, "seq_len": seq_len, "batch_size": batch_size,
            "n_samples": n_samples, "gpu": gpu, "gpu_memory_gb": gpu_memory_gb, "n_gpus": n_gpus,
            "checkpointing": checkpointing, "accumulate_on": settings.accumulate_on, "probes": probes,
            "attention": attention,
        },
        "model": _model_summary(facts),
        "parameters": _parameter_summary(facts, settings),
        **estimate,
        "capacity_gib": capacity,
        "fits": None if capacity is None else estimate["peak_gib"] <= capacity,
        "headroom_gib": None if capacity is None else _gib_round(capacity - estimate["peak_gib"]),
        "flops": _flops(facts, settings, n_samples, probes),
        "time": _time(facts, settings, n_samples, probes, device),
        "assumptions": _assumptions(facts, settings, device),
        "suggestions": [],
    }
    if plan["fits"] is False:
        plan["suggestions"] = suggest(facts, settings, device, capacity, n_samples, probes)
    return plan


def suggest(
    facts: ModelFacts, settings: Settings, device: Device | None, capacity: float, n_samples: int, probes: int
) -> list[dict[str, Any]]:
    """The smallest sets of changes predicted to bring the peak under `capacity`, cheapest first."""
    options: dict[str, list[Any]] = {
        "batch_size": _halvings(settings.batch_size),
        "checkpointing": [True] if settings.cost.backward and not settings.checkpointing else [],
        "accumulate_on": ["cpu"] if settings.accumulate_on == "param" else [],
        "n_gpus": [n for n in (2, 4, 8) if settings.n_gpus < n <= facts.layers],
        "dtype": ["bf16"] if DTYPE_BYTES[settings.dtype] == 4 else [],
    }
    found: list[dict[str, Any]] = []
    for size in range(1, len(_CHANGE_ORDER) + 1):
        for keys in itertools.combinations(_CHANGE_ORDER, size):
            if any(set(f["changes"]) <= set(keys) for f in found):
                continue  # a subset of these changes already fits
            for values in itertools.product(*(options[k] for k in keys)):
                changes = dict(zip(keys, values))
                trial = replace(settings, **changes)
                peak = _estimate(facts, trial, device)["peak_gib"]
                if peak <= capacity:
                    found.append({
                        "changes": changes, "flags": _flags(changes), "peak_gib": peak,
                        "headroom_gib": _gib_round(capacity - peak),
                        "time_s": (_time(facts, trial, n_samples, probes, device) or {}).get("seconds"),
                    })
                    break  # the first fitting value is the mildest (largest batch, fewest GPUs)
        if len(found) >= _MAX_SUGGESTIONS:
            break
    return found[:_MAX_SUGGESTIONS]


def _estimate(facts: ModelFacts, settings: Settings, device: Device | None) -> dict[str, Any]:
    """Memory terms per device (GiB), the peak device's breakdown, and the perturbation-evaluation peak."""
    context = device.context_gib if device is not None else CUDA_CONTEXT_GIB
    devices = [_device_summary(d, context) for d in device_memory(facts, settings)]
    evaluation = [_device_summary(d, context) for d in device_memory(facts, settings, forward_only=True)]
    worst = max(devices, key=lambda d: d["peak"])
    return {
        "memory_gib": worst,
        "devices": devices,
        "peak_gib": worst["peak"],
        "host_memory_gib": {"accumulators": _gib_round(host_bytes(facts, settings) / 2**30)},
        "evaluation_peak_gib": max(d["peak"] for d in evaluation),
    }


def _device_summary(d: DeviceMemory, context_gib: float) -> dict[str, Any]:
    g = 2**30
    phase = d.dynamic
    overhead = d.allocated * FRAGMENTATION / g + context_gib
    return {
        "device": d.index,
        "layers": list(d.layers),
        "weights": _gib_round(d.weights / g),
        "accumulators": _gib_round(d.accumulators / g),
        "gradient_copies": _gib_round(phase.copies / g),
        "activations": _gib_round(phase.saved / g),
        "transient": _gib_round(phase.transient / g),
        "peak_phase": d.peak_phase,
        "allocated": _gib_round(d.allocated / g),
        "framework_overhead": _gib_round(overhead),
        "peak": _gib_round(d.allocated / g + overhead),
        "phases": {name: _gib_round(p.total / g) for name, p in d.phases.items()},
    }


def _model_summary(f: ModelFacts) -> dict[str, Any]:
    return {
        "name": f.name, "config_source": f.source, "model_type": f.model_type,
        "activation_formula": f"{f.style.norm}/{f.style.qkv}/{f.style.mlp}"
        + ("" if f.style_known else " (assumed Llama-like)"),
        "hidden_size": f.hidden, "intermediate_size": f.intermediate, "num_layers": f.layers,
        "num_heads": f.heads, "num_kv_heads": f.kv_heads, "head_dim": f.head_dim, "vocab_size": f.vocab,
        "tied_embeddings": f.tied, "experts": f.experts, "experts_per_token": f.experts_per_token,
        "max_position_embeddings": f.max_positions,
    }


def _parameter_summary(f: ModelFacts, st: Settings) -> dict[str, Any]:
    largest = max(f.params.values(), key=lambda p: p.numel)
    scored = sum(p.numel for p in f.params.values() if is_scored(f, p, st.cost))
    return {
        "total": f.n_params, "scored": scored, "by_component": f.by_component(),
        "largest_tensor": {"name": largest.name, "numel": largest.numel},
        "tensors": len(f.params),
    }


def _flops(f: ModelFacts, st: Settings, n_samples: int, probes: int) -> dict[str, Any]:
    forward, total = forward_flops(f, st.seq_len), run_flops(f, st, n_samples, probes)
    return {"forward_per_window": forward, "passes_per_window": total / (forward * n_samples), "total": total}


def _time(f: ModelFacts, st: Settings, n_samples: int, probes: int, device: Device | None) -> dict[str, Any] | None:
    if device is None:
        return None
    peak = device.tflops_fp32 if st.dtype == "fp32" else device.tflops_16bit
    seconds = run_flops(f, st, n_samples, probes) / (peak * 1e12 * MFU)
    return {"device": device.name, "peak_tflops": peak, "mfu": MFU, "seconds": round(seconds, 1)}


def _assumptions(f: ModelFacts, st: Settings, device: Device | None) -> list[str]:
    lines = [
        "All figures are estimates from formulas (esa.scale.memory), not measurements; they matched measured "
        "CPU peaks within a few percent on the models in tests/scale and benchmarks/bench_plan.py.",
        f"Framework overhead: {FRAGMENTATION:.0%} allocator fragmentation on top of tensor bytes, plus "
        f"{device.context_gib if device else CUDA_CONTEXT_GIB} GiB CUDA context per device.",
        "Accumulators are float32, one buffer per scored parameter and per running statistic; scores and "
        "extras are float32 too.",
        "Attention: " + (
            "sdpa (flash / memory-efficient kernels, no s^2 term)." if st.attention == "sdpa" and not st.cost.math_attention
            else "eager or math kernel (keeps a*s^2 probabilities per window and layer)."
        ),
        "Peak is the largest phase of the pass (forward at the loss, softmax/lm_head backward, block backward, "
        "embedding gradient, final scores), not a sum of all terms.",
    ]
    if f.tied:
        lines.append("Tied embeddings: the lm_head gradient waits in autograd's buffer until the embedding's arrives.")
    if st.n_gpus > 1:
        lines.append(f"{st.n_gpus} devices: decoder layers split evenly (device_map='auto' style), embedding on device 0, "
                     "lm_head on the last (on device 0 when tied); devices run one after another, so time does not shrink.")
    if st.checkpointing:
        lines.append("Checkpointing keeps each layer's input and recomputes one layer at a time in backward "
                     "(HF checkpointing runs only in train mode; dropout must be 0).")
    if st.cost.micro_batch:
        lines.append(f"{st.metric} backpropagates {st.cost.micro_batch} window at a time whatever the batch size.")
    if device is not None:
        lines.append(f"Time: peak {('fp32' if st.dtype == 'fp32' else '16-bit')} throughput of {device.name} at an "
                     f"assumed {MFU:.0%} model FLOPs utilisation; forward = 2 FLOPs per active weight per token + "
                     "4*s^2*q per layer, backward = 2 forwards.")
    if st.metric == "hutchinson_diag":
        lines.append("hutchinson_diag: the first-order graph triples saved activations (measured ~3x); first-order "
                     "gradients and the probe are full model-dtype copies; compute ~7 forwards per probe and window.")
    if not f.style_known:
        lines.append(f"No activation formula for model_type {f.model_type!r}: the Llama formula is used.")
    if f.max_positions is not None and st.seq_len > f.max_positions:
        lines.append(f"seq_len {st.seq_len} exceeds the model's max_position_embeddings ({f.max_positions}).")
    return lines


def _halvings(batch: int) -> list[int]:
    out, b = [], batch // 2
    while b >= 1:
        out.append(b)
        b //= 2
    return out


def _flags(changes: dict[str, Any]) -> str:
    words = {
        "batch_size": lambda v: f"--batch-size {v}",
        "checkpointing": lambda v: "--checkpointing",
        "accumulate_on": lambda v: f"--accumulate-on {v}",
        "n_gpus": lambda v: f"--device-map auto over {v} GPUs",
        "dtype": lambda v: f"--dtype {v}",
    }
    return " ".join(words[k](v) for k, v in changes.items())


def _gib_round(x: float) -> float:
    return round(x, 4)


def format_plan(plan: dict[str, Any]) -> str:
    """A terminal table of `plan_run`'s result."""
    i, m, p = plan["inputs"], plan["model"], plan["parameters"]
    lines = [
        f"ESA plan: {i['metric']} on {m['name']} ({m['config_source']}), {i['dtype']}, "
        f"{i['batch_size']} x {i['seq_len']} tokens per step, {i['n_samples']} windows",
        f"parameters: {p['total'] / 1e9:.3f} B total, {p['scored'] / 1e9:.3f} B scored; largest tensor "
        f"{p['largest_tensor']['name']} ({p['largest_tensor']['numel'] / 1e6:.1f} M)",
        "",
    ]
    devices = plan["devices"]
    rows = [
        ("weights", "weights"), ("accumulators (fp32)", "accumulators"), ("gradient copies", "gradient_copies"),
        ("activations (saved)", "activations"), ("transient", "transient"), ("overhead", "framework_overhead"),
        ("peak", "peak"),
    ]
    header = "memory, GiB".ljust(22) + "".join(f"device {d['device']}".rjust(18) for d in devices)
    lines.append(header)
    lines.append("layers".ljust(22) + "".join(f"{d['layers'][0]}-{d['layers'][1] - 1}".rjust(18) for d in devices))
    for label, key in rows:
        lines.append(label.ljust(22) + "".join(f"{d[key]:18.2f}" for d in devices))
    lines.append("peak phase".ljust(22) + "".join(d["peak_phase"].rjust(18) for d in devices))
    if plan["host_memory_gib"]["accumulators"]:
        lines.append(f"host memory for accumulators: {plan['host_memory_gib']['accumulators']:.2f} GiB")
    lines.append(f"perturbation evaluation (forward only) peak: {plan['evaluation_peak_gib']:.2f} GiB per device")
    if plan["capacity_gib"] is not None:
        verdict = "fits" if plan["fits"] else "does NOT fit"
        lines.append(f"capacity {plan['capacity_gib']:.1f} GiB per device: {verdict} "
                     f"(headroom {plan['headroom_gib']:+.2f} GiB)")
    flops = plan["flops"]
    lines.append(f"compute: {flops['total']:.3g} FLOPs ({flops['forward_per_window']:.3g} per window forward, "
                 f"{flops['passes_per_window']:g} forward-equivalents per window)")
    if plan["time"] is not None:
        t = plan["time"]
        lines.append(f"time: ~{_duration(t['seconds'])} on {t['device']} at {t['mfu']:.0%} of {t['peak_tflops']:g} TFLOP/s")
    if plan["suggestions"]:
        lines.append("predicted to fit:")
        for s in plan["suggestions"]:
            lines.append(f"  {s['flags']:48s} peak {s['peak_gib']:.2f} GiB (headroom {s['headroom_gib']:+.2f})")
    elif plan["fits"] is False:
        lines.append("no combination of smaller batch, checkpointing, CPU accumulators, up to 8 GPUs and bf16 fits")
    lines.append("assumptions:")
    lines.extend(f"  - {a}" for a in plan["assumptions"])
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
