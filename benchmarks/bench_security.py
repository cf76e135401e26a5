"""Security measurements on SmolLM2-135M in bf16: fault campaigns (random vs top-k grad_x_weight sites),
the bit-flip attack with and without protecting the top critical weights, and fingerprint/verify cost.

    python benchmarks/bench_security.py --part faults --sites random   --out /tmp/bench15
    python benchmarks/bench_security.py --part faults --sites critical --out /tmp/bench15
    python benchmarks/bench_security.py --part faults --sites random --codes 4 --out /tmp/bench15   # 4-bit RTN g64 codes
    python benchmarks/bench_security.py --part faults --sites random --linear-only --out /tmp/bench15  # bf16, same sites
    python benchmarks/bench_security.py --part attack --out /tmp/bench15
    python benchmarks/bench_security.py --part verify --out /tmp/bench15
    python benchmarks/bench_security.py --part summary --out /tmp/bench15

Parts run as separate processes (one thread each) so they can run side by side; each writes
<out>/<part>.json, and `summary` prints the ratios from those files. Evaluation uses FEW windows
(--eval-windows of --seq-len tokens) so that a campaign of 1,000 trials fits in minutes on a CPU.
With `--codes B` the model is first quantized in memory (RTN, B bits, --group-size, asymmetric) and the
faults flip bits of the integer codes of the 210 decoder linear layers (critical sites: the top-k
grad_x_weight weights among them, scored on the quantized model); the model is restored after.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import esa
from esa.perturb import tensor_checksum
from esa.quantize import find_targets
from esa.security import (
    critical_weights, defended_attack, diff_models, fault_campaign, fingerprint, quantized_codes, verify,
)


def _setup(args: argparse.Namespace):
    torch.set_num_threads(args.threads)
    lm = esa.load_model(args.model, dtype="bf16")
    corpus = esa.load_corpus("builtin", lm.tokenizer)
    windows = esa.make_windows(corpus, args.seq_len, args.calib_windows, args.eval_windows, args.seed,
                               bos_id=lm.tokenizer.bos_token_id)
    return lm, windows


def faults(args: argparse.Namespace) -> dict:
    lm, windows = _setup(args)
    sites = "random" if args.sites == "random" else ("topk", "grad_x_weight", args.topk)
    kwargs = dict(injections=args.injections, sites=sites, bits="all", failure=args.failure, seed=args.seed,
                  batch_size=4, progress=True, max_seconds=args.max_seconds)
    if not args.codes:
        params = [t.name for t in find_targets(lm)] if args.linear_only else None
        return fault_campaign(lm, windows, params=params, **kwargs).to_dict()
    before = {n: tensor_checksum(p) for n, p in lm.model.named_parameters()}
    with quantized_codes(lm, windows, bits=args.codes, group_size=args.group_size, seed=args.seed,
                         batch_size=4) as (quant, codes):
        res = fault_campaign(lm, windows, codes=codes, **kwargs)
    restored = all(tensor_checksum(p) == before[n] for n, p in lm.model.named_parameters())
    return {**res.to_dict(), "quantization": quant.row(), "restored_bit_exact": restored}


def attack(args: argparse.Namespace) -> dict:
    lm, windows = _setup(args)
    crit = {m: critical_weights(lm, windows, m, args.protect, seed=args.seed) for m in ("grad_x_weight", "magnitude")}
    max_abs = max(float(p.detach().abs().max()) for p in lm.model.parameters())
    out = {"max_abs_weight": max_abs}
    for label, limit, budget in (("any_value", None, 5), ("in_range", max_abs, args.max_flips)):
        res = defended_attack(lm, windows, crit["grad_x_weight"], target_ppl=1000.0, max_flips=budget,
                              critical=crit, max_abs_value=limit, tries=3, batch_size=4)
        out[label] = res.to_dict()
        print(label, "open", res.open.n_flips, res.open.final_ppl, "defended", res.defended.n_flips,
              res.defended.final_ppl, flush=True)
    return out


def verify_cost(args: argparse.Namespace) -> dict:
    lm, windows = _setup(args)
    ref = esa.load_model(args.model, dtype="bf16")
    crit = critical_weights(lm, windows, "grad_x_weight", 100, seed=args.seed)
    start = time.perf_counter()
    fp = fingerprint(lm, metric="grad_x_weight", critical=crit)
    fp_s = time.perf_counter() - start
    text = fp.to_json()
    intact = verify(lm, type(fp).from_json(text))
    down = next(n for n, p in lm.params.items() if p.role == "down" and p.layer == 10)
    param = dict(lm.model.named_parameters())[down]
    saved = param.detach().clone()
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(param.shape[0], 1, generator=g), torch.randn(1, param.shape[1], generator=g)
    with torch.no_grad():
        param += (0.1 * saved.float().norm() * (u @ v) / (u.norm() * v.norm())).to(param.dtype)
    tampered = verify(lm, fp, reference=ref)
    d = diff_models(ref, lm, windows=windows, k=1000, seed=args.seed)
    with torch.no_grad():
        param.copy_(saved)
    return {"fingerprint_s": fp_s, "fingerprint_bytes": len(text), "verify_intact_s": intact.timing["verify_s"],
            "intact": intact.intact, "verify_tampered_s": tampered.timing["verify_s"],
            "tampered_changed": [c.param for c in tampered.changed], "n_changed": tampered.changed[0].n_changed,
            "edited": down, "diff_top": d.tensors[0].param, "diff_flagged": d.flagged[:5]}


def summary(args: argparse.Namespace) -> None:
    out = Path(args.out)
    res = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    for label in sorted(k for k in res if k.startswith("faults_")):
        r = res[label]
        t = r["timing"]
        print(f"{label}: {r['overall']['n']} trials, P(fail) {r['overall']['p']:.4f} "
              f"[{r['overall']['lo']:.4f}, {r['overall']['hi']:.4f}], silent {r['silent']['failures']}, "
              f"crashing {r['crashing']['failures']}; {t['trials_per_s']:.2f} trials/s, eval pass {t['eval_pass_s']:.3f} s, "
              f"campaign/eval-time ratio {t['overhead_vs_eval']:.3f}")
        if "quantization" in r:
            q = r["quantization"]
            print(f"   {q['label']}: quantized PPL {r['baseline']['ppl']:.2f} on the campaign window, "
                  f"restored bit-exactly: {r['restored_bit_exact']}")
        for k, rate in r["groups"]["bit" if "quantization" in r else "bit_class"].items():
            print(f"   {k:9s} n={rate['n']:4d} p={rate['p']:.4f} [{rate['lo']:.4f}, {rate['hi']:.4f}]")
    for label in ("attack", "verify"):
        if label in res:
            print(label, json.dumps({k: v for k, v in res[label].items() if not isinstance(v, dict)}))
    if "attack" in res:
        for mode in ("any_value", "in_range"):
            a = res["attack"][mode]
            print(f"attack {mode}: open {a['open']['n_flips']} flips (ppl {a['open']['final_ppl']}, reached "
                  f"{a['open']['reached']}), top-100 protected {a['defended']['n_flips']} flips (ppl "
                  f"{a['defended']['final_ppl']}, reached {a['defended']['reached']}), extra {a['extra_flips']}; "
                  f"overlap {a['open']['overlap']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("faults", "attack", "verify", "summary"), required=True)
    ap.add_argument("--sites", choices=("random", "critical"), default="random")
    ap.add_argument("--codes", type=int, default=0, metavar="BITS", help="flip bits of BITS-bit RTN codes instead")
    ap.add_argument("--group-size", type=int, default=64, help="group size of the --codes quantization")
    ap.add_argument("--linear-only", action="store_true",
                    help="float campaign over the quantized tensors only (the --codes population, as a control)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--injections", type=int, default=1000)
    ap.add_argument("--topk", type=int, default=1000)
    ap.add_argument("--protect", type=int, default=100)
    ap.add_argument("--max-flips", type=int, default=30)
    ap.add_argument("--max-seconds", type=float, default=None, help="stop a campaign after this long")
    ap.add_argument("--failure", default="dppl>1")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--calib-windows", type=int, default=4)
    ap.add_argument("--eval-windows", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="/tmp/bench15")
    args = ap.parse_args()
    if args.part == "summary":
        summary(args)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    fn = {"faults": faults, "attack": attack, "verify": verify_cost}[args.part]
    result = {"args": vars(args), **fn(args)}
    suffix = f"_codes{args.codes}" if args.codes else "_linear" if args.linear_only else ""
    name = f"faults_{args.sites}{suffix}" if args.part == "faults" else args.part
    (Path(args.out) / f"{name}.json").write_text(json.dumps(result, indent=1, default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x)))


if __name__ == "__main__":
    main()
