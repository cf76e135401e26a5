"""User-facing errors.

Anything the user can fix (a bad flag, a missing file, a model that does not fit) raises
:class:`EsaError`; the CLI prints its message as one line on stderr and exits with code 2.
Everything else is a bug and keeps its traceback.
"""


class EsaError(Exception):
    """A problem with the user's input or environment, explained in one line."""
