"""Running a grid's cells on an engine people already run: a local process pool, SLURM (submitit), Ray.

Every executor runs the same thing for a cell: the `esa` CLI in a fresh Python process
(`python -m esa.cli.main <command> <options> --out-dir <cell dir>`), with OMP/MKL threads fixed, so each
cell has the exact CLI semantics and writes the same bytes wherever it runs. The cell's own RunDir makes
its directory complete or absent; a failure leaves `<cell dir>.failed.json` with the error's one line.
No scheduler of our own: the executor only fans cells out and waits.

Cores: local uses `workers` concurrent cells x `threads` threads each (default threads = cores // workers);
submitit and Ray ask their scheduler for `threads` CPUs per cell.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esa.artifacts.io import atomic_write_json
from esa.errors import EsaError
from esa.sweep.grid import Cell, cell_status

EXECUTORS = ("local", "submitit", "ray")
_EXTRAS = {"submitit": ("submitit", "slurm"), "ray": ("ray", "ray")}
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class CellOutcome:
    name: str
    status: str  # done | failed
    seconds: float
    error: str | None = None


@dataclass
class SweepResult:
    """What one `run_cells` did: cells run now, and those skipped because they were already done (or failed)."""

    ran: list[CellOutcome]
    skipped_done: list[str]
    skipped_failed: list[str]

    @property
    def n_failed(self) -> int:
        return sum(o.status == "failed" for o in self.ran)

    def to_dict(self) -> dict[str, Any]:
        return {"ran": [o.__dict__ for o in self.ran], "skipped_done": self.skipped_done,
                "skipped_failed": self.skipped_failed}


def require_executor(name: str) -> None:
    """Refuse an unknown executor or one whose package is missing, before anything runs."""
    if name not in EXECUTORS:
        raise EsaError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
    if name in _EXTRAS:
        module, extra = _EXTRAS[name]
        if importlib.util.find_spec(module) is None:
            raise EsaError(f"the {name} executor needs the {module} package; pip install esa-llm[{extra}]")


def cell_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({var: str(threads) for var in _THREAD_VARS})
    return env


def run_cell(argv: Sequence[str], run_dir: str, threads: int) -> CellOutcome:
    """Run one cell's `esa` command in a subprocess; record a failure next to its run directory.

    Module-level and argument-only so submitit and Ray can pickle it.
    """
    run_path = Path(run_dir)
    failed = run_path.with_name(run_path.name + ".failed.json")
    failed.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "esa.cli.main", *argv], env=cell_env(threads),
                          capture_output=True, text=True)
    seconds = round(time.perf_counter() - start, 3)
    if proc.returncode == 0 and (run_path / "experiment_manifest.json").is_file():
        return CellOutcome(run_path.name, "done", seconds)
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    error = next((ln for ln in reversed(lines) if ln.startswith("esa: error:")), lines[-1] if lines else "")
    error = error or f"exit status {proc.returncode} and no output"
    _record_failure(failed, error, proc.returncode, argv)
    return CellOutcome(run_path.name, "failed", seconds, error)


def run_cells(cells: Sequence[Cell], *, executor: str = "local", workers: int | None = None,
              threads: int | None = None, retry_failed: bool = False, address: str | None = None,
              cluster: str | None = None, folder: Path | None = None,
              slurm: dict[str, Any] | None = None) -> SweepResult:
    """Run every pending cell (and failed ones with `retry_failed`); done cells are never touched.

    `address`: a Ray cluster address (None starts a local Ray). `cluster`: submitit's cluster ("slurm",
    "local", "debug"; None = auto). `folder`: where submitit keeps its logs. `slurm`: extra
    submitit parameters (e.g. {"slurm_partition": "gpu", "timeout_min": 120}).
    """
    require_executor(executor)
    cores = os.cpu_count() or 1
    workers = max(1, workers or (cores if threads is None else max(1, cores // threads)))
    threads = max(1, threads or cores // workers)
    status = {c.name: cell_status(c) for c in cells}
    todo = [c for c in cells if status[c.name] == "pending" or (retry_failed and status[c.name] == "failed")]
    result = SweepResult(ran=[], skipped_done=[c.name for c in cells if status[c.name] == "done"],
                         skipped_failed=[c.name for c in cells if status[c.name] == "failed" and not retry_failed])
    if todo:
        todo[0].run_dir.parent.mkdir(parents=True, exist_ok=True)
        runner: Callable[..., list[CellOutcome]] = {"local": _local, "submitit": _submitit, "ray": _ray}[executor]
        result.ran = runner(todo, workers=workers, threads=threads, address=address, cluster=cluster,
                            folder=folder or todo[0].run_dir.parent / ".submitit", slurm=slurm or {})
    return result


def _local(cells: Sequence[Cell], *, workers: int, threads: int, **_: Any) -> list[CellOutcome]:
    """`workers` cells at once; each is its own process (the pool's threads only wait on them)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda c: run_cell(c.argv, str(c.run_dir), threads), cells))


def _submitit(cells: Sequence[Cell], *, threads: int, cluster: str | None, folder: Path,
              slurm: dict[str, Any], workers: int, **_: Any) -> list[CellOutcome]:
    """One job per cell (a SLURM job array), `threads` CPUs each, at most `workers` at once."""
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"cpus_per_task": threads, "timeout_min": 60, "slurm_array_parallelism": workers}
    params.update(slurm)
    ex.update_parameters(**params)  # slurm_* parameters are ignored off SLURM
    # SLURM throttles the array itself; submitit's local executor starts every job at once, so feed it in waves
    wave = len(cells) if ex.cluster == "slurm" else workers
    outcomes = []
    for start in range(0, len(cells), wave):
        outcomes += _submitit_wave(ex, cells[start:start + wave], threads)
    return outcomes


def _submitit_wave(ex: Any, cells: Sequence[Cell], threads: int) -> list[CellOutcome]:
    jobs = ex.map_array(run_cell, [c.argv for c in cells], [str(c.run_dir) for c in cells], [threads] * len(cells))
    outcomes = []
    for cell, job in zip(cells, jobs):
        try:
            outcomes.append(job.result())
        except Exception as exc:  # the job itself died (preempted, timed out): record it as the cell's failure
            error = f"{ex.cluster} job {job.job_id} failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
            _record_failure(cell.failed_file, error, None, cell.argv)
            outcomes.append(CellOutcome(cell.name, "failed", 0.0, error))
    return outcomes


def _ray(cells: Sequence[Cell], *, threads: int, address: str | None, **_: Any) -> list[CellOutcome]:
    """One Ray task per cell with `threads` CPUs; `address` joins a running cluster, None starts a local one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=threads)(run_cell)
    return list(ray.get([task.remote(c.argv, str(c.run_dir), threads) for c in cells]))


def _record_failure(path: Path, error: str, returncode: int | None, argv: Sequence[str]) -> None:
    atomic_write_json(path, {"error": error, "returncode": returncode, "argv": list(argv)})
