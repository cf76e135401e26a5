"""Bytes a scoring pass holds, term by term, per device: the formulas behind `esa plan`.

Notation: b bytes per model element (4 fp32, 2 bf16/fp16), B windows per backward, s tokens per window,
T = B·s tokens, T' = B·(s-1) predicted tokens, h hidden, f MLP width (per expert), a heads, q = a·head_dim,
kv = kv_heads·head_dim, V vocabulary, E experts, k experts per token.

Activations saved for backward, per token and decoder layer (counted from what autograd keeps in HF's
implementations, checked against saved-tensor hooks on tiny models of each family, tests/scale):
  norms   rms: 2·(4h + 2bh + 4)   (float32 upcast, normalised copy, weighted output, 1/rms)
          parallel_ln (GPT-NeoX): 3bh + 16
  attention (sdpa: flash / memory-efficient kernels, no s² term; 4a bytes of logsumexp)
          separate q/k/v: b·(2q + 2kv) + 4a;  fused qkv: b·(4q + 3kv) + 4a
          eager / math kernel: + 2b·(q - kv) for K/V repeated to every head, + a·s·(4 + b) for the softmax
          probabilities (float32, plus their model-dtype copy when b < 4), and no logsumexp
  mlp     gated: 4bf;  plain: 2bf;  moe: k·b·(2h + 4f) + 4E + 40k
The loss head keeps the final norm and the float32 log-softmax of the logits (4·V per predicted token).

Peaks are phases, not sums: the largest of
  forward at the loss      saved + logits (b·T·V, float32 copies when b < 4 or B > 1)
  backward at the softmax  saved + two float32 T'·V gradients
  backward at the lm_head  saved + b·T·V logits gradient + the lm_head weight gradient
  backward in the blocks   saved + the largest block gradient (twice for fused 3-D expert tensors, whose
                           per-expert slices autograd adds into full-size buffers) + its float32 fold
                           copy + a working set of b·T·(3f_e + 4h); with tied embeddings the lm_head
                           gradient waits in autograd's buffer until the embedding's arrives
  embedding at the end     activations freed; tied: buffer + embedding gradient + their sum (3·b·V·h)
"Saved" is every layer's activations, or with checkpointing each layer's input (b·h per token) plus one
recomputed layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from esa.errors import EsaError
from esa.scale.facts import ModelFacts

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ATTENTION = ("sdpa", "eager")


@dataclass(frozen=True)
class MetricCost:
    """What one metric keeps and computes, in parameter-sized buffers and forward-pass equivalents."""

    data: bool  # reads calibration windows
    backward: bool
    accumulators: int  # float32 parameter-sized buffers during the pass
    results: int  # float32 parameter-sized buffers when it returns (scores + extras)
    full_copies: int = 0  # model-dtype parameter-sized buffers alive during the pass
    activation_factor: float = 1.0  # saved activations relative to one plain backward
    math_attention: bool = False  # forced onto the s²-memory kernel
    micro_batch: int | None = None  # windows per backward, whatever the batch size
    linear_only: bool = False  # scores only weights that multiply an activation
    passes: int = 0  # forward-equivalents of compute per window (per probe for hutchinson)
    per_probe: bool = False


# hutchinson_diag: first-order gradients kept with their graph (create_graph) plus the probe z are
# model-dtype copies; Hz, mean and M2 are float32; the graph of the first backward roughly doubles the
# saved activations (measured ~2.4x on tiny Llama, tests/scale); fused kernels lack double backward, so
# attention runs on the math kernel. Compute per probe and window: forward (1) + backward (2) +
# double backward (~4, twice a backward).
METRIC_COSTS: dict[str, MetricCost] = {
    "magnitude": MetricCost(data=False, backward=False, accumulators=1, results=1),
    "act_mag": MetricCost(data=True, backward=False, accumulators=0, results=1, linear_only=True, passes=1),
    "grad_x_weight": MetricCost(data=True, backward=True, accumulators=1, results=2, passes=3),
    "grad_squared": MetricCost(data=True, backward=True, accumulators=1, results=1, micro_batch=1, passes=3),
    "hutchinson_diag": MetricCost(
        data=True, backward=True, accumulators=3, results=4, full_copies=2, activation_factor=2.5,
        math_attention=True, passes=7, per_probe=True,
    ),
}


@dataclass(frozen=True)
class Settings:
    metric: str
    dtype: str
    seq_len: int
    batch_size: int
    n_gpus: int = 1
    checkpointing: bool = False
    accumulate_on: str = "param"  # "param": beside each parameter; "cpu": host memory
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        if self.metric not in METRIC_COSTS:
            raise EsaError(f"unknown metric {self.metric!r}: use one of {', '.join(METRIC_COSTS)}")
        if self.dtype not in DTYPE_BYTES:
            raise EsaError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPE_BYTES)}")
        if self.accumulate_on not in ("param", "cpu"):
            raise EsaError(f"accumulate_on must be param (or device) or cpu, not {self.accumulate_on!r}")
        if self.attention not in ATTENTION:
            raise EsaError(f"unknown attention {self.attention!r}: use one of {', '.join(ATTENTION)}")
        if min(self.seq_len, self.batch_size, self.n_gpus) < 1 or self.seq_len < 2:
            raise EsaError("seq_len must be >= 2 and batch_size, n_gpus >= 1")

    @property
    def cost(self) -> MetricCost:
        return METRIC_COSTS[self.metric]


@dataclass
class DeviceMemory:
    """Bytes on one device; `phases` are the dynamic candidates whose largest sets `dynamic`."""

    index: int
    layers: tuple[int, int]  # [first, last) decoder layers placed here
    weights: float = 0.0
    accumulators: float = 0.0
    gradient_copies: float = 0.0  # full model-dtype copies (hutchinson) on top of the accumulators
    activations: float = 0.0  # saved for backward at the peak
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def dynamic(self) -> float:
        return max(self.phases.values(), default=0.0)

    @property
    def transient(self) -> float:
        """The part of the peak phase that is not saved activations (logits, gradients, working sets)."""
        return max(0.0, self.dynamic - self.activations)

    @property
    def allocated(self) -> float:
        return self.weights + self.accumulators + self.gradient_copies + self.dynamic


def layer_split(n_layers: int, n_devices: int) -> list[tuple[int, int]]:
    """Contiguous, as-even-as-possible layer ranges, first devices taking the remainder (device_map style)."""
    sizes = [n_layers // n_devices + (1 if i < n_layers % n_devices else 0) for i in range(n_devices)]
    starts = [sum(sizes[:i]) for i in range(n_devices)]
    return [(start, start + size) for start, size in zip(starts, sizes)]


def layer_activation_bytes(m: ModelFacts, b: int, tokens: int, seq_len: int, math_attention: bool) -> float:
    """Bytes one decoder layer saves for backward over `tokens` tokens (formula in the module docstring)."""
    h, f, a, q, kv = m.hidden, m.intermediate, m.heads, m.q_dim, m.kv_dim
    norm = 2 * (4 * h + 2 * b * h + 4) if m.style.norm == "rms" else 3 * b * h + 16
    attn = b * (2 * q + 2 * kv) if m.style.qkv == "separate" else b * (4 * q + 3 * kv)
    if math_attention:
        attn += 2 * b * (q - kv) + a * seq_len * (4 + (b if b < 4 else 0))
    else:
        attn += 4 * a
    if m.style.mlp == "moe":
        k = m.experts_per_token
        mlp = k * b * (2 * h + 4 * f) + 4 * m.experts + 40 * k
    else:
        mlp = b * f * (4 if m.style.mlp == "gated" else 2)
    return tokens * (norm + attn + mlp)


def final_norm_bytes(m: ModelFacts, b: int, tokens: int) -> float:
    """The final norm's saved tensors plus token ids and targets (the loss's float32 log-probabilities aside)."""
    h = m.hidden
    norm = 4 * h + 2 * b * h + 4 if m.style.norm == "rms" else 2 * b * h + 8
    return tokens * (norm + 16)


def device_memory(m: ModelFacts, st: Settings) -> list[DeviceMemory]:
    """Per-device bytes of one scoring pass: weights, accumulators, and the phase that peaks."""
    cost = st.cost
    b = DTYPE_BYTES[st.dtype]
    batch = cost.micro_batch or st.batch_size
    tokens, predicted = batch * st.seq_len, batch * (st.seq_len - 1)
    math_attention = cost.math_attention or st.attention == "eager"
    splits = layer_split(m.layers, st.n_gpus)
    head_device = 0 if m.tied else st.n_gpus - 1  # a tied lm_head stays with the embedding
    devices = [DeviceMemory(i, r) for i, r in enumerate(splits)]

    def device_of(layer: int | None, component: str) -> int:
        if layer is not None:
            return next(i for i, (lo, hi) in enumerate(splits) if lo <= layer < hi)
        return head_device if component in ("lm_head", "norm") else 0

    largest_block = [0.0] * st.n_gpus  # bytes of the largest gradient (with its fused-autograd multiple)
    embed_numel = m.vocab * m.hidden
    for info in m.params.values():
        dev = devices[device_of(info.layer, info.component)]
        dev.weights += info.numel * b
        scored = info.linear or not cost.linear_only
        if scored and st.accumulate_on == "param":
            dev.accumulators += info.numel * 4 * cost.accumulators
        if scored:
            dev.gradient_copies += info.numel * b * cost.full_copies
        if info.layer is not None:
            multiple = 2 if info.expert_axis is not None else 1
            largest_block[dev.index] = max(largest_block[dev.index], info.numel * multiple)

    fold = 4 if b < 4 else 0  # float32 copy of a gradient as it is folded (none for fp32 on its own device)
    layer_saved = layer_activation_bytes(m, b, tokens, st.seq_len, math_attention) * cost.activation_factor
    f_eff = m.intermediate * (m.experts_per_token if m.style.mlp == "moe" else 1)
    for dev in devices:
        n_layers = dev.layers[1] - dev.layers[0]
        if not cost.data:
            dev.phases["scores"] = 0.0
            continue
        if not cost.backward:
            _forward_only_phases(dev, m, b, batch, st.seq_len, f_eff, dev.index == head_device)
            continue
        if st.checkpointing:
            saved = n_layers * tokens * m.hidden * b * cost.activation_factor
            recompute = layer_saved if n_layers else 0.0
        else:
            saved, recompute = n_layers * layer_saved, 0.0
        on_head = dev.index == head_device
        logprobs = predicted * m.vocab * 4  # float32 log-softmax output (and each float32 logits-sized copy)
        head = (final_norm_bytes(m, b, tokens) + logprobs) * cost.activation_factor if on_head else 0.0
        dev.activations = saved + head
        saved_blocks = saved + head - logprobs * cost.activation_factor if on_head else saved  # loss done
        tied_buffer = embed_numel * b if m.tied and dev.index == 0 else 0.0
        if n_layers:
            working = tokens * b * (3 * f_eff + 4 * m.hidden)
            dev.phases["backward_blocks"] = (
                saved_blocks + tied_buffer + recompute + largest_block[dev.index] * (b + fold) + working
            )
        if on_head:
            logits = tokens * m.vocab * b
            fwd = logits + (logprobs if batch > 1 else 0) if b == 4 else logprobs
            dev.phases["forward_loss"] = saved + head + fwd * cost.activation_factor
            dev.phases["backward_softmax"] = saved + head + 2 * logprobs * cost.activation_factor
            lm_grad = embed_numel * (b if m.tied else b + fold)
            dev.phases["backward_lm_head"] = saved + head - logprobs + logits + lm_grad
        if dev.index == 0:
            dev.phases["backward_embedding"] = embed_numel * (max(3 * b, b + fold) if m.tied else b + fold)
    return devices


def _forward_only_phases(
    dev: DeviceMemory, m: ModelFacts, b: int, batch: int, seq_len: int, f_eff: int, on_head: bool
) -> None:
    """No-grad forward (act_mag, perturbation evaluation): one layer's working set, then the loss's logits."""
    tokens, predicted = batch * seq_len, batch * (seq_len - 1)
    if dev.layers[1] > dev.layers[0]:
        dev.phases["forward_blocks"] = tokens * b * (max(3 * f_eff, 4 * m.q_dim) + 2 * m.hidden)
    if on_head:
        logprobs = predicted * m.vocab * 4
        logits = tokens * m.vocab * b + (logprobs if b < 4 or batch > 1 else 0)
        dev.phases["forward_loss"] = logits + logprobs + tokens * m.hidden * b


def host_bytes(m: ModelFacts, st: Settings) -> float:
    """Host memory for accumulators kept on the CPU (accumulate_on='cpu'), plus one float32 fold copy."""
    if st.accumulate_on != "cpu":
        return 0.0
    cost = st.cost
    scored = [p.numel for p in m.params.values() if p.linear or not cost.linear_only]
    return 4 * (sum(scored) * max(cost.accumulators, cost.results) + (max(scored) if cost.backward else 0))


def forward_flops(m: ModelFacts, seq_len: int) -> float:
    """FLOPs of one window's forward: 2 per active weight per token, plus 4·s²·q per layer for attention.

    Active weights exclude the input embedding (a lookup) unless tied to the lm_head, and count k of E
    experts. The attention term counts the full s×s square (causal kernels skip about half of it).
    """
    n = 0.0
    for p in m.params.values():
        if p.component == "embedding" and not m.tied:
            continue
        n += p.numel * (m.experts_per_token / m.experts if p.component == "expert" else 1)
    return 2 * n * seq_len + 4 * seq_len**2 * m.q_dim * m.layers


def run_flops(m: ModelFacts, st: Settings, n_samples: int, probes: int) -> float:
    """Total FLOPs of scoring `n_samples` windows (checkpointing adds one forward per backward)."""
    cost = st.cost
    if not cost.data:
        return 2.0 * m.n_params  # read, abs, write: negligible, reported for completeness
    passes = cost.passes + (1 if cost.backward and st.checkpointing else 0)
    return forward_flops(m, st.seq_len) * n_samples * passes * (probes if cost.per_probe else 1)


def gib(n: float) -> float:
    return round(n / 2**30, 3)

