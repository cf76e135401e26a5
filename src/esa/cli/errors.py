"""How the `esa` process ends: one line and exit 2 for what the user can fix, 130/143 for signals.

SIGTERM is turned into an exception (a KeyboardInterrupt, as SIGINT is), so `with RunDir(...)` and every
other context manager unwinds and removes its staging files before the process exits. Further signals
during that cleanup are ignored, so a second Ctrl-C cannot leave half-removed files behind (SIGKILL still
can; the next run into the same place removes what it left).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any, NoReturn

import typer

from esa.artifacts.rundir import WRITE_ERRNOS, write_error
from esa.errors import EsaError

EXIT_USAGE = 2
EXIT_SIGINT = 128 + signal.SIGINT  # 130, what shells report for Ctrl-C
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so cleanup runs as it does for Ctrl-C."""


_received: list[int] = []  # the signal that interrupted the command (typer turns Ctrl-C into a plain 130)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # first signal wins; cleanup must not be interrupted
        signal.signal(sig, signal.SIG_IGN)
    _received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _interrupted(code: int) -> NoReturn:
    name = "SIGTERM" if code == EXIT_SIGTERM else "SIGINT"
    print(f"esa: interrupted by {name}; the unfinished run was removed", file=sys.stderr, flush=True)
    sys.exit(code)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"esa: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def exit_code(exc: BaseException) -> int | None:
    """The exit status for an exception ending the CLI, or None when it is a bug (keeps its traceback)."""
    if isinstance(exc, typer.Abort) and isinstance(exc.__cause__, KeyboardInterrupt):
        exc = exc.__cause__
    if isinstance(exc, Terminated):
        return EXIT_SIGTERM
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGINT
    if isinstance(exc, (EsaError, typer.Abort)) or (isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS):
        return EXIT_USAGE
    return None


def run_cli(app: Any, args: list[str] | None = None) -> NoReturn:
    """Run the typer `app` (non-standalone, so ESA decides every exit) and exit with the right code."""
    _received.clear()
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        result = app(args=args, standalone_mode=False)
        if _received or result == EXIT_SIGINT:  # typer turns KeyboardInterrupt into a returned 130
            _interrupted(128 + _received[0] if _received else EXIT_SIGINT)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors (typer's click): its own short message
        if not hasattr(exc, "format_message"):
            raise
        ctx = getattr(exc, "ctx", None)
        where = f"`{ctx.command_path} --help`" if ctx is not None else "`esa --help`"
        print(f"esa: error: {exc.format_message().rstrip('.')}; see {where}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
    except SystemExit:
        raise
    except BaseException as exc:
        code = 128 + _received[0] if _received else exit_code(exc)
        if code is None:
            raise
        if code != EXIT_USAGE:
            _interrupted(code)
        if isinstance(exc, OSError):
            _fail(str(write_error(exc, exc.filename or "a file")))
        _fail(str(exc) if isinstance(exc, EsaError) else "aborted")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.exit(result if isinstance(result, int) else 0)
