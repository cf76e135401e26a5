#!/usr/bin/env python3
"""Compatibility shim: `python esa_runner.py --model ... --metric ...` runs `esa run` with the same flags,
so the command lines of the original research workflow keep working (installed or straight from a clone)."""

import sys
from pathlib import Path

try:
    from esa.cli.main import main
except ModuleNotFoundError:  # a clone without `pip install -e .`: use its src/ directly
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from esa.cli.main import main

if __name__ == "__main__":
    sys.argv = ["esa", "run", *sys.argv[1:]]
    main()
