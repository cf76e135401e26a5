"""The experiment manifest: what ran, on what, with which data, and how long each stage took."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import esa


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def esa_git_commit() -> str | None:
    """The commit of the ESA checkout this code runs from, when it runs from a git checkout."""
    src = Path(esa.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    import torch  # here, not at module level: `esa plot`/`esa report` should not pay for importing torch

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": _package_version("transformers"),
        "accelerate": _package_version("accelerate"),
        "gguf": _package_version("gguf"),
        "esa": esa.__version__,
        "esa_git_commit": esa_git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        env["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["cuda_version"] = torch.version.cuda
    return env


class Manifest:
    """Collects the facts of one command's run; `to_dict()` becomes experiment_manifest.json."""

    def __init__(self, command: str, argv: list[str] | None = None) -> None:
        self.command = command
        self.argv = list(argv if argv is not None else sys.argv)
        self.started = datetime.now(timezone.utc)
        self._t0 = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.facts: dict[str, Any] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; repeated stages (one per seed, say) add up."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t

    def timings_total(self) -> float:
        return time.perf_counter() - self._t0

    def add(self, **facts: Any) -> None:
        self.facts.update(facts)

    def to_dict(self) -> dict[str, Any]:
        total = self.timings_total()
        return {
            "command": self.command,
            "argv": self.argv,
            "started_at": self.started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "timings_s": {**{k: round(v, 4) for k, v in self.timings.items()}, "total": round(total, 4)},
            "environment": environment(),
            **self.facts,
        }
