"""Time ranking and score statistics on synthetic score sets shaped like real models.

Llama-3.1-8B (8,030,261,248 scores in 291 tensors) is generated tensor by tensor while the ranking
and statistics stream over it, so peak memory should stay near one tensor (the 2 GiB embedding),
never the 32 GiB the whole set would take. SmolLM2-135M (134,515,008 scores, 272 tensors) is held in
memory like a real run and timed per operation. Scores are Pareto(alpha=2) - 1: heavy-tailed, >= 0.

    PYTHONPATH=src python benchmarks/bench_ranking.py [--skip-llama] [--seed 0] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Callable, Iterator, Mapping

import torch

from esa.models.types import ParamInfo
from esa.ranking import top_k
from esa.statistics import score_statistics


def decoder_params(vocab: int, hidden: int, kv: int, ffn: int, layers: int, tied: bool) -> dict[str, ParamInfo]:
    """ParamInfo for a Llama-style decoder, in named_parameters() order."""
    def linear(name: str, rows: int, cols: int, layer: int, component: str, role: str) -> ParamInfo:
        return ParamInfo(name, (rows, cols), layer, component, role, linear=True, in_features=cols)

    out = [ParamInfo("model.embed_tokens.weight", (vocab, hidden), None, "embedding")]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            linear(p + "self_attn.q_proj.weight", hidden, hidden, i, "attention", "q"),
            linear(p + "self_attn.k_proj.weight", kv, hidden, i, "attention", "k"),
            linear(p + "self_attn.v_proj.weight", kv, hidden, i, "attention", "v"),
            linear(p + "self_attn.o_proj.weight", hidden, hidden, i, "attention", "o"),
            linear(p + "mlp.gate_proj.weight", ffn, hidden, i, "mlp", "gate"),
            linear(p + "mlp.up_proj.weight", ffn, hidden, i, "mlp", "up"),
            linear(p + "mlp.down_proj.weight", hidden, ffn, i, "mlp", "down"),
            ParamInfo(p + "input_layernorm.weight", (hidden,), i, "norm", "input_norm"),
            ParamInfo(p + "post_attention_layernorm.weight", (hidden,), i, "norm", "post_attention_norm"),
        ]
    out.append(ParamInfo("model.norm.weight", (hidden,), None, "norm", "final_norm"))
    if not tied:
        out.append(ParamInfo("lm_head.weight", (vocab, hidden), None, "lm_head", linear=True, in_features=hidden))
    return {p.name: p for p in out}


class SyntheticScores(Mapping[str, torch.Tensor]):
    """Scores made on demand (a fresh tensor per access, seeded by tensor position), timing the making."""

    def __init__(self, params: dict[str, ParamInfo], seed: int) -> None:
        self.params, self.seed = params, seed
        self.position = {name: i for i, name in enumerate(params)}
        self.gen_wall = self.gen_cpu = 0.0

    def __getitem__(self, name: str) -> torch.Tensor:
        t, c = time.perf_counter(), time.process_time()
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.position[name])
        x = torch.rand(self.params[name].shape, generator=g)
        x.neg_().add_(1).pow_(-0.5).sub_(1)  # Pareto(2) - 1 from u in [0, 1): finite, >= 0
        self.gen_wall += time.perf_counter() - t
        self.gen_cpu += time.process_time() - c
        return x

    def __iter__(self) -> Iterator[str]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def streamed(
    label: str, params: dict[str, ParamInfo], seed: int, work: Callable[[Mapping[str, torch.Tensor]], object],
) -> None:
    scores = SyntheticScores(params, seed)
    t, c = time.perf_counter(), time.process_time()
    work(scores)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    print(f"  {label:28s} generate {scores.gen_wall:7.1f} s wall ({scores.gen_cpu:6.1f} s cpu)   "
          f"rank/stats {wall - scores.gen_wall:7.1f} s wall ({cpu - scores.gen_cpu:6.1f} s cpu)   "
          f"peak RSS so far {peak_rss_gib():.2f} GiB", flush=True)


def timed(label: str, work: Callable[[], object], repeats: int = 3) -> None:
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    print(f"  {label:28s} best {min(walls):6.2f} s wall, median {sorted(walls)[len(walls) // 2]:6.2f} s "
          f"(cpu {min(cpus):6.2f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-llama", action="store_true", help="only the SmolLM2-sized set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    smol = decoder_params(49152, 576, 192, 1536, 30, tied=True)
    scores = dict(SyntheticScores(smol, args.seed))
    print(f"SmolLM2-135M shape: {len(smol)} tensors, {sum(p.numel for p in smol.values()):,} scores (in memory)")
    timed("top_k per_layer k=100", lambda: top_k(scores, 100, "per_layer"))
    timed("top_k global k=100", lambda: top_k(scores, 100, "global"))
    timed("top_k global k=10000", lambda: top_k(scores, 10_000, "global"))
    timed("score_statistics", lambda: score_statistics(scores, smol))
    del scores

    if not args.skip_llama:
        llama = decoder_params(128256, 4096, 1024, 14336, 32, tied=False)
        print(f"Llama-3.1-8B shape: {len(llama)} tensors, {sum(p.numel for p in llama.values()):,} scores (streamed)")
        streamed("top_k global k=100", llama, args.seed, lambda s: top_k(s, 100, "global"))
        streamed("top_k global k=10000", llama, args.seed, lambda s: top_k(s, 10_000, "global"))
        streamed("score_statistics", llama, args.seed, lambda s: score_statistics(s, llama))
    print(f"peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
