"""How the `esa` process ends: one line and exit 2 for what the user can fix, 130/143 for signals.

SIGTERM is turned into an exception (a KeyboardInterrupt, as SIGINT is), so `with RunDir(...)` and every
other context manager unwinds and removes its staging files before the process exits. Further signals
during that cleanup are ignored, so a second Ctrl-C cannot leave half-removed files behind (SIGKILL still
can; the next run into the same place removes what it left).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any, NoReturn

import click

from esa.artifacts.rundir import WRITE_ERRNOS, write_error
from esa.errors import EsaError

EXIT_USAGE = 2
EXIT_SIGINT = 128 + signal.SIGINT  # 130, what shells report for Ctrl-C
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so cleanup runs as it does for Ctrl-C."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # first signal wins; cleanup must not be interrupted
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"esa: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def exit_code(exc: BaseException) -> int | None:
    """The exit status for an exception ending the CLI, or None when it is a bug (keeps its traceback)."""
    if isinstance(exc, click.exceptions.Abort) and isinstance(exc.__cause__, KeyboardInterrupt):
        exc = exc.__cause__  # click wraps Ctrl-C (and our SIGTERM) in Abort
    if isinstance(exc, Terminated):
        return EXIT_SIGTERM
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGINT
    if isinstance(exc, (EsaError, click.exceptions.Abort)) or (isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS):
        return EXIT_USAGE
    return None


def run_cli(app: Any, args: list[str] | None = None) -> NoReturn:
    """Run the typer `app` (non-standalone, so ESA decides every exit) and exit with the right code."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = app(args=args, standalone_mode=False)
    except click.exceptions.ClickException as exc:  # usage errors: click's own one-line message
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BaseException as exc:
        code = exit_code(exc)
        if code is None:
            raise
        if code == EXIT_USAGE:
            if isinstance(exc, OSError):
                _fail(str(write_error(exc, exc.filename or "a file")))
            _fail(str(exc) if isinstance(exc, EsaError) else "aborted")
        name = "SIGTERM" if code == EXIT_SIGTERM else "SIGINT"
        print(f"esa: interrupted by {name}; the unfinished run was removed", file=sys.stderr, flush=True)
        sys.exit(code)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.exit(result if isinstance(result, int) else 0)
