"""A sweep grid: one `esa` command, fixed options, and axes expanded into cells, each a run directory.

A grid file (YAML) names a command, fixed `options`, `axes` (lists, crossed by default) and `zip:` groups
(lists of equal length, varied together), and the sweep's `out-dir`:

    command: run
    options: {topk: 100, max-samples: 16}
    axes: {model: [smollm2-135m, tiny-llama], metric: [grad_x_weight, magnitude]}
    zip: [{seeds: [1, 2], topk: [10, 20]}]   # optional
    out-dir: outputs/sweep
    threads: 1                               # optional: threads per cell (same on every executor)

Cells = product(axes) x product(zip groups); |cells| = prod(len(axis)) * prod(len(group)). Each cell's
run directory is `<out-dir>/<readable prefix>-<sha256 of the command and its sorted options, 10 hex>`,
so the same grid gives the same directories on every executor and a changed option gives a new one.
Status is read from disk only: done = the directory holds experiment_manifest.json (written last by
`esa.artifacts.RunDir`, so nothing partial looks finished), failed = `<cell dir>.failed.json` holds the
one-line error, pending = neither. Pure except `load_grid` (reads the file) and `cell_status` (stats).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esa.artifacts.schema import MANIFEST
from esa.errors import EsaError

FAILED_SUFFIX = ".failed.json"
RESERVED = frozenset({"out-dir", "overwrite"})  # the sweep owns each cell's output directory
_KEYS = {"command", "options", "axes", "zip", "out-dir", "threads"}


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its options (fixed + axis values), its run directory and its argv."""

    name: str
    options: dict[str, Any]
    axes: dict[str, Any]
    run_dir: Path
    argv: tuple[str, ...]

    @property
    def failed_file(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + FAILED_SUFFIX)


@dataclass(frozen=True)
class Grid:
    """A parsed grid: the command (e.g. "run" or "study scaling"), its options and its expansion."""

    command: str
    options: dict[str, Any]
    axes: dict[str, list[Any]]
    zips: list[dict[str, list[Any]]]
    out_dir: Path
    threads: int | None = None
    cells: list[Cell] = field(default_factory=list)

    @property
    def axis_names(self) -> list[str]:
        return [*self.axes, *(k for z in self.zips for k in z)]


def _key(name: Any) -> str:
    return str(name).strip().lstrip("-").replace("_", "-")


def _flag_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_flag_value(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def option_args(options: Mapping[str, Any]) -> list[str]:
    """CLI arguments for `options`: `--key value`; true booleans are bare flags, false ones are left out."""
    args: list[str] = []
    for key in sorted(options):
        value = options[key]
        if value is True:
            args.append(f"--{key}")
        elif value is not False and value is not None:
            args += [f"--{key}", _flag_value(value)]
    return args


def cell_hash(command: str, options: Mapping[str, Any]) -> str:
    blob = json.dumps({"command": command, "options": {k: options[k] for k in sorted(options)}},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _prefix(values: Iterable[Any]) -> str:
    text = "-".join(re.sub(r"[^A-Za-z0-9.-]+", "_", _flag_value(v)).strip("_") for v in values)
    return text[:60].strip("-_") or "cell"


def parse_grid(spec: Mapping[str, Any], flags: Mapping[str, set[str]] | None = None,
               base: Path | None = None) -> Grid:
    """Validate `spec` and expand it into cells.

    `flags` maps a command to the long option names its CLI accepts (e.g. {"run": {"--metric", ...}});
    an option or axis outside them is refused. A relative out-dir is taken from `base` (else the cwd).
    """
    if not isinstance(spec, Mapping):
        raise EsaError("a grid file must be a YAML mapping with command, options, axes and out-dir")
    unknown = set(spec) - _KEYS
    if unknown:
        raise EsaError(f"unknown grid key(s) {sorted(unknown)}; a grid has {sorted(_KEYS)}")
    command = " ".join(str(spec.get("command") or "").split())
    if not command:
        raise EsaError("the grid names no command; add e.g. `command: run`")
    if spec.get("out-dir") in (None, ""):
        raise EsaError("the grid names no out-dir; add e.g. `out-dir: outputs/sweep`")
    options = {_key(k): v for k, v in _mapping(spec.get("options"), "options").items()}
    axes = {_key(k): _axis(k, v) for k, v in _mapping(spec.get("axes"), "axes").items()}
    zips_raw = spec.get("zip") or []
    if isinstance(zips_raw, Mapping):
        zips_raw = [zips_raw]
    if not isinstance(zips_raw, list):
        raise EsaError("`zip:` must be a mapping of equal-length lists (or a list of such mappings)")
    zips = []
    for group in zips_raw:
        z = {_key(k): _axis(k, v) for k, v in _mapping(group, "zip").items()}
        lengths = {len(v) for v in z.values()}
        if len(lengths) > 1:
            raise EsaError(f"the zip group {sorted(z)} has lists of different lengths {sorted(lengths)}; give them equal lengths")
        zips.append(z)
    varied = [*axes, *(k for z in zips for k in z)]
    dup = sorted({k for k in varied if varied.count(k) > 1} | (set(varied) & set(options)))
    if dup:
        raise EsaError(f"option(s) {dup} are given more than once (options, axes, zip); give each once")
    reserved = sorted((set(options) | set(varied)) & RESERVED)
    if reserved:
        raise EsaError(f"{reserved} cannot be set in a grid: the sweep writes each cell to its own run directory")
    if flags is not None:
        if command not in flags:
            raise EsaError(f"unknown command {command!r} in the grid; use one of {sorted(flags)}")
        bad = sorted(k for k in [*options, *varied] if f"--{k}" not in flags[command])
        if bad:
            raise EsaError(f"{bad} are not options of `esa {command}`; see `esa {command} --help`")
    threads = spec.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise EsaError(f"threads must be a positive integer, not {threads!r}")
    out_dir = Path(str(spec["out-dir"])).expanduser()
    if not out_dir.is_absolute():
        out_dir = (base or Path.cwd()) / out_dir
    grid = Grid(command=command, options=options, axes=axes, zips=zips, out_dir=out_dir, threads=threads)
    cells = expand(grid, quiet=flags is None or "--quiet" in flags.get(command, set()))
    if not cells:
        raise EsaError("the grid expands to zero cells; give every axis at least one value")
    return Grid(**{**grid.__dict__, "cells": cells})


def expand(grid: Grid, quiet: bool = True) -> list[Cell]:
    """Every cell of `grid`, in a fixed order (axes in file order, last axis fastest)."""
    axis_lists = [[dict(zip(grid.axes, combo)) for combo in itertools.product(*grid.axes.values())]]
    axis_lists += [[dict(zip(z, row)) for row in zip(*z.values())] for z in grid.zips]
    cells = []
    for parts in itertools.product(*axis_lists):
        varied = {k: v for part in parts for k, v in part.items()}
        options = {**grid.options, **varied}
        name = f"{_prefix(varied.values())}-{cell_hash(grid.command, options)}"
        run_dir = grid.out_dir / name
        argv = (*grid.command.split(), *option_args(options), "--out-dir", str(run_dir), *(["--quiet"] if quiet else []))
        cells.append(Cell(name=name, options=options, axes=varied, run_dir=run_dir, argv=argv))
    return cells


def load_grid(path: Path | str, flags: Mapping[str, set[str]] | None = None) -> Grid:
    """Read and expand a grid YAML; a relative out-dir is relative to the current directory."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise EsaError(f"grid file {path} does not exist; pass a YAML grid (see grids/)")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EsaError(f"grid file {path} is not valid YAML ({first})") from None
    return parse_grid(spec, flags)


def cell_status(cell: Cell) -> str:
    """done (a finished run), failed (a recorded error and no finished run) or pending."""
    if (cell.run_dir / MANIFEST).is_file():
        return "done"
    if cell.failed_file.is_file():
        return "failed"
    return "pending"


def failure_message(cell: Cell) -> str | None:
    try:
        return json.loads(cell.failed_file.read_text()).get("error")
    except (OSError, ValueError):
        return None


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EsaError(f"`{what}:` must be a mapping of option names to values")
    return dict(value)


def _axis(name: Any, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise EsaError(f"axis {name!r} must be a list of values, e.g. [{values!r}]")
    if not values:
        raise EsaError(f"axis {name!r} is empty; give it at least one value or remove it")
    return values
