"""Devices a plan can target: memory and peak throughput, from vendors' data sheets (dense, no sparsity)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from esa.errors import EsaError

CUDA_CONTEXT_GIB = 0.75  # CUDA context + cuBLAS/cuDNN workspaces per device (0.5-1 GiB in practice)
FRAGMENTATION = 0.10  # caching-allocator fragmentation margin on top of the tensor bytes
MFU = 0.40  # achievable fraction of peak FLOP/s for these passes (assumed, not measured)


@dataclass(frozen=True)
class Device:
    """`memory_gib`: what torch reports as total memory (a bit under the marketing number)."""

    name: str
    memory_gib: float
    tflops_16bit: float  # bf16/fp16 tensor-core peak
    tflops_fp32: float  # plain fp32 (PyTorch leaves TF32 off for matmuls by default)
    context_gib: float = CUDA_CONTEXT_GIB


GPUS: dict[str, Device] = {
    "h100": Device("NVIDIA H100 SXM 80GB", 79.2, 989.0, 67.0),
    "h200": Device("NVIDIA H200 141GB", 139.8, 989.0, 67.0),
    "a100": Device("NVIDIA A100 80GB", 79.2, 312.0, 19.5),
    "a100-80gb": Device("NVIDIA A100 80GB", 79.2, 312.0, 19.5),
    "a100-40gb": Device("NVIDIA A100 40GB", 39.4, 312.0, 19.5),
    "l40s": Device("NVIDIA L40S 48GB", 44.4, 362.0, 91.6),
    "a10": Device("NVIDIA A10 24GB", 22.0, 125.0, 31.2),
    "rtx4090": Device("NVIDIA GeForce RTX 4090 24GB", 23.6, 165.0, 82.6),
}


def host_cpu() -> Device:
    """This machine's CPU: its RAM, and 32 fp32 FLOP/cycle/core (AVX2 FMA) at 2.5 GHz as the peak."""
    cores = os.cpu_count() or 1
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    peak = cores * 2.5e9 * 32 / 1e12
    return Device(f"CPU ({cores} cores, {ram:.0f} GiB RAM)", round(ram, 1), peak, peak, context_gib=0.0)


def get_device(name: str) -> Device:
    key = name.strip().lower().replace("_", "-")
    if key == "cpu":
        return host_cpu()
    if key not in GPUS:
        raise EsaError(f"unknown gpu {name!r}: use one of {', '.join([*GPUS, 'cpu'])}, or give gpu_memory_gb")
    return GPUS[key]
