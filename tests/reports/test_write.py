"""write_report on a real tiny run: complete, offline, honest about what is missing and what passed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from esa.errors import EsaError
from esa.pipeline.report import report_command
from esa.reports import load_run, write_report
from esa.reports.document import Document, to_html, to_latex, to_markdown
from esa.reports.sections import run_blocks


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_full_report_embeds_every_figure_and_links_them(run_copy, tmp_path):
    paths = write_report([run_copy], tmp_path / "out", latex=True)
    assert [p.name for p in paths] == ["report.md", "report.html", "report_tables.tex"]
    html, md = read(paths[1]), read(paths[0])
    pngs = sorted((run_copy / "plots").glob("*.png"))
    assert len(pngs) == 6  # histogram, rank, heatmap, shares, stability, perturbation
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (paths[0].parent / link).is_file()
    for part in ("Protocol", "Headline statistics", "Top weights", "Stability across seeds", "Perturbation validation",
                 "Timings", "seq_len 16", "tiny-llama", "grad_x_weight"):
        assert part in html
    tex = read(paths[2])
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == tex.count(r"\toprule") >= 5


def test_default_output_is_the_run_directory(run_copy):
    paths = write_report([run_copy])
    assert all(p.parent == run_copy for p in paths) and len(paths) == 2


def render_run(run, latex: bool = False) -> str:
    """One run's report section as HTML (or LaTeX), without figures: for tests of the text alone."""
    doc = Document("test")
    doc.add(*run_blocks(run, [], "run"))
    return to_latex(doc) if latex else to_html(doc)


def test_verdicts_follow_the_saved_criteria(tiny_run):
    run = load_run(tiny_run)
    criteria = run.perturbation["summary"][0]["criteria"]
    n = len(criteria)
    for passed in (True, False):
        for c in criteria:
            c["passed"] = passed
        html = render_run(run)
        assert (f"All {n} criteria pass" in html) is passed
        assert (f"{n} of {n} criteria fail" in html) is not passed
        assert ("do not establish" in html) is not passed
        assert html.count("<strong>PASS</strong>") == (n if passed else 0)
        assert "validates the hypothesis" not in html


def test_missing_parts_are_named_and_the_rest_renders(run_copy, tmp_path):
    (run_copy / "perturbation_results.json").unlink()
    stats = json.loads(read(run_copy / "sensitivity_stats.json"))
    del stats["stability"]
    (run_copy / "sensitivity_stats.json").write_text(json.dumps(stats), encoding="utf-8")
    html = read(write_report([run_copy], tmp_path)[1])
    assert "No perturbation results: run with --perturb" in html
    assert "No stability check: run with several seeds and --stability-check" in html
    assert "Headline statistics" in html and "Top weights" in html
    assert html.count("data:image/png;base64,") == 4  # figures redrawn: no stability, no perturbation


def test_not_a_run_directory(tmp_path):
    with pytest.raises(EsaError, match=r"is not an ESA run directory \(no experiment_manifest.json\)$"):
        write_report([tmp_path])
    with pytest.raises(EsaError, match="at least one run directory"):
        write_report([])


def test_tokens_are_escaped_in_every_format(tiny_run, tmp_path):
    run = load_run(tiny_run)
    run.top = run.top.assign(token="</td><script>x</script>|`", score=[10.0 - i / 100 for i in range(len(run.top))])
    assert "<script>" not in render_run(run)
    assert r"\textless{}/td\textgreater{}" in render_run(run, latex=True)
    doc = Document("test")
    doc.add(*run_blocks(run, [], "run"))
    section = to_markdown(doc, tmp_path).split("### Top weights")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(rows) == 21 and all(len(re.findall(r"(?<!\\)\|", r)) == 9 for r in rows)


def test_several_runs_give_one_report_with_a_comparison(run_copy, tmp_path):
    other = Path(shutil.copytree(run_copy, tmp_path / "other"))
    md_path, html_path = write_report([run_copy, other], tmp_path / "both")
    html = read(html_path)
    assert "Comparison of runs" in html and html.count("<h2 id=") == 3  # comparison + one section per run
    assert (tmp_path / "both" / "plots" / "compare_overlap.png").is_file()
    assert re.search(r"<td class=r>1</td>", html)  # identical selections: Jaccard 1


def test_superweights_and_baseline_sections(run_copy, tmp_path):
    (run_copy / "superweights.json").write_text(json.dumps({
        "model_id": "tiny-llama", "protocol": {"threshold": 1000.0, "prompts": ["a"]}, "baseline_ppl": 20.0,
        "series": [{"layer": i, "expert": None, "input_max": 1.0 + 99 * (i == 1), "input_median": 0.1,
                    "input_ratio": 10.0 + 990 * (i == 1), "output_max": 0.5, "output_median": 0.1, "output_ratio": 5.0}
                   for i in range(2)],
        "candidates": [{"iteration": 0, "layer": 1, "expert": None, "param": "model.layers.1.mlp.down_proj.weight",
                        "index": "3,7", "value": -0.5, "input_spike": 100.0, "input_ratio": 1000.0, "output_ratio": 1000.0,
                        "spike_token": {"text": "<s>"}, "ppl_zeroed": 90.0, "delta_ppl": 70.0, "verdict": "super weight", "is_super_weight": True}],
        "stopped": "no spike above the threshold remains", "notes": [],
        "rank_under_metrics": {"rule": "rank = 1 + ...", "candidates": [
            {"param": "model.layers.1.mlp.down_proj.weight", "index": "3,7", "verdict": "super weight", "is_super_weight": True,
             "ranks": {"magnitude": {"rank": 12, "score": 0.5, "n_scored": 35168, "top_percent": 0.0341},
                       "grad_x_weight": {"rank": None, "note": "grad_x_weight did not score it"}}}]},
    }), encoding="utf-8")
    html = read(write_report([run_copy], tmp_path)[1])
    assert "1 of 1 candidates meet the verdict rule" in html and "&#x27;&lt;s&gt;&#x27;" in html
    assert re.search(r"In this run&#x27;s selection: <code>model.layers.1.mlp.down_proj.weight\[3,7\]</code> is "
                     r"(rank \d+|not among the \d+ selected weights)", html)
    assert (run_copy / "plots" / "superweights.png").is_file()
    assert "12 (top 0.0341%)" in html and "grad_x_weight did not score it" in html


def test_baseline_directory_report(tmp_path):
    run = tmp_path / "bl"
    run.mkdir()
    (run / "experiment_manifest.json").write_text(json.dumps({"command": "baseline", "model": {"model_id": "tiny-llama"},
                                                              "timings_s": {"evaluate": 1.0, "total": 1.5}}))
    (run / "baseline.json").write_text(json.dumps({
        "preset": "smoke", "seq_len": 128, "n_eval_used": 4, "batch_size": 1,
        "fixed": {"ppl": 259.5, "accuracy": 0.0236, "n_tokens": 508, "n_windows": 4}, "across_seeds": {"n_seeds": 1}}))
    html = read(write_report([run])[1])
    assert "Perplexity 259.5" in html and "Perturbation validation" not in html


def test_report_command_summary(run_copy):
    text = report_command([run_copy], latex=True)
    assert "report.html" in text and "report_tables.tex" in text
    assert re.search(r"zero k=3: \d/5 criteria pass", text)
