"""Bytes a scoring pass holds, term by term, per device: the formulas behind `esa plan`.

Notation: b bytes per model element (4 fp32, 2 bf16/fp16), B windows per backward, s tokens per window,
T = B·s tokens, T' = B·(s-1) predicted tokens, h hidden, f MLP width (per expert), a heads, q = a·head_dim,
kv = kv_heads·head_dim, V vocabulary, E experts, k experts per token.

Activations saved for backward, per token and decoder layer (what autograd keeps in HF's implementations;
tests/scale checks them with saved-tensor hooks on tiny models of each family):
  norms   rms: 2·(4h + 2bh + 4)   (float32 upcast, normalised copy, weighted output, 1/rms)
          parallel_ln (GPT-NeoX): 3bh + 16
  attention (sdpa: flash / memory-efficient kernels, no s² term; 4a bytes of logsumexp)
          separate q/k/v: b·(2q + 2kv) + 4a;  fused qkv: b·(4q + 3kv) + 4a
          eager / math kernel: + 2b·(q - kv) for K/V repeated to every head, + a·s·(4 + b) for the softmax
          probabilities (float32, plus their model-dtype copy when b < 4), and no logsumexp
  mlp     gated: 4bf;  plain: 2bf;  moe: k·b·(2h + 4f) + 4E + 40k
The loss keeps the final norm and the float32 log-softmax of the logits (4V bytes per predicted token).

Peaks are phases, not sums; the dynamic memory is the largest of
  forward_loss        saved + logits (b·T·V; float32 copies when b < 4 or B > 1)
  backward_softmax    saved + two float32 T'·V gradients
  backward_lm_head    saved - log-softmax + b·T·V logits gradient + lm_head weight gradient (+ fold copy)
  backward_blocks     saved + largest block gradient + its float32 fold copy (b < 4) + b·T·f_e working set
                      (f_e = k·f for MoE); a tied lm_head's gradient waits in autograd's buffer meanwhile
  backward_embedding  activations freed; tied: buffer + embedding gradient + their sum (3·b·V·h)
  results             activations freed; the float32 score/extra buffers the metric returns
"Saved" is every layer's activations, or with checkpointing each layer's input (b·h per token) plus one
recomputed layer. A no-grad forward (act_mag, perturbation evaluation) keeps one layer's working set,
b·T·(max(3f_e, 4q) + 2h), then the loss's logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from esa.errors import EsaError
from esa.metrics import get_metric
from esa.metrics.base import MetricCost, metric_cost
from esa.models.types import ParamInfo
from esa.scale.facts import ModelFacts

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ATTENTION = ("sdpa", "eager")


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
        get_metric(self.metric)  # EsaError naming the registered metrics
        if self.dtype not in DTYPE_BYTES:
            raise EsaError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPE_BYTES)}")
        if self.accumulate_on not in ("param", "cpu"):
            raise EsaError(f"accumulate_on must be param (or device) or cpu, not {self.accumulate_on!r}")
        if self.attention not in ATTENTION:
            raise EsaError(f"unknown attention {self.attention!r}: use one of {', '.join(ATTENTION)}")
        if self.seq_len < 2 or self.batch_size < 1 or self.n_gpus < 1:
            raise EsaError("seq_len must be >= 2, batch_size and n_gpus >= 1")

    @property
    def cost(self) -> MetricCost:
        return metric_cost(get_metric(self.metric))


@dataclass(frozen=True)
class Phase:
    """Dynamic bytes at one moment: saved activations, full gradient copies, and everything transient."""

    saved: float = 0.0
    copies: float = 0.0
    transient: float = 0.0

    @property
    def total(self) -> float:
        return self.saved + self.copies + self.transient


@dataclass
class DeviceMemory:
    """Bytes on one device: static weights and accumulators plus the largest of its dynamic phases."""

    index: int
    layers: tuple[int, int]  # [first, last) decoder layers placed here
    weights: float = 0.0
    accumulators: float = 0.0
    phases: dict[str, Phase] = field(default_factory=dict)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda name: self.phases[name].total)

    @property
    def dynamic(self) -> Phase:
        return self.phases[self.peak_phase]

    @property
    def allocated(self) -> float:
        return self.weights + self.accumulators + self.dynamic.total


def is_scored(m: ModelFacts, info: ParamInfo, cost: MetricCost) -> bool:
    """Whether the metric gives `info` a score (act_mag: weights that multiply an activation; a tied
    embedding counts, through the lm_head)."""
    return not cost.linear_only or info.linear or (m.tied and info.component == "embedding")


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
    """The final norm's saved tensors plus token ids and targets (the float32 log-probabilities aside)."""
    h = m.hidden
    norm = 4 * h + 2 * b * h + 4 if m.style.norm == "rms" else 2 * b * h + 8
    return tokens * (norm + 16)


def device_memory(m: ModelFacts, st: Settings, forward_only: bool = False) -> list[DeviceMemory]:
    """Per-device bytes of one scoring pass (or, with `forward_only`, of a no-grad evaluation forward)."""
    cost = st.cost
    b = DTYPE_BYTES[st.dtype]
    splits = layer_split(m.layers, st.n_gpus)
    head_device = 0 if m.tied else st.n_gpus - 1  # a tied lm_head stays with the embedding
    devices = [DeviceMemory(i, r) for i, r in enumerate(splits)]
    scored, largest_block, largest_scored = [0] * st.n_gpus, [0] * st.n_gpus, [0] * st.n_gpus
    for info in m.params.values():
        if info.layer is not None:
            d = next(i for i, (lo, hi) in enumerate(splits) if lo <= info.layer < hi)
            largest_block[d] = max(largest_block[d], info.numel)
        else:
            d = head_device if info.component in ("lm_head", "norm") else 0
        devices[d].weights += info.numel * b
        if not forward_only and is_scored(m, info, cost):
            scored[d] += info.numel
            largest_scored[d] = max(largest_scored[d], info.numel)

    batch = cost.micro_batch or st.batch_size
    for dev in devices:
        on_head = dev.index == head_device
        if forward_only or (cost.data and not cost.backward):
            dev.phases = _forward_only_phases(m, b, st.batch_size, st.seq_len, dev, on_head)
        elif cost.backward:
            copies = scored[dev.index] * b * cost.gradient_copies
            dev.phases = _backward_phases(m, st, b, batch, dev, on_head, largest_block[dev.index], copies)
        if forward_only:
            continue
        if st.accumulate_on == "param":
            dev.accumulators = scored[dev.index] * 4 * cost.accumulators
            # the float32 results beyond the accumulators, and one float32 copy of a tensor as it is converted
            extra = scored[dev.index] * 4 * max(0, cost.results - cost.accumulators)
            dev.phases["results"] = Phase(transient=extra + (largest_scored[dev.index] * 4 if b < 4 else 0))
        else:
            dev.phases["results"] = Phase()
    return devices


def _backward_phases(
    m: ModelFacts, st: Settings, b: int, batch: int, dev: DeviceMemory, on_head: bool, largest_block: int,
    copies: float,
) -> dict[str, Phase]:
    """The forward+backward phases on one device (see the module docstring); `copies` live throughout."""
    cost = st.cost
    factor = cost.activation_factor
    tokens, predicted = batch * st.seq_len, batch * (st.seq_len - 1)
    n_layers = dev.layers[1] - dev.layers[0]
    math_attention = cost.math_attention or st.attention == "eager"
    layer_saved = layer_activation_bytes(m, b, tokens, st.seq_len, math_attention) * factor
    if st.checkpointing:
        saved, recompute = n_layers * tokens * m.hidden * b * factor, (layer_saved if n_layers else 0.0)
    else:
        saved, recompute = n_layers * layer_saved, 0.0
    logprobs = predicted * m.vocab * 4  # the float32 log-softmax output, and each float32 logits-sized copy
    head_norm = final_norm_bytes(m, b, tokens) * factor if on_head else 0.0
    fold = 4 if b < 4 else 0  # a bf16/fp16 gradient's float32 copy as it is folded
    embed = m.vocab * m.hidden
    f_eff = m.intermediate * (m.experts_per_token if m.style.mlp == "moe" else 1)
    phases: dict[str, Phase] = {}
    if n_layers:
        tied_buffer = embed * b if m.tied and dev.index == 0 else 0.0
        working = tokens * b * f_eff
        phases["backward_blocks"] = Phase(
            saved + head_norm, copies, tied_buffer + recompute + largest_block * (b + fold) + working
        )
    if on_head:
        with_logprobs = saved + head_norm + logprobs * factor
        logits = tokens * m.vocab * b
        forward = (logits + (logprobs if batch > 1 else 0)) if b == 4 else logprobs
        phases["forward_loss"] = Phase(with_logprobs, copies, forward * factor)
        phases["backward_softmax"] = Phase(with_logprobs, copies, 2 * logprobs * factor)
        phases["backward_lm_head"] = Phase(saved + head_norm, copies, logits + embed * (b if m.tied else b + fold))
    if dev.index == 0:
        embedding_grad = embed * (max(3 * b, b + fold) if m.tied else b + fold)
        phases["backward_embedding"] = Phase(copies=copies, transient=embedding_grad)
    return phases


def _forward_only_phases(
    m: ModelFacts, b: int, batch: int, seq_len: int, dev: DeviceMemory, on_head: bool
) -> dict[str, Phase]:
    """No-grad forward (act_mag, perturbation evaluation): one layer's working set, then the loss's logits."""
    tokens, predicted = batch * seq_len, batch * (seq_len - 1)
    phases = {}
    if dev.layers[1] > dev.layers[0]:
        f_eff = m.intermediate * (m.experts_per_token if m.style.mlp == "moe" else 1)
        phases["forward_blocks"] = Phase(transient=tokens * b * (max(3 * f_eff, 4 * m.q_dim) + 2 * m.hidden))
    if on_head:
        logprobs = predicted * m.vocab * 4
        logits = tokens * m.vocab * b + (logprobs if b < 4 or batch > 1 else 0)
        phases["forward_loss"] = Phase(transient=logits + logprobs + tokens * m.hidden * b)
    return phases


def host_bytes(m: ModelFacts, st: Settings) -> float:
    """Host memory for accumulators kept on the CPU (accumulate_on='cpu'), plus one float32 fold copy."""
    if st.accumulate_on != "cpu":
        return 0.0
    cost = st.cost
    scored = [p.numel for p in m.params.values() if is_scored(m, p, cost)]
    return 4 * (sum(scored) * max(cost.accumulators, cost.results) + max(scored))


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
