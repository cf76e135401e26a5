"""GPU check: ESA's scoring on a Llama-3.1-8B-shaped model with random bf16 weights, built on the device.

Measured in one run, one JSON line each (stdout):
- `score`: grad_x_weight and grad_squared over N windows x S tokens (default 200 x 512): wall seconds, peak
  allocated memory against `esa.scale.plan_run`'s predicted peak, and MFU = planned FLOPs / wall / the GPU's
  bf16 peak (the planner's FLOP count, the device table's peak);
- `overhead`: ESA's whole scoring pass of `esa run` (`profile_seed`: score, rank, statistics) against a plain
  forward+backward over the same token batches (ratio = ESA wall / plain wall);
- `sharded`: the model split over cuda:0 and cpu (the last `--cpu-layers` decoder layers on the CPU, via
  accelerate hooks, as `--device-map` does) scoring a few windows; its top-k must equal the unsharded top-k
  on the same windows (`equal`, Jaccard).
No download: the config is esa.scale's built-in Llama-3.1-8B; the weights are `from_config` under
`torch.device(device)`, so they are drawn on the GPU directly. `--tiny` runs the same code on CPU with the
tiny-llama config (a test runs it). Memory: 8B bf16 weights 15 GiB + gradients of one layer at a time +
float32 score accumulators (32 GiB for 8B) + activations of one batch.

    python benchmarks/gpu_check.py            # on a GPU machine (< 8 minutes on an H100/H200)
    python benchmarks/gpu_check.py --tiny     # CPU, seconds
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

import torch

LLAMA_8B = "meta-llama/Llama-3.1-8B"


def emit(**row: Any) -> None:
    print(json.dumps(row, sort_keys=True), flush=True)


def build(tiny: bool, device: torch.device, dtype: torch.dtype) -> Any:
    """A LoadedModel with random weights drawn on `device` (meta-free: from_config under the device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from esa.models.loader import _describe  # wraps an in-memory model as load_model does
    from esa.models.tiny import _COMMON, TINY_CONFIGS
    from esa.scale import resolve_config

    if tiny:
        model_type, overrides = TINY_CONFIGS["tiny-llama"]
        config = AutoConfig.for_model(model_type, **{**_COMMON, **overrides})
    else:
        config = resolve_config(LLAMA_8B).config
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    return _describe(model, None, "tiny-llama" if tiny else LLAMA_8B, "random", dtype, {})


def random_windows(vocab: int, seq_len: int, n: int, seed: int = 0) -> Any:
    from esa.data import make_windows
    from esa.data.corpus import Corpus

    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, ((n + 4) * seq_len,), generator=g)
    corpus = Corpus(name="random", tokens=tokens, n_chars=0, description={"dataset": "random tokens"})
    return make_windows(corpus, seq_len, n, 2, seed)


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, int]:
    """(fn's result, wall seconds, peak allocated bytes including what was live before: weights)."""
    from esa.scale import measure_peak_memory

    out: list[Any] = []
    live = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    sync(device)
    t = time.perf_counter()
    delta = measure_peak_memory(lambda: out.append(fn()), device)  # synchronizes on cuda before returning
    wall = time.perf_counter() - t
    return out[0], wall, live + delta


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sig(x: float) -> float:
    return float(f"{x:.4g}")


def gpu_key(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    from esa.scale import GPUS

    name = torch.cuda.get_device_name(device).lower()
    return next((k for k in sorted(GPUS, key=len, reverse=True) if k.split("-")[0] in name), "h100")


def plain_forward_backward(lm: Any, windows: Any, batch_size: int, device: torch.device) -> None:
    for batch in windows.batches("calib", batch_size, device):
        lm.model(input_ids=batch, labels=batch).loss.backward()
        lm.model.zero_grad(set_to_none=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny-llama config on CPU (the same code paths, seconds)")
    ap.add_argument("--samples", type=int, default=None, help="calibration windows (200; --tiny: 4)")
    ap.add_argument("--seq-len", type=int, default=None, help="tokens per window (512; --tiny: 32)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--topk", type=int, default=100)
    ap.add_argument("--shard-samples", type=int, default=2, help="windows for the sharded-vs-unsharded check")
    ap.add_argument("--cpu-layers", type=int, default=2, help="decoder layers placed on the CPU in the sharded run")
    args = ap.parse_args(argv)

    from esa.metrics import get_metric
    from esa.pipeline.profile import profile_seed, score_model
    from esa.ranking import top_k
    from esa.scale import get_device, plan_run

    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda:0")
    n = args.samples or (4 if args.tiny else 200)
    seq = args.seq_len or (32 if args.tiny else 512)
    dtype = torch.bfloat16
    lm = build(args.tiny, device, dtype)
    windows = random_windows(lm.model.config.vocab_size, seq, n)
    names = list(lm.params)
    plan_model, gpu = ("tiny-llama" if args.tiny else LLAMA_8B), gpu_key(device)
    peak_tflops = get_device(gpu).tflops_16bit
    emit(kind="setup", model=lm.model_id, device=str(device), gpu=gpu, dtype="bf16", n_params=lm.n_params,
         windows=n, seq_len=seq, batch_size=args.batch_size,
         device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")

    plain_forward_backward(lm, random_windows(lm.model.config.vocab_size, seq, 1, seed=2), 1, device)  # warm-up
    for metric_name in ("grad_x_weight", "grad_squared"):
        metric = get_metric(metric_name)
        _, wall, peak = peak_bytes(lambda: score_model(lm, metric, windows, names, seed=0, batch_size=args.batch_size),
                                   device)
        plan = plan_run(plan_model, metric_name, dtype="bf16", seq_len=seq, batch_size=args.batch_size, n_samples=n,
                        gpu=gpu)
        flops = plan["flops"]["total"]
        emit(kind="score", metric=metric_name, wall_s=round(wall, 3), peak_gib=round(peak / 2**30, 4),
             planned_peak_gib=plan["peak_gib"], peak_over_plan=round(peak / 2**30 / plan["peak_gib"], 3),
             planned_s=(plan["time"] or {}).get("seconds"), tflop=sig(flops / 1e12),
             mfu=sig(flops / wall / (peak_tflops * 1e12)), peak_tflops_bf16=peak_tflops)

    metric = get_metric("grad_x_weight")
    sync(device)
    t = time.perf_counter()
    plain_forward_backward(lm, windows, args.batch_size, device)
    sync(device)
    plain = time.perf_counter() - t
    t = time.perf_counter()
    profile_seed(lm, metric, windows, names, seed=0, k=args.topk, mode="per_layer", batch_size=args.batch_size)
    sync(device)
    esa_wall = time.perf_counter() - t
    emit(kind="overhead", metric="grad_x_weight", esa_run_s=round(esa_wall, 3), plain_fwd_bwd_s=round(plain, 3),
         ratio=round(esa_wall / plain, 3))

    few = random_windows(lm.model.config.vocab_size, seq, args.shard_samples, seed=1)
    whole = top_k(score_model(lm, metric, few, names, seed=0, batch_size=args.batch_size).scores, args.topk, "global")
    shard_map = sharded_map(lm, device, args.cpu_layers)
    from accelerate import dispatch_model

    dispatch_model(lm.model, device_map=shard_map)
    t = time.perf_counter()
    split = top_k(score_model(lm, metric, few, names, seed=0, batch_size=args.batch_size).scores, args.topk, "global")
    wall = time.perf_counter() - t
    sync(device)
    a, b = set(zip(whole.param_ids.tolist(), whole.flat_index.tolist())), set(zip(split.param_ids.tolist(), split.flat_index.tolist()))
    same = [whole.param_names[i] for i in whole.param_ids.tolist()] == [split.param_names[i] for i in split.param_ids.tolist()] \
        and whole.flat_index.tolist() == split.flat_index.tolist()
    emit(kind="sharded", devices=sorted({str(v) for v in shard_map.values()}), cpu_layers=args.cpu_layers,
         windows=args.shard_samples, k=args.topk, equal=same, jaccard=round(len(a & b) / len(a | b), 4),
         wall_s=round(wall, 3))


def sharded_map(lm: Any, device: torch.device, cpu_layers: int) -> dict[str, str]:
    """An accelerate device map: everything on `device` except the last `cpu_layers` decoder blocks (CPU)."""
    from esa.models.layout import find_decoder_blocks

    prefix, blocks = find_decoder_blocks(lm.model)
    assert blocks is not None, "a decoder model has blocks"
    mapping: dict[str, str] = {}

    def place(module: torch.nn.Module, path: str) -> None:
        for name, child in module.named_children():
            full = f"{path}.{name}" if path else name
            if full == prefix:
                for i in range(len(blocks)):
                    mapping[f"{full}.{i}"] = "cpu" if i >= len(blocks) - cpu_layers else str(device)
            elif prefix.startswith(full + "."):
                place(child, full)
            else:
                mapping[full] = str(device)

    place(lm.model, "")
    return mapping


if __name__ == "__main__":
    main()
