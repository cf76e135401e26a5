"""oom_advice: an out-of-memory error becomes one line naming settings the planner predicts to fit."""

from __future__ import annotations

import torch

from esa.errors import EsaError
from esa.scale import oom_advice, plan_run

LLAMA_RUN = {
    "model": "meta-llama/Llama-3.1-8B", "metric": "grad_x_weight", "dtype": "bf16", "seq_len": 2048,
    "batch_size": 8, "n_samples": 64, "gpu_memory_gb": 79.2,
}


def fake_cuda_oom() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 3.91 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.2 GiB is free."
    )


def test_advice_names_settings_that_fit() -> None:
    err = oom_advice(fake_cuda_oom(), LLAMA_RUN)
    assert isinstance(err, EsaError)
    text = str(err)
    assert "\n" not in text and "Traceback" not in text
    assert text.startswith("out of GPU memory (tried to allocate 3.91 GiB) running grad_x_weight on meta-llama/Llama-3.1-8B")
    assert "predicted to fit:" in text
    best = plan_run(**LLAMA_RUN)["suggestions"][0]
    assert best["flags"] in text


def test_when_the_plan_thought_it_fits_it_still_offers_a_lighter_setting() -> None:
    run = {**LLAMA_RUN, "seq_len": 512, "batch_size": 1, "gpu_memory_gb": 200.0}
    assert plan_run(**run)["fits"]
    text = str(oom_advice(fake_cuda_oom(), run))
    assert "expected to fit in 200.0 GiB; lighter settings: --" in text


def test_unplannable_context_still_gives_one_line() -> None:
    text = str(oom_advice(RuntimeError("DefaultCPUAllocator: can't allocate memory"), {"metric": "act_mag", "model": "/nowhere"}))
    assert text.startswith("out of memory running act_mag")
    assert "--batch-size" in text and "\n" not in text
