"""Run directories: atomic writes, configs and manifests."""

from esa.artifacts.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, write_table
from esa.artifacts.manifest import Manifest
from esa.artifacts.rundir import RunDir, is_run_dir

__all__ = [
    "Manifest",
    "RunDir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "is_run_dir",
    "read_json",
    "write_table",
]
