"""Zero-shot evaluation on SmolLM2-135M: ESA's figures vs plain lm_eval, and lm-eval's per-item overhead.

    .venv/bin/python benchmarks/bench_zeroshot.py [--parts 1,2,3] [--threads 1] [--preset smoke] [--full-chars N]

1. Bits per byte, word PPL and token PPL on the built-in corpus (run_baseline; with --full-chars also the
   full protocol on the corpus's first N characters).
2. tests/tasks/facts_mc.yaml scored by esa.evaluation.evaluate_tasks and by a direct lm_eval.simple_evaluate
   (HFLM on the same in-memory model, run from the YAML's folder), printed side by side.
3. Cost on the same tokens, batch size 1: (a) lm-eval's rolling loglikelihood of tests/tasks/stories_rolling.jsonl
   vs ESA's evaluate on one BOS window per document (the exact token sequences lm-eval scores; their bits/byte
   agree); (b) the MC task through lm-eval vs ESA forward passes over the distinct sequences lm-eval runs
   (context + continuation; one pass serves all one-token choices of an item).
   Times are this process's CPU seconds (time.process_time, one torch thread), so other load on the machine
   does not enter; ratio = lm-eval / ESA.
4. facts_mc accuracy with the detected super weight zeroed vs 3 random weights of the same matrix zeroed, one
   at a time (esa.perturb.apply_perturbation, restored after each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

import esa
from esa.data import Corpus
from esa.data.protocols import full_windows
from esa.evaluation import evaluate, evaluate_tasks, run_baseline
from esa.evaluation.nll import next_token_nll

TASKS = Path(__file__).resolve().parents[1] / "tests" / "tasks"
MC = str(TASKS / "facts_mc.yaml")
ROLLING = str(TASKS / "stories_rolling.yaml")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="1,2,3")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--full-chars", type=int, default=0, help="also the full protocol on the first N chars (0: skip)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    parts = {int(p) for p in args.parts.split(",")}
    lm = esa.load_model("smollm2-135m")
    corpus = esa.load_corpus("builtin", lm.tokenizer)
    if 1 in parts:
        perplexity(lm, corpus, args.preset, args.full_chars)
    if 2 in parts:
        against_plain_lm_eval(lm)
    if 3 in parts:
        cost(lm)
    if 4 in parts:
        superweight_effect(lm, corpus)


def perplexity(lm: esa.LoadedModel, corpus: Corpus, preset: str, full_chars: int) -> None:
    tok = lm.tokenizer
    base = run_baseline(lm.model, corpus, preset, seeds=[1337], tokenizer=tok)
    f = base["fixed"]
    print(f"[1] run_baseline(lm.model, load_corpus('builtin', tok), {preset!r}, seeds=[1337], tokenizer=tok)")
    print(f"    last-N: {f['n_windows']} x {base['seq_len']} tokens, {f['n_bytes']} bytes, {f['n_words']} words: "
          f"PPL {f['ppl']:.4f}  bits/byte {f['bits_per_byte']:.4f}  word PPL {f['word_ppl']:.3f}")
    if full_chars:
        head = esa.load_corpus("builtin", tok, max_chars=full_chars)
        full = evaluate(lm.model, full_windows(head, 512).with_text_measures(tok), batch_size=4)
        print(f"    full protocol, 512-token windows of the first {full_chars} chars: {full.n_windows} windows, "
              f"{full.n_bytes} bytes: PPL {full.ppl:.4f}  bits/byte {full.bits_per_byte:.4f}  word PPL {full.word_ppl:.3f}")


def plain_simple_evaluate(lm: esa.LoadedModel, task: str, batch_size: int = 1) -> dict:
    """lm_eval as a user runs it on a local task: include path = the YAML folder, run from that folder."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    cwd = os.getcwd()
    os.chdir(TASKS)
    try:
        return lm_eval.simple_evaluate(model=HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size),
                                       tasks=[task], log_samples=False,
                                       task_manager=TaskManager(include_path=str(TASKS), include_defaults=False))
    finally:
        os.chdir(cwd)


def against_plain_lm_eval(lm: esa.LoadedModel) -> None:
    ours = evaluate_tasks(lm, [MC], batch_size=1)["esa_facts_mc"]
    theirs = plain_simple_evaluate(lm, "esa_facts_mc")["results"]["esa_facts_mc"]
    same = (ours.acc, ours.acc_norm, ours.acc_stderr, ours.acc_norm_stderr) == (
        theirs["acc,none"], theirs["acc_norm,none"], theirs["acc_stderr,none"], theirs["acc_norm_stderr,none"])
    print(f"[2] facts_mc ({ours.n_items} items), evaluate_tasks(lm, ['tests/tasks/facts_mc.yaml'], batch_size=1):")
    print(f"    ESA           acc {ours.acc!r} ± {ours.acc_stderr!r}, acc_norm {ours.acc_norm!r} ± {ours.acc_norm_stderr!r}")
    print(f"    plain lm_eval acc {theirs['acc,none']!r} ± {theirs['acc_stderr,none']!r}, "
          f"acc_norm {theirs['acc_norm,none']!r} ± {theirs['acc_norm_stderr,none']!r}")
    print(f"    identical to the last digit: {same}")


def cpu_seconds(fn) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def cost(lm: esa.LoadedModel) -> None:
    from lm_eval.models.huggingface import HFLM

    wrapper = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=1)
    evaluate_tasks(lm, [ROLLING, MC], limit=2)  # warm-up: imports, datasets cache
    # (a) rolling loglikelihood vs ESA windows of the same token sequences
    docs = [json.loads(line)["text"] for line in (TASKS / "stories_rolling.jsonl").read_text().splitlines()]
    windows = []
    for doc in docs:
        ids = torch.tensor(wrapper.tok_encode(doc), dtype=torch.int64)
        one = Corpus("doc", ids, len(doc), {"name": "doc"})
        windows.append(esa.make_windows(one, ids.numel() + 1, 0, 1, 0, bos_id=wrapper.prefix_token_id)
                       .with_text_measures(lm.tokenizer))
    t_lm, rolling = cpu_seconds(lambda: evaluate_tasks(lm, [ROLLING], batch_size=1))
    t_esa, results = cpu_seconds(lambda: [evaluate(lm.model, ws) for ws in windows])
    nll = sum(r.mean_nll * (r.seq_len - 1) for r in results)
    n_bytes = sum(r.n_bytes for r in results)
    print(f"[3a] rolling, {len(docs)} documents, {sum(r.n_tokens for r in results)} predicted tokens: bits/byte "
          f"lm-eval {rolling['esa_stories_rolling'].metrics['bits_per_byte']:.6f}, ESA {nll / (n_bytes * math.log(2)):.6f}")
    print(f"     CPU s: lm-eval {t_lm:.3f}, ESA {t_esa:.3f}: ratio {t_lm / t_esa:.2f}x, "
          f"overhead {(t_lm - t_esa) / len(docs) * 1000:.1f} ms per document")
    # (b) MC through lm-eval vs forward passes over the same context+continuation sequences
    rows = [json.loads(line) for line in (TASKS / "facts_mc.jsonl").read_text().splitlines()]
    # lm-eval runs one forward per distinct context + continuation[:-1] (its logits cache serves every one-token
    # choice of an item from one pass); ESA runs the same distinct sequences.
    distinct: dict[tuple[int, ...], list[int]] = {}
    for r in rows:
        context = wrapper.tok_encode(r["question"])
        for choice in r["choices"]:
            continuation = wrapper.tok_encode(" " + choice)
            distinct.setdefault(tuple(context + continuation[:-1]), context + continuation)
    sequences = [torch.tensor(ids)[None] for ids in distinct.values()]
    n_requests = sum(len(r["choices"]) for r in rows)

    def forward_all() -> None:
        with torch.no_grad():
            for ids in sequences:
                next_token_nll(lm.model, ids)

    t_lm, _ = cpu_seconds(lambda: evaluate_tasks(lm, [MC], batch_size=1))
    t_esa, _ = cpu_seconds(forward_all)
    print(f"[3b] MC, {len(rows)} items = {n_requests} requests = {len(sequences)} distinct sequences, "
          f"{sum(s.numel() for s in sequences)} tokens: "
          f"CPU s: lm-eval {t_lm:.3f}, ESA forward passes {t_esa:.3f}: ratio {t_lm / t_esa:.2f}x, "
          f"overhead {(t_lm - t_esa) / len(rows) * 1000:.1f} ms per item")


def superweight_effect(lm: esa.LoadedModel, corpus: Corpus) -> None:
    from esa.analysis import detect_superweights
    from esa.perturb import apply_perturbation

    windows = esa.make_windows(corpus, 128, 0, 4, 1, max_seq_len=lm.max_seq_len)
    found = detect_superweights(lm, windows, n_controls=0, seed=1)
    rows = found.super_weights() or found.candidates[:1]
    param, flat = rows[0]["param"], int(rows[0]["flat_index"])
    numel = dict(lm.model.named_parameters())[param].numel()
    draws = torch.randint(numel, (3,), generator=torch.Generator().manual_seed(0)).tolist()
    print(f"[4] super weight {param}[{rows[0]['index']}] (verdict: {rows[0].get('verdict')})")
    conditions = [("nothing", None), ("super weight", flat)] + [(f"random #{i}", d) for i, d in enumerate(draws)]
    for label, index in conditions:
        zeroed = {} if index is None else {param: torch.tensor([index])}
        with apply_perturbation(lm.model, zeroed, "zero", torch.Generator().manual_seed(0)):
            score = evaluate_tasks(lm, [MC], batch_size=8)["esa_facts_mc"]
        print(f"    {label:>12} zeroed (flat index {index}): acc {score.acc:.4f} ± {score.acc_stderr:.4f}, acc_norm {score.acc_norm:.4f}")


if __name__ == "__main__":
    main()
