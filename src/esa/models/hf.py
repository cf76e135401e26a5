"""Plumbing shared by every transformers `from_pretrained` call ESA makes."""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
from functools import lru_cache
from urllib.parse import urlparse
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import transformers

from esa.errors import EsaError


@dataclass(frozen=True)
class HfOptions:
    """What the user asked for, in the form `from_pretrained` takes it."""

    dtype: torch.dtype
    device_map: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    progress: bool = False

    def model_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dtype": self.dtype, "trust_remote_code": self.trust_remote_code}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        if self.attn_implementation is not None:
            kwargs["attn_implementation"] = self.attn_implementation
        return kwargs


@contextlib.contextmanager
def hf_errors(spec: str, not_found: EsaError | None = None) -> Iterator[None]:
    """Translate transformers' failures the user can act on into one-line EsaErrors.

    `not_found` replaces OSError (missing files, unreachable hub); by default it is reported as unreadable.
    """
    try:
        yield
    except OSError as exc:
        raise (not_found or EsaError(f"cannot read {spec}: {_first_line(exc)}")) from exc
    except ImportError as exc:
        raise EsaError(f"loading {spec} needs a missing package: {_first_line(exc)}") from exc
    except pickle.UnpicklingError as exc:
        raise EsaError(f"{spec} holds a pickle checkpoint torch refuses to load safely; convert it to safetensors "
                       "from a trusted copy") from exc
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise EsaError(f"{spec} needs Python code shipped with the model; pass --trust-remote-code only if you "
                           "trust its authors, since that code runs with your permissions") from exc
        if "gguf" in str(exc).lower():
            raise EsaError(f"cannot read {spec}: {_first_line(exc)}") from exc
        raise
    except Exception as exc:  # safetensors' Rust errors and transformers' size-mismatch RuntimeError
        if type(exc).__name__ == "SafetensorError" or "size mismatch" in str(exc) or "ignore_mismatched_sizes" in str(exc):
            raise EsaError(f"cannot read the weights of {spec} ({_first_line(exc)}); re-download or re-save the model") from exc
        raise


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub's host accepts a TCP connection (once per process; HF_HUB_OFFLINE=1 means no)."""
    import huggingface_hub.constants as hub

    if hub.HF_HUB_OFFLINE:
        return False
    url = urlparse(hub.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def go_offline_unless_reachable() -> bool:
    """Switch the hub client to offline mode when no network reaches it: one fast failure, no retry storm.

    Returns whether the hub is reachable. Local cache hits still work offline.
    """
    import huggingface_hub.constants as hub

    if hub_reachable():
        return True
    hub.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"  # for libraries that read the environment themselves
    return False


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Show transformers' download/conversion bars only when asked (keeps logs and CI clean).

    The GGUF converter uses a plain tqdm that ignores transformers' switch; tqdm picks `sys.stderr` when a
    bar is created, so pointing stderr elsewhere for the duration hides that bar too.
    """
    hf_logging = transformers.utils.logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        with contextlib.ExitStack() as stack:
            if not enabled:
                stack.enter_context(contextlib.redirect_stderr(stack.enter_context(open(os.devnull, "w"))))
            yield
    finally:
        (hf_logging.enable_progress_bar if was_enabled else hf_logging.disable_progress_bar)()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
