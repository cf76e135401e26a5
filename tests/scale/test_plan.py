"""plan_run against measured peaks, and its verdicts, suggestions, FLOPs and output."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig

from esa.errors import EsaError
from esa.metrics import ScoringContext, get_metric
from esa.models.layout import describe_parameters
from esa.scale import folded_backward, format_plan, measure_peak_memory, model_facts, plan_run
from esa.scale.hardware import GPUS, MFU

# Measured here (CPU, fp32) with the profiler's allocator events: tensor bytes, as the plan's "allocated".
TOLERANCE = 0.10


@pytest.fixture
def plan_dir(helpers, tmp_path) -> str:
    return helpers.save_config(AutoConfig.for_model("llama", **helpers.PLAN_MODEL), tmp_path / "plan-model")


def _measured_allocated(model, fn) -> float:
    """Weights (exact) plus the measured peak of `fn` above them, in GiB."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return (weights + measure_peak_memory(fn)) / 2**30


@pytest.mark.parametrize(("batch", "seq_len"), [(1, 128), (4, 64)])
def test_plan_matches_a_measured_folded_pass(helpers, plan_dir, batch: int, seq_len: int) -> None:
    model = helpers.build(AutoConfig.for_model("llama", **helpers.PLAN_MODEL))
    batches = [helpers.ids(4096, batch, seq_len, seed) for seed in (0, 1)]  # the 2nd runs with full accumulators
    measured = _measured_allocated(model, lambda: folded_backward(model, batches))
    plan = plan_run(plan_dir, "grad_x_weight", dtype="fp32", seq_len=seq_len, batch_size=batch)
    # folded_backward returns sums of gradients: the metric's second float32 result buffer is not in it
    predicted = plan["memory_gib"]["weights"] + plan["memory_gib"]["accumulators"] + max(
        v for k, v in plan["memory_gib"]["phases"].items() if k != "results"
    )
    assert predicted == pytest.approx(measured, rel=TOLERANCE)


@pytest.mark.parametrize("metric", ["magnitude", "act_mag", "grad_x_weight", "grad_squared", "hutchinson_diag"])
def test_plan_matches_each_metric_measured(helpers, tmp_path, metric: str) -> None:
    config = AutoConfig.for_model("llama", **helpers.METRIC_MODEL)
    model_dir = helpers.save_config(config, tmp_path / "metric-model")
    model = helpers.build(config)
    batch, seq_len = 2, 64
    batches = [helpers.ids(config.vocab_size, batch, seq_len, seed) for seed in (0, 1)]
    ctx = ScoringContext(
        model=model, params=describe_parameters(model), batches=lambda: iter(batches),
        n_windows=2 * batch, n_tokens=2 * batch * (seq_len - 1), probes=1,
    )
    measured = _measured_allocated(model, lambda: get_metric(metric)(ctx))
    plan = plan_run(model_dir, metric, dtype="fp32", seq_len=seq_len, batch_size=batch, probes=1)
    assert plan["memory_gib"]["allocated"] == pytest.approx(measured, rel=TOLERANCE)


def test_verdict_and_suggestions_that_fit(plan_dir) -> None:
    settings = {"metric": "grad_x_weight", "dtype": "fp32", "seq_len": 256, "batch_size": 8, "gpu": "cpu"}
    capacity = plan_run(plan_dir, **settings)["peak_gib"] * 0.6  # "cpu": no CUDA context in the peak
    tight = plan_run(plan_dir, **settings, gpu_memory_gb=capacity)
    assert tight["fits"] is False and tight["headroom_gib"] < 0
    assert tight["suggestions"]
    change_sets = [set(s["changes"]) for s in tight["suggestions"]]
    for s in tight["suggestions"]:  # each suggestion, re-planned, fits
        inputs = {**tight["inputs"], **s["changes"], "gpu_memory_gb": capacity}
        again = plan_run(**inputs)
        assert again["fits"] and again["peak_gib"] == s["peak_gib"]
    for a in change_sets:  # and none adds changes to another that already fits
        assert not any(b < a for b in change_sets)
    roomy = plan_run(plan_dir, **{**settings, "gpu": "h100"})
    assert roomy["fits"] is True and roomy["suggestions"] == [] and roomy["capacity_gib"] == GPUS["h100"].memory_gib


def test_llama_8b_on_one_h100_needs_a_change_and_the_plan_names_one() -> None:
    plan = plan_run("meta-llama/Llama-3.1-8B", "grad_x_weight", dtype="bf16", seq_len=2048, batch_size=8, gpu="h100")
    assert plan["parameters"]["total"] == 8_030_261_248
    assert plan["memory_gib"]["weights"] == pytest.approx(8_030_261_248 * 2 / 2**30, abs=1e-3)
    assert plan["fits"] is False
    assert any(s["changes"].get("accumulate_on") == "cpu" for s in plan["suggestions"])


def test_flops_and_time() -> None:
    plan = plan_run("meta-llama/Llama-3.1-8B", "grad_x_weight", seq_len=512, n_samples=100, gpu="a100")
    n_active = 8_030_261_248 - 128256 * 4096  # the input embedding is a lookup
    forward = 2 * n_active * 512 + 4 * 512**2 * 4096 * 32
    assert plan["flops"]["forward_per_window"] == forward
    assert plan["flops"]["total"] == 3 * 100 * forward
    assert plan["time"]["seconds"] == pytest.approx(3 * 100 * forward / (312e12 * MFU), abs=0.1)
    hutch = plan_run("meta-llama/Llama-3.1-8B", "hutchinson_diag", seq_len=512, n_samples=100, probes=4)
    assert hutch["flops"]["total"] == 7 * 4 * 100 * forward and hutch["time"] is None


def test_mixtral_counts_active_experts_only() -> None:
    facts = model_facts("Mixtral-8x7B-v0.1")
    expert = facts.by_component()["expert"]
    plan = plan_run("Mixtral-8x7B-v0.1", "act_mag", seq_len=128)
    active = facts.n_params - facts.by_component()["embedding"] - expert * 6 / 8
    assert plan["flops"]["forward_per_window"] == pytest.approx(2 * active * 128 + 4 * 128**2 * 4096 * 32)


def test_multi_gpu_splits_layers(plan_dir) -> None:
    plan = plan_run(plan_dir, "grad_x_weight", n_gpus=2, gpu="a10")
    assert [d["layers"] for d in plan["devices"]] == [[0, 2], [2, 4]]
    assert plan["peak_gib"] == max(d["peak"] for d in plan["devices"])
    with pytest.raises(EsaError, match="exceeds"):
        plan_run(plan_dir, "grad_x_weight", n_gpus=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"metric": "nope"}, "unknown metric"), ({"dtype": "int8"}, "unknown dtype"), ({"gpu": "tpu"}, "unknown gpu"),
     ({"accumulate_on": "disk"}, "accumulate_on"), ({"seq_len": 1}, "seq_len")],
)
def test_bad_inputs_are_esa_errors(plan_dir, kwargs: dict, message: str) -> None:
    with pytest.raises(EsaError, match=message):
        plan_run(plan_dir, **{"metric": "grad_x_weight", **kwargs})


def test_output_is_json_and_formats(plan_dir) -> None:
    plan = plan_run(plan_dir, "hutchinson_diag", gpu="l40s", gpu_memory_gb=0.05, accumulate_on="cpu", n_gpus=2)
    assert json.loads(json.dumps(plan)) == plan
    assert any("estimates" in line for line in plan["assumptions"])
    text = format_plan(plan)
    for fragment in ("device 1", "peak", "does NOT fit", "host memory", "assumptions:"):
        assert fragment in text
