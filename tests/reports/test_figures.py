"""Figures of a run directory: drawn by `esa run --save-plots`, redrawn only when the run's files change."""

from __future__ import annotations

import json
import os

import pytest

from esa.errors import EsaError
from esa.pipeline.plotting import plot_run_dir
from esa.reports.figures import current_figures
from esa.reports.rundata import load_run


def test_save_plots_drew_every_applicable_figure(tiny_run):
    names = sorted(p.name for p in (tiny_run / "plots").iterdir())
    expected = ["layer_heatmap", "layer_shares", "perturbation", "rank_score", "score_histogram", "stability"]
    assert names == sorted([f"{n}.{ext}" for n in expected for ext in ("pdf", "png")] + ["figures.json"])


def test_figures_are_reused_until_an_input_changes(run_copy):
    stamp = {p.name: p.stat().st_mtime_ns for p in (run_copy / "plots").glob("*.png")}
    run = load_run(run_copy)
    assert [f.name for f in current_figures(run)]
    assert {p.name: p.stat().st_mtime_ns for p in (run_copy / "plots").glob("*.png")} == stamp
    stats = run_copy / "sensitivity_stats.json"
    data = json.loads(stats.read_text())
    stats.write_text(json.dumps(data))  # rewritten: new size or mtime
    os.utime(stats, ns=(0, 1))
    current_figures(load_run(run_copy))
    assert all(p.stat().st_mtime_ns != stamp[p.name] for p in (run_copy / "plots").glob("*.png"))


def test_plot_run_dir_returns_the_files_it_wrote(run_copy):
    paths = plot_run_dir(run_copy)
    assert len(paths) == 12 and all(p.is_file() and p.parent == run_copy / "plots" for p in paths)


def test_plot_run_dir_without_manifest_needs_the_model_summary(run_copy):
    (run_copy / "experiment_manifest.json").unlink()
    with pytest.raises(EsaError, match="not an ESA run directory"):
        plot_run_dir(run_copy)
    assert len(plot_run_dir(run_copy, lm_summary={"model_id": "tiny-llama"})) == 12


def test_plot_run_dir_on_a_file_or_missing_dir(tmp_path):
    with pytest.raises(EsaError, match="is not a directory"):
        plot_run_dir(tmp_path / "missing")


def test_plot_command_names_the_figures(run_copy, tmp_path):
    from esa.pipeline.plotting import plot_command

    text = plot_command(run_copy)
    assert "6 figures (PNG + PDF)" in text and "perturbation" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "experiment_manifest.json").write_text("{}")
    assert "none apply" in plot_command(empty)
