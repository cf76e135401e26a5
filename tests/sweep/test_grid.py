"""Grid parsing and expansion: crossing, zip, hashed run directories, one-line refusals, status on disk."""

from __future__ import annotations

import json

import pytest

from esa.errors import EsaError
from esa.sweep import cell_status, parse_grid
from esa.sweep.grid import option_args

FLAGS = {"run": {"--model", "--metric", "--seeds", "--topk", "--max-samples", "--quiet", "--out-dir", "--stability-check"}}


def spec(**kw):
    return {"command": "run", "options": {"topk": 10}, "axes": {"model": ["a", "b"], "metric": ["m1", "m2", "m3"]},
            "out-dir": "/tmp/sweep-x", **kw}


def test_axes_are_crossed_in_file_order_with_the_last_fastest() -> None:
    grid = parse_grid(spec(), FLAGS)
    assert [(c.axes["model"], c.axes["metric"]) for c in grid.cells] == [
        (m, k) for m in ["a", "b"] for k in ["m1", "m2", "m3"]]
    assert all(c.options["topk"] == 10 for c in grid.cells)


def test_zip_pairs_values_and_multiplies_with_the_axes() -> None:
    grid = parse_grid(spec(zip={"seeds": [1, 2], "max_samples": [4, 8]}), FLAGS)
    assert len(grid.cells) == 12
    assert {(c.options["seeds"], c.options["max-samples"]) for c in grid.cells} == {(1, 4), (2, 8)}


def test_run_dir_is_a_readable_prefix_and_a_hash_of_the_resolved_options() -> None:
    a = parse_grid(spec(), FLAGS).cells[0]
    again = parse_grid(spec(), FLAGS).cells[0]
    changed = parse_grid(spec(options={"topk": 11}), FLAGS).cells[0]
    assert a.run_dir == again.run_dir and a.run_dir.parent.as_posix() == "/tmp/sweep-x"
    assert a.name.startswith("a-m1-") and len(a.name.rsplit("-", 1)[1]) == 10
    assert changed.name != a.name and changed.name.startswith("a-m1-")
    moved = parse_grid(spec(**{"out-dir": "/tmp/elsewhere"}), FLAGS).cells[0]
    assert moved.name == a.name  # the name depends on the options, not on where the sweep lives


def test_argv_is_the_cli_call_of_the_cell() -> None:
    cell = parse_grid(spec(options={"topk": [1, 10], "stability-check": True}), FLAGS).cells[0]
    assert cell.argv == ("run", "--metric", "m1", "--model", "a", "--stability-check", "--topk", "1,10",
                         "--out-dir", str(cell.run_dir), "--quiet")
    assert option_args({"flag": False, "x": None}) == []


@pytest.mark.parametrize("bad, words", [
    (spec(axes={"modle": ["a"]}), "not options of `esa run`"),
    (spec(options={"nope": 1}), "not options of `esa run`"),
    (spec(axes={"model": []}), "is empty"),
    (spec(axes={"model": "a"}), "must be a list"),
    (spec(zip=[{}]), "zero cells"),
    (spec(zip={"seeds": [1, 2], "topk": [1]}), "different lengths"),
    (spec(options={"out-dir": "x"}), "cannot be set"),
    (spec(axes={"topk": [1, 2]}), "more than once"),
    (spec(command="nosuch"), "unknown command"),
    ({"command": "run", "axes": {"model": ["a"]}}, "no out-dir"),
    (spec(threads=0), "threads must be"),
])
def test_bad_grids_are_refused_in_one_line(bad, words) -> None:
    with pytest.raises(EsaError) as info:
        parse_grid(bad, FLAGS)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_status_reads_the_manifest_and_the_failure_sidecar(tmp_path) -> None:
    cells = parse_grid(spec(**{"out-dir": str(tmp_path)}), FLAGS).cells
    done, failed, partial = cells[0], cells[1], cells[2]
    done.run_dir.mkdir()
    (done.run_dir / "experiment_manifest.json").write_text("{}")
    failed.failed_file.write_text(json.dumps({"error": "esa: error: boom"}))
    partial.run_dir.mkdir()
    (partial.run_dir / "top_weights.csv").write_text("x")  # files without the manifest are not a finished run
    assert [cell_status(c) for c in cells[:4]] == ["done", "failed", "pending", "pending"]
