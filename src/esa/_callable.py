"""A capability package that is also its verb: `esa.prune(lm, ...)` although `esa.prune` is a package.

Importing `esa.prune` sets the attribute `esa.prune` to the package, which would shadow the function
of the same name in the public API; making the package callable keeps both spellings working.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def callable_package(name: str, fn: Callable[..., Any]) -> None:
    """Make the module `name` call `fn` when called."""

    class _CallablePackage(types.ModuleType):
        __doc__ = sys.modules[name].__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    sys.modules[name].__class__ = _CallablePackage
