"""esa interpret on SmolLM2-135M: its detected super weight and the top-100 grad_x_weight weights.

    .venv/bin/python benchmarks/bench_interpret.py [--out interpret_smollm2.json] [--threads 2]

Steps, each timed: super-weight detection (esa.analysis.detect_superweights), grad_x_weight scores on the
calibration windows (top-100 global), then esa.interpret.interpret on super weights + top-100 with the full
score tensors (head mass) and the built-in probes. Prints the findings and the cost ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import esa
from esa.analysis import detect_superweights
from esa.interpret import SelectedWeight, from_weight_set, interpret
from esa.pipeline.profile import score_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="interpret_smollm2.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--n-calib", type=int, default=2)
    ap.add_argument("--n-eval", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--max-iter", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lm = esa.load_model("smollm2-135m")
    windows = esa.make_windows(esa.load_corpus("builtin", lm.tokenizer), args.seq_len, args.n_calib, args.n_eval, 1,
                               bos_id=lm.tokenizer.bos_token_id, max_seq_len=lm.max_seq_len)
    t_load = time.perf_counter() - t0

    t = time.perf_counter()
    sw = detect_superweights(lm, windows, max_iter=args.max_iter, n_controls=1, seed=1, batch_size=2)
    t_detect = time.perf_counter() - t
    print(f"detected in {t_detect:.0f} s: {[(c['param'], c['index'], c['verdict']) for c in sw.candidates]}", flush=True)
    supers = [SelectedWeight(c["param"], tuple(int(i) for i in c["index"].split(",")), None, "super weight")
              for c in sw.super_weights()]

    t = time.perf_counter()
    scores = score_model(lm, esa.get_metric("grad_x_weight"), windows, list(lm.params), seed=1, batch_size=2).scores
    top = from_weight_set(lm, esa.top_k(scores, args.k, mode="global"))
    t_score = time.perf_counter() - t
    print(f"scored in {t_score:.0f} s", flush=True)

    t = time.perf_counter()
    result = interpret(lm, windows, supers + top, seed=1, batch_size=2, scores=scores, progress=True)
    t_interpret = time.perf_counter() - t
    out = result.to_dict()
    out["benchmark"] = {"load_s": t_load, "detect_s": t_detect, "score_s": t_score, "interpret_s": t_interpret,
                        "threads": args.threads, "super_weights": [w.label for w in supers]}
    with open(args.out, "w") as f:
        json.dump(out, f)

    print(f"model {lm.model_id}; {len(windows.calib_offsets)} calib windows x {windows.seq_len} tokens")
    print(f"super weights: {[w.label for w in supers]}")
    by_label = {r["label"]: r for r in result.weights}
    for w in supers:
        r = by_label[w.label]
        e, i = r["effects"], r["input"]
        print(f"\n{w.label}: role {r['role']} (met: {r['roles_met']})")
        print(f"  input fires at {i['n_fire']} of {i['n_tokens']} tokens; share at position 0 "
              f"{i['share_fire_at_position0']}; BOS {i['share_fire_at_bos']}; tokens "
              f"{[(x['text'], x['count']) for x in i['fire_tokens'][:5]]}; positions "
              f"{[(x['position'], x['count']) for x in i['fire_positions'][:5]]}")
        print(f"  max |h| downstream {e['hidden_max_before']:.1f} -> {e['hidden_max_after']:.1f} "
              f"(controls {[round(c['hidden_max_after'], 1) for c in r['controls']]})")
        print(f"  first-token attention (layers > {r['layer']}) {e['sink_before']:.3f} -> {e['sink_after']:.3f} "
              f"(controls {[round(c['sink_after'], 3) for c in r['controls']]})")
        print(f"  stopword mass {e['stopword_mass_before']:.4f} -> {e['stopword_mass_after']:.4f}; "
              f"NLL {e['delta_nll']:+.3f} nats")
        print(f"  removal promotes {[x['text'] for x in r['ablation_tokens']['promoted']]} "
              f"(stopword share {r['ablation_tokens']['stopword_share_promoted']:.1f})")
        if r["logit_lens"]:
            print(f"  logit lens promotes {[x['text'] for x in r['logit_lens']['promoted']]}, suppresses "
                  f"{[x['text'] for x in r['logit_lens']['suppressed']]}")
    topk_rows = [by_label[w.label] for w in top]
    counts: dict[str, int] = {}
    for r in topk_rows:
        counts[r["role"]] = counts.get(r["role"], 0) + 1
    assigned = sum(v for k, v in counts.items() if k != "unassigned")
    print(f"\ntop-{args.k} grad_x_weight roles: {counts}; share {assigned / len(topk_rows):.2f}")
    print(f"all selected: share {result.roles['share_assigned']:.2f} -> {result.roles['verdict']}")
    comps: dict[str, int] = {}
    for r in topk_rows:
        comps[r["component"]] = comps.get(r["component"], 0) + 1
    print(f"top-{args.k} by component: {comps}")
    print(f"attention: mean sink {result.attention['mean_sink']}")
    for name, c in result.attention["correlation_with_head_mass"].items():
        print(f"  spearman(head mass, {name}) = {c['rho']} ci {c['ci95']}")
    if result.knowledge:
        for by in ("by_layer", "by_component"):
            k = result.knowledge[by]
            print(f"knowledge {by}: top {k['top_group']} score {k['localisation_score']}; "
                  f"{k['n_facts_dependent']} facts dependent; groups "
                  f"{[(g['group'], round(g['effect'], 3)) for g in k['groups']]}")
    print(f"\ntimings (s): load {t_load:.1f}, detect {t_detect:.1f}, score {t_score:.1f}, interpret {t_interpret:.1f} "
          f"({json.dumps({k: round(v, 1) for k, v in result.timings.items()})})")
    print(f"ratio interpret / score: {t_interpret / t_score:.1f}x; per weight {t_interpret / len(result.weights):.2f} s")


if __name__ == "__main__":
    main()
