"""`esa`: a thin command line over the library API (every command is one library call).

Commands live one group per module; adding one is a module and one line in COMMAND_MODULES
(see docs/ADDING_A_COMMAND.md).
"""

from __future__ import annotations

import importlib

from esa.cli.app import app
from esa.cli.errors import run_cli

COMMAND_MODULES = [
    "esa.cli.core",
    "esa.cli.prune",
    "esa.cli.study",
    "esa.cli.interpret",
    "esa.cli.quantize",
    "esa.cli.finetune",
    "esa.cli.security",
    "esa.cli.sweep",
]

for _module in COMMAND_MODULES:
    importlib.import_module(_module)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2 (signals: 130/143)."""
    run_cli(app)


if __name__ == "__main__":
    main()
