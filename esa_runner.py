#!/usr/bin/env python3
"""Compatibility shim: `python esa_runner.py --model ... --metric ...` runs `esa run` with the same flags,
so the command lines of the original research workflow keep working."""

import sys

from esa.cli.main import main

if __name__ == "__main__":
    sys.argv = ["esa", "run", *sys.argv[1:]]
    main()
