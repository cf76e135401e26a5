"""One look for every ESA figure: readable in greyscale, safe for colour-blind readers, fast to save.

Figures are `matplotlib.figure.Figure` objects made without pyplot, so no global figure state
builds up and no interactive backend is ever touched: PNG goes through Agg, PDF through its own
writer. Every series is told apart by colour AND a second cue (marker, line style or hatch).
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from esa.artifacts import atomic_write_bytes

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
GREY = "#7F7F7F"
SEQUENTIAL = "cividis"  # luminance rises monotonically: heatmaps survive greyscale printing

# The three perturbation sets: target stands out (dark, solid, filled); controls recede.
SET_STYLE: dict[str, dict[str, Any]] = {
    "target": {"color": "#D55E00", "marker": "o", "linestyle": "-", "label": "target (top-k)"},
    "random_k": {"color": "#0072B2", "marker": "s", "linestyle": "--", "label": "random-k control"},
    "bottom_k": {"color": "#009E73", "marker": "^", "linestyle": ":", "label": "bottom-k control"},
}

# Components in esa.models.types.COMPONENTS order; unknown ones get black or white with a hatch.
_COMPONENT_LOOK = {
    "embedding": ("#E69F00", ".."),
    "attention": ("#0072B2", "//"),
    "mlp": ("#009E73", "\\\\"),
    "norm": ("#F0E442", "xx"),
    "lm_head": ("#CC79A7", "--"),
    "router": ("#56B4E9", "++"),
    "expert": ("#D55E00", "oo"),
    "other": (GREY, ""),
    "all components": ("#BBBBBB", ""),
}
_HATCHES = ("", "//", "\\\\", "..", "xx", "--", "++", "oo", "**")
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

DPI = 150
RC: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "hatch.linewidth": 0.6,
    "hatch.color": "#333333",
    "image.cmap": SEQUENTIAL,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable and searchable in papers
    "svg.fonttype": "none",
    "svg.hashsalt": "esa",  # fixed element ids: same figure, same SVG bytes
}

F = TypeVar("F", bound=Callable[..., Any])


def styled(fn: F) -> F:
    """Draw under ESA's rc settings, whatever the caller's matplotlib defaults are."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def component_look(components: Iterable[str]) -> dict[str, tuple[str, str]]:
    """(colour, hatch) per component; components outside the known list get distinct leftovers."""
    out: dict[str, tuple[str, str]] = {}
    spare = 0
    for name in components:
        if name in _COMPONENT_LOOK:
            out[name] = _COMPONENT_LOOK[name]
        else:
            out[name] = ("#333333" if spare % 2 else "#FFFFFF", _HATCHES[(spare + 1) % len(_HATCHES)])
            spare += 1
    return out


def new_figure(width: float, height: float, title: str, context: str = "") -> Figure:
    """A constrained-layout figure titled with what it shows, then (second line) the run it comes from."""
    fig = Figure(figsize=(width, height), layout="constrained")
    chars = int(width * 13)  # ~13 characters per inch at this size: wrap instead of running off the page
    fig.suptitle("\n".join(textwrap.wrap(title, chars) + textwrap.wrap(context, chars)), fontsize=9.5)
    return fig


def figure_legend(fig: Figure, axes: Iterable[Any], **kwargs: Any) -> None:
    """One legend beside the figure for the labelled artists of all `axes` (each label once)."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside right center", **kwargs)


def log_axis(ax: Any, which: str = "x", scale: str = "log", **kwargs: Any) -> None:
    """A log (or symlog) axis labelled in plain text ("1e-5"): mathtext tick labels are the slowest
    part of saving a figure, and minor ticks get no labels at all."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)(scale, **kwargs)
    axis.set_major_formatter(FuncFormatter(_plain_number))
    axis.set_minor_formatter(NullFormatter())


def _plain_number(x: float, _pos: Any = None) -> str:
    if x == 0:
        return "0"
    exponent = math.log10(abs(x))
    if exponent == round(exponent) and abs(exponent) >= 3:
        return f"{'-' if x < 0 else ''}1e{int(round(exponent))}"
    return f"{x:g}"


@styled  # some settings (font embedding, SVG ids) are read when saving, not when drawing
def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure encoded as `fmt` ("png", "pdf" or "svg"), PNG at DPI."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=_metadata(fmt))
    return buf.getvalue()


def save_figure(fig: Figure, out_dir: Path, name: str, formats: Iterable[str] = ("png", "pdf")) -> list[Path]:
    """Write `name.<fmt>` for each format atomically; returns the paths in format order.

    The layout is solved for the first format and then frozen: later formats skip that work.
    """
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{name}.{fmt}"
        atomic_write_bytes(path, figure_bytes(fig, fmt))
        fig.set_layout_engine("none")
        paths.append(path)
    return paths


def _metadata(fmt: str) -> dict[str, Any] | None:
    """No timestamps or software versions in the files: same data, same bytes (PDF/SVG/PNG)."""
    if fmt == "pdf":
        return {"Creator": "esa", "Producer": "esa", "CreationDate": None}
    if fmt == "svg":
        return {"Creator": "esa", "Date": None}
    if fmt == "png":
        return {"Software": "esa"}
    return None
