"""The report's content: one section per run, built only from what the run saved.

Every conclusion is read off a criterion the pipeline evaluated and saved ("criteria": name, rule,
value, passed); sentences are conditional on those flags, and a missing part is named with the
flags that would produce it.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from esa.artifacts import schema
from esa.plots.perturbation import conditions, definition, dose_response
from esa.plots.values import fmt, num, pct
from esa.reports.document import Block, Bullets, Code, FigureBlock, Heading, Inline, Para, Strong, Table
from esa.reports.figures import DrawnFigure
from esa.reports.rundata import RunData

TOP_ROWS = 20
SET_NAMES = {"target": "target (top-k)", "random_k": "random-k control", "bottom_k": "bottom-k control"}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


class Section:
    """Blocks for one run; `figure(name)` places a drawn figure where the text refers to it."""

    def __init__(self, run: RunData, figures: list[DrawnFigure], label: str) -> None:
        self.run = run
        self.figures = {f.name: f for f in figures}
        self.key = slug(label)
        self.blocks: list[Block] = []

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def heading(self, text: str) -> None:
        self.add(Heading(2, text))

    def missing(self, text: str) -> None:
        self.add(Para([text], kind="note"))

    def figure(self, name: str) -> None:
        drawn = self.figures.get(name)
        if drawn is not None and drawn.png is not None:
            self.add(FigureBlock(drawn.png, drawn.caption))

    def table(self, columns: list[str], rows: list[list[Inline]], caption: str = "", latex: str = "",
              align: str = "") -> None:
        if rows:
            self.add(Table(columns, rows, caption, align, f"tab:{self.key}-{latex}" if latex else ""))


def run_blocks(run: RunData, figures: list[DrawnFigure], label: str) -> list[Block]:
    """Every part of one run's report, in reading order."""
    s = Section(run, figures, label)
    s.add(Heading(1, f"Run {label}", anchor=s.key), Para(["Directory: ", Code(str(run.path.resolve()))]))
    _protocol(s)
    _baseline(s)
    if run.command == "run" or run.stats is not None:
        _distribution(s)
        _components(s)
        _top_weights(s)
        _stability(s)
        _perturbation(s)
    _superweights(s)
    _analyses(s)
    _applications(s)
    _notes(s)
    _timings(s)
    return s.blocks


def _seeds(cfg: dict[str, Any]) -> list[Any]:
    """Seeds from config.json (they sit in the data options; older runs kept them at the top level)."""
    return list(cfg.get("seeds") or (cfg.get("data") or {}).get("seeds") or [])


# ---- protocol and baseline -----------------------------------------------------------------------

def _protocol(s: Section) -> None:
    run, cfg, man = s.run, s.run.config or {}, s.run.manifest or {}
    m = run.model
    rows: list[list[Inline]] = []
    argv = man.get("argv")
    if argv:
        rows.append(["command", Code("esa " + " ".join(shlex.quote(a) for a in argv[1:]))])
    if m:
        rows.append(["model", f"{run.model_id} ({m.get('family', '?')}, {fmt(m.get('n_params'))} parameters, "
                              f"{m.get('n_layers', '?')} layers, source {m.get('source', '?')})"])
        rows.append(["dtype / device", f"{m.get('dtype', '?')} / {m.get('device', '?')}"])
    if "metric" in cfg:
        mode = cfg.get("mode")
        rows.append(["metric", str(cfg["metric"])])
        rows.append(["selection", f"{mode} top-{cfg.get('topk')}" + (" (k per tensor)" if mode == "per_layer" else " (k over all weights)")])
        rows.append(["seeds", ", ".join(map(str, _seeds(cfg)))])
    data = man.get("data", {})
    dataset = data.get("dataset") if isinstance(data, dict) else None
    if isinstance(dataset, dict):
        rows.append(["dataset", f"{dataset.get('name', '?')}: {dataset.get('origin', '')}, {fmt(dataset.get('n_tokens'))} tokens, "
                                f"sha256 {str(dataset.get('text_sha256', ''))[:16]}"])
    windows = next((v for k, v in data.items() if k.lstrip("-").isdigit() and isinstance(v, dict)), None) if isinstance(data, dict) else None
    if windows:
        rows.append(["windows", f"seq_len {windows.get('seq_len')}; {windows.get('n_calib_used')} calibration windows per seed "
                                f"(requested {windows.get('n_calib_requested')}); {windows.get('n_eval_used')} evaluation windows "
                                f"(requested {windows.get('n_eval_requested')}), disjoint from calibration"])
        rows.append(["BOS", str(windows.get("bos"))])
        rows.append(["window rule", str(windows.get("rule", ""))])
    if run.baseline is not None:
        b = run.baseline
        rows.append(["baseline protocol", f"preset {b.get('preset')}, seq_len {b.get('seq_len')}, "
                                          f"{b.get('n_eval_used')} evaluation windows, batch size {b.get('batch_size')}"])
    if "data" in cfg and isinstance(cfg["data"], dict):
        rows.append(["batch size", str(cfg["data"].get("batch_size"))])
    env = man.get("environment", {})
    if man:
        rows.append(["started / finished", f"{man.get('started_at', '?')} / {man.get('finished_at', '?')}"])
    if env:
        rows.append(["software", f"esa {env.get('esa')} ({env.get('esa_git_commit') or 'no git commit'}), torch {env.get('torch')}, "
                                 f"transformers {env.get('transformers')}, python {env.get('python')}"])
        rows.append(["host", f"{env.get('platform')}, {env.get('cpu_threads')} CPU threads, CUDA {'yes' if env.get('cuda_available') else 'no'}"])
    s.heading("Protocol")
    s.table(["item", "value"], rows, "What ran, on which data", latex="protocol", align="lw")


def _baseline(s: Section) -> None:
    run = s.run
    b = run.baseline
    pert = (run.perturbation or {}).get("baseline")
    if b is None and pert is None:
        return
    s.heading("Baseline (unmodified model)")
    rows_by_model = (b or {}).get("models") or ([b["row"]] if b and "row" in b else [])
    if rows_by_model:
        tasks = sorted({t for r in rows_by_model for t in (r.get("task_scores") or {})})
        s.table(["model", "parameters", "PPL", "bits/byte", "word PPL", "accuracy", *tasks, "criteria"],
                [[Code(str(r.get("model"))), fmt(r.get("n_params")), fmt(r.get("ppl")), fmt(r.get("bits_per_byte")),
                  fmt(r.get("word_ppl")), pct(r.get("accuracy"), 4),
                  *[pct((r.get("task_scores") or {}).get(t, {}).get("acc"), 4) for t in tasks],
                  ", ".join(f"{k} {v}" for k, v in (r.get("criteria") or {}).items())] for r in rows_by_model],
                "Per model: token PPL (comparable within one tokenizer), bits per byte and word PPL (comparable "
                "across tokenizers), next-token accuracy, zero-shot accuracy (lm-eval) and the phase-1 criteria",
                latex="baseline_models")
    if b is not None and "models" in b:
        b = None
    if b is not None:
        fixed, spread = b.get("fixed", {}), b.get("across_seeds") or {}
        s.add(Para([f"Perplexity {fmt(fixed.get('ppl'))}, next-token accuracy {pct(fixed.get('accuracy'), 4)} on "
                    f"{fmt(fixed.get('n_tokens'))} predicted tokens ({fixed.get('n_windows')} fixed evaluation windows of "
                    f"{b.get('seq_len')} tokens, preset {b.get('preset')})."]))
        if spread.get("n_seeds", 0) > 1:
            p, a = spread["ppl"], spread["accuracy"]
            s.add(Para([f"Over {spread['n_seeds']} seeded window draws: PPL {fmt(p.get('mean'))} ± {fmt(p.get('std'))} "
                        f"(min {fmt(p.get('min'))}, max {fmt(p.get('max'))}); accuracy {pct(a.get('mean'), 4)} ± {pct(a.get('std'))}."]))
    if pert is not None:
        s.add(Para([f"Perturbation baseline: perplexity {fmt(pert.get('ppl'))}, accuracy {pct(pert.get('accuracy'), 4)} on "
                    f"{fmt(pert.get('n_tokens'))} tokens ({pert.get('n_windows')} evaluation windows of this run)."]))


# ---- scores ----------------------------------------------------------------------------------------

def _seed_stats(run: RunData) -> list[tuple[str, dict[str, Any]]]:
    stats = run.stats or {}
    seeds = [str(x) for x in _seeds(run.config or {})] or ["first"]
    out = [(seeds[0], stats)]
    out += [(seed, st) for seed, st in stats.get("by_seed", {}).items()]
    return out


def _distribution(s: Section) -> None:
    s.heading("Headline statistics")
    stats = s.run.stats
    if not stats or "global" not in stats:
        s.missing("No score statistics (sensitivity_stats.json) in this directory: it was not written by `esa run`.")
        return
    per_seed = _seed_stats(s.run)
    g = stats["global"]
    s.add(Para([f"{fmt(g.get('count'))} weights were scored with {stats.get('metric')}. The largest score is "
                f"{fmt(g.get('max_over_median'))} times the median and {fmt(g.get('max_over_mean'))} times the mean; "
                f"the top 0.1% of weights hold {pct(g.get('top_share', {}).get('0.1%'))} of the total score and the "
                f"top 1% hold {pct(g.get('top_share', {}).get('1%'))} (Gini {fmt(g.get('gini'), 3)}; "
                f"a uniform spread would give 0.1%, 1% and Gini 0)."]))
    rows_spec: list[tuple[str, Any]] = [
        ("weights scored", lambda x: fmt(x.get("count"))),
        ("exact zeros", lambda x: fmt(x.get("n_zero"))),
        ("max", lambda x: fmt(x.get("max"))),
        ("mean", lambda x: fmt(x.get("mean"))),
        ("median (p50)", lambda x: fmt(x.get("percentiles", {}).get("50"))),
        *[(f"p{q}", (lambda q: lambda x: fmt(x.get("percentiles", {}).get(q)))(q)) for q in ("90", "99", "99.9", "99.99")],
        ("max / median", lambda x: fmt(x.get("max_over_median"))),
        ("max / mean", lambda x: fmt(x.get("max_over_mean"))),
        ("Gini (± bound)", lambda x: f"{fmt(x.get('gini'), 4)} ± {fmt(x.get('gini_max_error'), 2)}"),
        *[(f"share held by top {q}", (lambda q: lambda x: pct(x.get("top_share", {}).get(q)))(q))
          for q in ("0.001%", "0.01%", "0.1%", "1%")],
    ]
    rows: list[list[Inline]] = [[name, *(get(st.get("global", {})) for _, st in per_seed)] for name, get in rows_spec]
    s.table(["statistic", *(f"seed {seed}" for seed, _ in per_seed)], rows,
            "Score distribution over all scored weights (percentiles and shares from a bfloat16-bucket histogram: "
            "relative error < 0.8%)", latex="scores")
    s.figure("score_histogram")
    s.figure("rank_score")


def _components(s: Section) -> None:
    stats = s.run.stats or {}
    by_comp, topk = stats.get("by_component", {}), stats.get("topk", {}).get("by_component", {})
    total = num(stats.get("global", {}).get("sum"))
    if not by_comp:
        return
    s.heading("Where sensitivity sits")
    rows: list[list[Inline]] = []
    for comp, st in by_comp.items():
        t = topk.get(comp, {})
        rows.append([comp, fmt(st.get("count")), pct((num(st.get("sum")) or 0) / total if total else None),
                     fmt(st.get("max_over_median")), fmt(st.get("gini"), 3), fmt(t.get("count", 0)), pct(t.get("share")),
                     fmt(t.get("enrichment"), 3)])
    s.table(["component", "weights", "share of score", "max / median", "Gini", "selected", "share of top-k",
             "enrichment"], rows,
            "By component (first seed). Enrichment = share of the top-k / share of the weights (> 1: over-represented)",
            latex="components")
    layers = stats.get("by_layer", {})
    if layers and total:
        heaviest = max(layers.items(), key=lambda kv: num(kv[1].get("sum")) or 0.0)
        where = "the parameters outside the decoder blocks" if heaviest[0] == "none" else f"layer {heaviest[0]}"
        s.add(Para([f"The largest share of the total score, {pct((num(heaviest[1].get('sum')) or 0) / total)}, sits in {where}."]))
    s.figure("layer_heatmap")
    s.figure("layer_shares")


def _top_weights(s: Section) -> None:
    top = s.run.first_seed_top()
    if top is None:
        return
    s.heading("Top weights")
    first = top.sort_values("score", ascending=False, kind="stable").head(TOP_ROWS)
    rows: list[list[Inline]] = []
    for r in first.itertuples(index=False):
        layer = "-" if int(r.layer) < 0 else str(r.layer)
        role = f" ({r.role})" if r.role and r.role != r.component else ""
        rows.append([str(r.rank), Code(str(r.param)), Code(f"[{r.index}]"), layer, f"{r.component}{role}", fmt(r.score),
                     fmt(r.weight), Code(repr(r.token)) if r.token else ""])
    s.table(["rank", "parameter", "index [row, col]", "layer", "component (role)", "score", "weight", "token"], rows,
            f"The {len(first)} highest-scoring of the {len(top):,} selected weights (seed {top['seed'].iloc[0]}); "
            "tokens are decoded for embedding / lm_head rows", latex="topweights", align="rllllrrl")


def _stability(s: Section) -> None:
    s.heading("Stability across seeds")
    st = (s.run.stats or {}).get("stability")
    if not st:
        s.missing("No stability check: run with several seeds and --stability-check "
                  "(e.g. --seeds 1337,123,999 --stability-check).")
        return
    pairs = st.get("pairs") or []
    if not pairs:
        s.missing(f"No stability pairs: {st.get('note', 'fewer than two seeds')}.")
        return
    jac = [num(p.get("jaccard")) for p in pairs]
    jac_ok = [j for j in jac if j is not None]
    text = (f"Across {len(st.get('runs', []))} seeds (different calibration windows), the top-k sets overlap with mean "
            f"Jaccard {fmt(st.get('mean_jaccard'), 3)} (pairs from {fmt(min(jac_ok), 3)} to {fmt(max(jac_ok), 3)}; "
            "1 = identical sets, 0 = disjoint)")
    if st.get("mean_spearman") is not None:
        text += f"; the scores on their union rank alike with mean Spearman {fmt(st.get('mean_spearman'), 3)}"
    s.add(Para([text + "."]))
    s.table(["seed A", "seed B", "Jaccard", "shared", "union", "Spearman"],
            [[str(p["a"]), str(p["b"]), fmt(p.get("jaccard"), 3), fmt(p.get("intersection")), fmt(p.get("union")),
              fmt(p.get("spearman"), 3)] for p in pairs],
            "Pairwise overlap of the selected weights", latex="stability")
    s.figure("stability")


# ---- perturbation ---------------------------------------------------------------------------------

def _condition_name(pert: dict[str, Any], entry: dict[str, Any]) -> str:
    return f"{pert.get('protocol', {}).get('perturbation', '?')} ({definition(pert, entry['scale'])}), k = {entry['k']}"


def _perturbation(s: Section) -> None:
    s.heading("Perturbation validation")
    pert = s.run.perturbation
    entries = conditions(pert)
    if pert is None or not entries:
        s.missing("No perturbation results: run with --perturb zero (or sign_flip, gauss_noise, bit_flip) to test the "
                  "selection against random-k and bottom-k controls.")
        return
    proto = pert.get("protocol", {})
    s.add(Bullets([
        ["perturbation: ", Code(str(proto.get("perturbation"))), "; " + "; ".join(
            f"scale {k}: {v}" for k, v in proto.get("definitions", {}).items())],
        [f"selection: {proto.get('mode')} top-k with k in {proto.get('ks')}; controls: {', '.join(proto.get('controls', []))}"],
        [f"trials: {proto.get('trials')} random-k draws per seed and condition; target and bottom-k: "
         f"{proto.get('target_trials')} per seed" + (" (magnitude-matched random draws)" if proto.get("match_magnitude") else "")],
        [f"random-k: {proto.get('random_k', '')}"],
        [f"evaluation: {proto.get('evaluation', '')}"],
        [f"p-value: {proto.get('p_value', '')}"],
    ]))
    rows: list[list[Inline]] = []
    for e in entries:
        for set_name, st in e["sets"].items():
            d = st.get("delta_ppl", {})
            ci = d.get("ci95")
            acc = num(st.get("delta_accuracy", {}).get("mean"))
            rows.append([_condition_name(pert, e), SET_NAMES.get(set_name, set_name), fmt(d.get("n")), fmt(d.get("mean")),
                         f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "n/a", fmt(st.get("mean_ppl")),
                         "n/a" if acc is None else f"{100 * acc:+.3g}", fmt(st.get("n_weights")),
                         fmt(d.get("n_nonfinite", 0))])
    s.table(["condition", "set", "trials", "mean ΔPPL", "95% CI", "mean PPL", "Δ accuracy (pp)", "weights", "non-finite"],
            rows, "Perplexity change per condition and set (bootstrap 95% CI of the mean over trials and seeds)",
            latex="perturbation", align="llrrrrrrr")
    crit_rows: list[list[Inline]] = []
    for e in entries:
        for c in e.get("criteria", []):
            crit_rows.append([_condition_name(pert, e), c["name"], c["rule"], fmt(c.get("value")),
                              Strong(schema.criterion_label(c))])
    s.table(["condition", "criterion", "rule", "value", "result"], crit_rows,
            "Pass/fail criteria, evaluated by the pipeline on these data", latex="criteria", align="llwrl")
    for e in entries:
        s.add(*_verdict(pert, e))
    _dose(s, pert)
    s.figure("perturbation")
    s.figure("dose_response")


def _verdict(pert: dict[str, Any], entry: dict[str, Any]) -> list[Block]:
    """The conclusion for one condition, conditional on its saved criteria, plus caveats the data imply."""
    criteria = entry.get("criteria", [])
    failed = [c for c in criteria if c.get("passed") is False]
    undecided = [c for c in criteria if c.get("passed") is None]
    name = _condition_name(pert, entry)
    sets = entry["sets"]
    t = sets.get("target", {}).get("delta_ppl", {})
    r = sets.get("random_k", {}).get("delta_ppl", {})
    effect = f"The target's mean ΔPPL is {fmt(t.get('mean'))}" + (
        f" against {fmt(r.get('mean'))} for random-k controls." if r else ".")
    if not criteria:
        return [Para([f"{name}: no criteria were saved. {effect}"], kind="note")]
    if undecided and not failed:
        why = "; ".join(f"{c['name']}: {c.get('reason', '')}" for c in undecided)
        out: list[Block] = [Para([Strong(f"{len(undecided)} of {len(criteria)} criteria are N/A"), f" for {name} ({why}). "
                                  f"{effect} The remaining criteria pass; the undecidable ones neither pass nor fail."],
                                 kind="note")]
    elif not failed:
        out = [Para([Strong(f"All {len(criteria)} criteria pass"), f" for {name}. {effect} Under this "
                                  "protocol the data are consistent with the selected weights mattering more than the "
                                  "controls."], kind="pass")]
    else:
        names = ", ".join(f"{c['name']} (value {fmt(c.get('value'))})" for c in failed)
        out = [Para([Strong(f"{len(failed)} of {len(criteria)} criteria fail"), f" for {name}: {names}. {effect} Under "
                     "this protocol the data do not establish that the selected weights matter more than the controls."],
                    kind="fail")]
    passed = {c["name"] for c in criteria if c.get("passed")}
    r_mean, b_mean = num(r.get("mean")), num(sets.get("bottom_k", {}).get("delta_ppl", {}).get("mean"))
    if r_mean is not None and r_mean <= 0 and passed & {"separation_3x", "separation_5x"}:
        out.append(Para([f"Caveat: the random-k mean ΔPPL is {fmt(r_mean)} (≤ 0), so the separation ratios are undefined "
                         "and those criteria pass by sign alone; rely on the significance criterion instead."], kind="note"))
    if b_mean is not None and b_mean <= 0 and "hierarchy_3x" in passed:
        out.append(Para([f"Caveat: the bottom-k mean ΔPPL is {fmt(b_mean)} (≤ 0), so hierarchy_3x passes by sign alone."],
                        kind="note"))
    tests = entry.get("tests", {})
    p_min = num(tests.get("min_reachable_p"))
    if "significance" in {c["name"] for c in failed} and p_min is not None and p_min >= 0.05:
        out.append(Para([f"The significance criterion cannot pass with these trials: the smallest reachable p is "
                         f"{fmt(p_min, 3)}. Rerun with more --trials (random trials pooled over seeds must reach 20)."],
                        kind="note"))
    nonfinite = t.get("n_nonfinite") or 0
    if nonfinite:
        out.append(Para([f"{nonfinite} of {t.get('n')} target trials gave a non-finite perplexity (the model diverged)."],
                        kind="note"))
    return out


def _dose(s: Section, pert: dict[str, Any]) -> None:
    d = dose_response(pert)
    if not d:
        return
    mono = "; ".join(f"{SET_NAMES.get(k, k)}: {'yes' if v else 'no'}" for k, v in d.get("monotonic", {}).items())
    hierarchy = d.get("hierarchy", [])
    held = sum(bool(h.get("holds")) for h in hierarchy)
    s.add(Para([f"Dose-response: ΔPPL rises monotonically with strength for {mono}. The ordering target > random-k > "
                f"bottom-k holds at {held} of {len(hierarchy)} levels."]))
    s.table(["scale", "k", "target > random > bottom"],
            [[fmt(h.get("scale")), fmt(h.get("k")), Strong("holds" if h.get("holds") else "does not hold")] for h in hierarchy],
            "Hierarchy per level")


# ---- super weights, analyses, notes, timings ------------------------------------------------------

def _superweights(s: Section) -> None:
    sw = s.run.superweights
    if sw is None:
        if s.run.command == "run":
            s.heading("Super weights")
            s.missing("No super-weight scan (superweights.json) in this directory: run the super-weight detection "
                      "(esa superweights) with this directory as its output to add it.")
        return
    s.heading("Super weights")
    proto = sw.get("protocol", {})
    s.add(Bullets([
        [str(proto.get("method", "super-weight detection"))],
        [f"threshold: {fmt(proto.get('threshold'))} x the median |activation| ({proto.get('typical_activation', '')})"],
        [f"candidate rule: {proto.get('candidate_rule', '')}"],
        [f"verdict rule: {proto.get('verdict_rule', '')}"],
        [f"inputs: {len(proto.get('prompts', []))} prompts + {proto.get('n_calibration_windows', 0)} calibration windows "
         f"({fmt(proto.get('n_tokens_per_pass'))} tokens per pass), {proto.get('n_projections')} projections; "
         f"baseline PPL {fmt(sw.get('baseline_ppl'))}; stopped: {sw.get('stopped', '?')}"],
    ]))
    cands = sw.get("candidates") or []
    if not cands:
        s.add(Para(["No candidate cleared the threshold: under this protocol the scan found no super weight."]))
    else:
        n_super = sum(bool(c.get("is_super_weight")) for c in cands)
        s.add(Para([f"{n_super} of {len(cands)} candidates meet the verdict rule."],
                   kind="pass" if n_super else ""))
        _superweights_in_selection(s, [c for c in cands if c.get("is_super_weight")])
        _rank_under_metrics(s, sw.get("rank_under_metrics"))
        rows: list[list[Inline]] = []
        for c in cands:
            token = (c.get("spike_token") or {}).get("text")
            rows.append([fmt(c.get("iteration")), fmt(c.get("layer")), "-" if c.get("expert") is None else fmt(c.get("expert")),
                         Code(str(c.get("param"))), Code(f"[{c.get('index')}]"), fmt(c.get("value")),
                         fmt(c.get("input_ratio"), 3), fmt(c.get("output_ratio"), 3),
                         Code(repr(token)) if token is not None else "", fmt(c.get("ppl_zeroed")),
                         fmt(c.get("delta_ppl")), str(c.get("verdict", ""))])
        s.table(["iter", "layer", "expert", "parameter", "index", "weight", "input ×median", "output ×median",
                 "spike token", "PPL zeroed", "ΔPPL", "verdict"], rows,
                "Candidates in detection order (each zeroed before the next pass)", latex="superweights",
                align="rrrllrrrlrrl")
    s.figure("superweights")


def _superweights_in_selection(s: Section, supers: list[dict[str, Any]]) -> None:
    """Where each validated super weight sits in this run's own top-k (first seed), when there is one."""
    top = s.run.first_seed_top()
    if top is None or not supers:
        return
    rank = {(p, i): r for p, i, r in zip(top["param"], top["index"], top["rank"])}
    parts: list[Inline] = ["In this run's selection: "]
    for n, c in enumerate(supers):
        found = rank.get((c.get("param"), c.get("index")))
        parts += ["; " if n else "", Code(f"{c.get('param')}[{c.get('index')}]"),
                  f" is rank {found} of {len(top):,}" if found is not None else f" is not among the {len(top):,} selected weights"]
    s.add(Para(parts + ["."]))


def _rank_under_metrics(s: Section, ranks: dict[str, Any] | None) -> None:
    """Each candidate's rank among all scored weights under each metric (saved by esa superweights)."""
    rows_in = (ranks or {}).get("candidates") or []
    metrics = list(dict.fromkeys(m for r in rows_in for m in r.get("ranks", {})))
    if not metrics:
        return

    def cell(entry: dict[str, Any]) -> str:
        if entry.get("rank") is None:
            return str(entry.get("note", "n/a"))
        return f"{fmt(entry['rank'])} (top {fmt(entry.get('top_percent'), 3)}%)"

    s.table(["parameter", "index", "verdict", *metrics],
            [[Code(str(r.get("param"))), Code(f"[{r.get('index')}]"), str(r.get("verdict", "")),
              *(cell(r.get("ranks", {}).get(m, {})) for m in metrics)] for r in rows_in],
            f"Rank of each candidate under each metric ({ranks.get('rule', '')})" if ranks else "",
            latex="superweight-ranks", align="lll" + "r" * len(metrics))


def _analyses(s: Section) -> None:
    """What --architecture-analysis and --weight-analysis measured, as tables (definitions in the JSON)."""
    stats = s.run.stats or {}
    arch, weights = stats.get("architecture_analysis"), stats.get("weight_analysis")
    if isinstance(arch, dict):
        s.heading("Architecture analysis")
        av = arch.get("attention_vs_mlp") or {}
        early = arch.get("early_layers") or {}
        out = arch.get("outside_blocks") or {}
        s.table(["quantity", "value"], [
            ["attention / MLP score mass", fmt(av.get("mass_ratio"))],
            ["attention / MLP top-k count", fmt(av.get("topk_ratio"))],
            ["early layers (of blocks): share of mass", pct(early.get("mass_share_of_blocks"))],
            ["early layers (of blocks): share of top-k", pct(early.get("topk_share_of_blocks"))],
            ["early layers", f"{len(early.get('layers', []))} of {arch.get('n_layers')} ({pct(early.get('layer_share'))})"],
            ["outside the blocks (embedding, final norm, lm_head): share of mass", pct(out.get("mass_share"))],
            ["outside the blocks: share of top-k", pct(out.get("topk_share"))],
        ], "Attention vs MLP, early-layer concentration and the share outside the decoder blocks", latex="architecture",
            align="lr")
        comp = arch.get("by_component") or {}
        s.table(["component", "mass share", "top-k", "top-k share", "weight share", "enrichment"],
                [[c, pct(v.get("mass_share")), fmt(v.get("topk")), pct(v.get("topk_share")), pct(v.get("weight_share")),
                  fmt(_enrichment(v))] for c, v in comp.items()],
                "Per component: score mass, selected weights, and enrichment = top-k share / weight share",
                latex="components_mass", align="lrrrrr")
        bins = arch.get("by_depth_bin") or []
        s.table(["depth", "layers", "mass share", "top-k share"],
                [[f"{fmt(b.get('depth_from'))}-{fmt(b.get('depth_to'))}", ", ".join(map(str, b.get("layers", []))),
                  pct(b.get("mass_share")), pct(b.get("topk_share"))] for b in bins],
                "Sensitivity by relative depth (layer / (n_layers - 1))", latex="depth", align="llrr")
        moe = arch.get("moe") or arch.get("experts") or {}
        if isinstance(moe, dict) and moe.get("per_expert"):
            s.table(["expert", "mass share", "top-k", "top-k share"],
                    [[str(e.get("expert")), pct(e.get("mass_share")), fmt(e.get("topk")), pct(e.get("topk_share"))]
                     for e in moe["per_expert"]],
                    f"Per expert (max/mean mass {fmt(moe.get('expert_mass_max_over_mean'))}; router mass share "
                    f"{pct((moe.get('router') or {}).get('mass_share'))})", latex="experts", align="lrrr")
        s.figure("architecture")
    if isinstance(weights, dict):
        s.heading("Weight analysis")
        rows = weights.get("weights") or []
        s.table(["rank", "parameter", "index", "value", "z(|w|)", "|w| percentile"],
                [[fmt(r.get("rank")), Code(str(r.get("param"))), Code(f"[{r.get('index')}]"), fmt(r.get("value")),
                  fmt(r.get("abs_z")), fmt(r.get("abs_percentile"))] for r in rows[:20]],
                f"The top weights' magnitude against their tensor (first 20 of {len(rows)})", latex="weights",
                align="rllrrr")
        tensors = weights.get("tensors") or []
        s.table(["parameter", "selected", "distinct rows", "row HHI", "shared rows", "distinct cols", "col HHI"],
                [[Code(str(t.get("param"))), fmt(t.get("n_selected")), fmt(t.get("rows", {}).get("n_distinct")),
                  fmt(t.get("rows", {}).get("hhi")), pct(t.get("rows", {}).get("shared_fraction")),
                  fmt(t.get("cols", {}).get("n_distinct")), fmt(t.get("cols", {}).get("hhi"))]
                 for t in sorted(tensors, key=lambda t: -(t.get("n_selected") or 0))[:15]],
                f"Row/column concentration of the selection per tensor (shared rows: {pct(weights.get('shared_row_fraction'))} "
                f"of the selected weights share a row with another; cols: {pct(weights.get('shared_col_fraction'))})",
                latex="concentration", align="lrrrrrr")


def _enrichment(v: dict[str, Any]) -> float | None:
    top, share = num(v.get("topk_share")), num(v.get("weight_share"))
    return top / share if top is not None and share else None


def _notes(s: Section) -> None:
    notes = list((s.run.stats or {}).get("notes", [])) + list((s.run.superweights or {}).get("notes", []))
    if notes:
        s.heading("Notes")
        s.add(Bullets([[str(n)] for n in notes]))


def _timings(s: Section) -> None:
    timings = (s.run.manifest or {}).get("timings_s", {})
    if timings:
        s.heading("Timings")
        s.table(["stage", "seconds"], [[k, f"{v:.2f}"] for k, v in timings.items()], "Wall-clock time per stage")


def verdict_summary(run: RunData) -> str:
    """Criteria passed per perturbation condition, e.g. "zero k=10: 4/5 criteria pass"; '' without perturbation."""
    proto = (run.perturbation or {}).get("protocol", {})
    parts = []
    for e in conditions(run.perturbation):
        crit = e.get("criteria", [])
        scale = f" x{float(e['scale']):g}" if len(proto.get("scales", [])) > 1 else ""
        parts.append(f"{proto.get('perturbation', '?')}{scale} k={e['k']}: "
                     f"{sum(bool(c.get('passed')) for c in crit)}/{len(crit)} criteria pass"
                     + (f", {sum(c.get('passed') is None for c in crit)} N/A" if any(c.get('passed') is None for c in crit) else ""))
    return "; ".join(parts)


# ---- applications and studies ------------------------------------------------------------------------

# result file -> (section title, the list of records it tabulates, the figures that belong to it)
APPLICATIONS = {
    schema.PRUNE: ("Pruning", "rows", ("prune_ppl", "prune_layers")),
    schema.QUANT: ("Quantization", "configurations", ("quantization",)),
    schema.FAULTS: ("Fault injection", "side_by_side", ("fault_bits",)),
    schema.ATTACK: ("Bit-flip attack", None, ()),
    schema.FINETUNE: ("Fine-tuning", "modes", ("finetune_curves", "finetune_tradeoff")),
    schema.INTERPRET: ("Interpretability", "weights", ("interpret_roles", "interpret_sink", "interpret_heads",
                                                       "interpret_knowledge")),
    schema.SCALING: ("Scaling fits", "fits", ("scaling",)),
    schema.FAMILIES: ("Architecture families", "groups", ("depth_profiles", "family_ratios")),
}
MAX_ROWS, MAX_COLUMNS = 40, 9


def _applications(s: Section) -> None:
    """One section per application result: its records as a table of their scalar fields, any saved
    criteria as PASS/FAIL/N/A, and its figures. The full records are in the file named."""
    for file, (title, key, figures) in APPLICATIONS.items():
        data = s.run.results.get(file)
        if data is None:
            continue
        s.heading(title)
        s.add(Para([f"From {file}; every field is in that file."]))
        records = data.get(key) if key else None
        if isinstance(records, dict):
            records = [{"name": k, **v} if isinstance(v, dict) else {"name": k, "value": v} for k, v in records.items()]
        if isinstance(records, list) and records and isinstance(records[0], dict):
            columns = [c for c in records[0] if all(_scalar(r.get(c)) for r in records[:MAX_ROWS])][:MAX_COLUMNS]
            s.table(columns, [[fmt(r.get(c)) if not isinstance(r.get(c), str) else str(r.get(c)) for c in columns]
                              for r in records[:MAX_ROWS]], f"{title}: {len(records)} records"
                    + (f" (first {MAX_ROWS})" if len(records) > MAX_ROWS else ""), latex=file.split(".")[0])
        crit = _criteria_of(data)
        if crit:
            s.table(["criterion", "rule", "result"], [[str(c.get("name", "")), str(c.get("rule", "")),
                                                        Strong(schema.criterion_label(c))] for c in crit],
                    f"{title}: criteria evaluated on these data", latex=file.split(".")[0] + "_criteria")
        for name in figures:
            s.figure(name)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _criteria_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    crit = data.get("criteria")
    if isinstance(crit, list):
        return [c for c in crit if isinstance(c, dict) and "passed" in c]
    if isinstance(crit, dict):
        return [{"name": k, **v} if isinstance(v, dict) else {"name": k, "rule": "", "passed": v if isinstance(v, bool) else None}
                for k, v in crit.items()]
    return []
