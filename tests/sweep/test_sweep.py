"""`esa sweep` end to end on tiny models: executors agree byte for byte, resume, failures, collect, refusals.

Every cell is a real `esa run` subprocess (2 calibration windows of 16 tokens), so the same fixture grid
is shared by the tests: 2 models x 2 metrics x 2 seeds = 8 cells per executor. submitit and ray are
optional extras of the package but dependencies of the tests (the `test` extra), so neither is skipped.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from esa.cli.sweep import command_flags
from esa.pipeline.sweep import open_grid
from esa.sweep import cell_status, run_cells

RESULT_FILES = ("top_weights.csv", "sensitivity_stats.json")
OPTIONS = {"max-samples": 2, "seq-len": 16, "eval-samples": 2, "topk": 10, "batch-size": 2}
AXES = {"model": ["tiny-llama", "tiny-gptneox"], "metric": ["magnitude", "grad_x_weight"], "seeds": [1, 2]}


def write_grid(path: Path, out_dir: Path, **kw) -> Path:
    path.write_text(yaml.safe_dump({"command": "run", "options": OPTIONS, "axes": AXES, "out-dir": str(out_dir),
                                    "threads": 1, **kw}))
    return path


@pytest.fixture(scope="module")
def flags():
    return command_flags()


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, flags):
    root = tmp_path_factory.mktemp("sweep")
    grid = open_grid(write_grid(root / "grid.yaml", root / "local"), flags)
    result = run_cells(grid.cells, executor="local", workers=2, threads=1)
    assert result.n_failed == 0, [o.error for o in result.ran]
    return root, grid


def test_local_sweep_runs_every_cell(local_sweep) -> None:
    _, grid = local_sweep
    assert len(grid.cells) == 8 and all(cell_status(c) == "done" for c in grid.cells)
    for cell in grid.cells:
        config = json.loads((cell.run_dir / "config.json").read_text())
        assert config["metric"] == cell.options["metric"] and config["data"]["seeds"] == [cell.options["seeds"]]


def test_submitit_gives_the_same_directories_and_bytes(local_sweep, flags) -> None:
    root, local = local_sweep
    grid = open_grid(write_grid(root / "grid_submitit.yaml", root / "submitit"), flags)
    result = run_cells(grid.cells, executor="submitit", cluster="local", workers=2, threads=1)
    assert result.n_failed == 0, [o.error for o in result.ran]
    assert [c.name for c in grid.cells] == [c.name for c in local.cells]
    for a, b in zip(local.cells, grid.cells):
        for name in RESULT_FILES:
            assert (a.run_dir / name).read_bytes() == (b.run_dir / name).read_bytes(), (a.name, name)


def test_ray_gives_the_same_bytes(local_sweep, flags) -> None:
    root, local = local_sweep
    grid = open_grid(write_grid(root / "grid_ray.yaml", root / "ray"), flags)
    result = run_cells(grid.cells, executor="ray", workers=2, threads=1)
    assert result.n_failed == 0, [o.error for o in result.ran]
    for a, b in zip(local.cells, grid.cells):
        for name in RESULT_FILES:
            assert (a.run_dir / name).read_bytes() == (b.run_dir / name).read_bytes(), (a.name, name)


def test_rerun_after_a_kill_finishes_only_the_missing_cell(local_sweep, esa) -> None:
    import shutil

    root, grid = local_sweep
    lost, kept = grid.cells[3], [c for i, c in enumerate(grid.cells) if i != 3]
    shutil.rmtree(lost.run_dir)
    (lost.run_dir.parent / f".{lost.run_dir.name}.esa-tmp-999999").mkdir()  # a killed run's staging directory
    before = {c.name: (c.run_dir / "experiment_manifest.json").stat().st_mtime_ns for c in kept}
    status = esa("sweep", "status", root / "grid.yaml")
    assert status.code == 0 and "7 done, 0 failed, 1 pending" in status.out
    result = esa("sweep", "run", root / "grid.yaml", "--workers", "1")
    assert result.code == 0, result.err
    assert f"done   {lost.name}" in result.out and "1 run, 7 already done" in result.out
    assert cell_status(lost) == "done"
    assert before == {c.name: (c.run_dir / "experiment_manifest.json").stat().st_mtime_ns for c in kept}


def test_collect_gives_one_row_per_cell(local_sweep, esa) -> None:
    root, grid = local_sweep
    result = esa("sweep", "collect", root / "grid.yaml")
    assert result.code == 0, result.err
    table = pd.read_parquet(grid.out_dir / "sweep_results.parquet")
    assert len(table) == 8 and table["cell"].tolist() == [c.name for c in grid.cells]
    assert pd.read_csv(grid.out_dir / "sweep_results.csv")["cell"].tolist() == table["cell"].tolist()
    stats = json.loads((grid.cells[0].run_dir / "sensitivity_stats.json").read_text())
    assert table.loc[0, "global.gini"] == pytest.approx(stats["global"]["gini"])
    assert set(table["axis.metric"]) == {"magnitude", "grad_x_weight"}


def test_a_failed_cell_is_recorded_skipped_and_retried_on_request(tmp_path, esa) -> None:
    grid = write_grid(tmp_path / "grid.yaml", tmp_path / "out", axes={"model": ["tiny-llama"], "metric": ["no_such_metric"]})
    first = esa("sweep", "run", grid)
    assert first.code == 2 and "1 cells failed" in first.err and len(first.err.strip().splitlines()) == 1
    assert "\nfailed " in "\n" + first.out and "no_such_metric" in first.out
    status = esa("sweep", "status", grid)
    assert "failed" in status.out and "no_such_metric" in status.out and "0 done, 1 failed" in status.out
    again = esa("sweep", "run", grid)
    assert again.code == 2 and not again.out.startswith("failed ")  # not retried without --retry-failed
    retried = esa("sweep", "run", grid, "--retry-failed")
    assert retried.code == 2 and retried.out.startswith("failed ") and "1 failed (local)" in retried.out
    assert not any(p.is_dir() for p in (tmp_path / "out").iterdir())


@pytest.mark.parametrize("change, words", [
    ({"axes": {"modell": ["tiny-llama"]}}, "not options of `esa run`"),
    ({"axes": {"model": []}}, "is empty"),
    ({"zip": [{}]}, "zero cells"),
])
def test_bad_grids_exit_2_in_one_line_and_run_nothing(tmp_path, esa, change, words) -> None:
    grid = write_grid(tmp_path / "grid.yaml", tmp_path / "out", **change)
    for sub in ("run", "plan", "status"):
        result = esa("sweep", sub, grid)
        assert result.code == 2 and words in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "out").exists()


def test_an_executor_that_is_not_installed_is_refused(tmp_path, esa, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("ray", "submitit") else real(name, *a))
    grid = write_grid(tmp_path / "grid.yaml", tmp_path / "out")
    for executor, extra in (("ray", "esa-llm[ray]"), ("submitit", "esa-llm[slurm]")):
        result = esa("sweep", "run", grid, "--executor", executor)
        assert result.code == 2 and extra in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_plan_lists_every_cell_with_an_estimate(tmp_path, esa) -> None:
    result = esa("sweep", "plan", write_grid(tmp_path / "grid.yaml", tmp_path / "out"))
    assert result.code == 0, result.err
    lines = [ln for ln in result.out.splitlines() if ln.startswith("pending")]
    assert len(lines) == 8 and all("GiB" in ln for ln in lines)
    assert not (tmp_path / "out").exists()


def test_shipped_grids_are_valid(flags) -> None:
    root = Path(__file__).resolve().parents[2] / "grids"
    sizes = {p.stem: len(open_grid(p, flags).cells) for p in sorted(root.glob("*.yaml"))}
    assert sizes == {"phase2-core": 4, "phase3-core": 3}
