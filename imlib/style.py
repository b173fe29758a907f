"""The look shared by every figure of the project: one palette, one style, one chance line.

A variant's colour and label are its spec's (:mod:`imlib.variants`), a kind's its spec's
(:mod:`imlib.degradations`); ``VARIANT_COLORS``, ``KIND_LABELS``... are live views of those
specs by name. A variant's colour never means a kind and a kind's never a variant: the two
palettes share no colour (a test checks their distance). Reference lines (chance, calibration
diagonal, IM's target) are grey or black.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from imlib._checks import check_int
from imlib.degradations import KIND_SPECS
from imlib.io import atomic_write_bytes
from imlib.variants import VARIANT_SPECS

__all__ = ["VARIANT_LABELS", "VARIANT_COLORS", "KIND_LABELS", "KIND_COLORS", "KIND_MARKERS",
           "GAP_COLOR", "REFERENCE_COLOR", "CHANCE_LABEL", "TARGET_LABEL", "DATASET_LABELS",
           "BINS_PALETTE", "INLINE_DPI", "style", "new_figure", "source_line", "percent_axis",
           "chance_line", "save_figure", "show_and_save"]

VARIANT_LABELS = VARIANT_SPECS.field("label")  # as printed
VARIANT_COLORS = VARIANT_SPECS.field("color")
KIND_LABELS = KIND_SPECS.field("label")
KIND_COLORS = KIND_SPECS.field("color")
KIND_MARKERS = KIND_SPECS.field("marker")
GAP_COLOR = "#222222"  # reliability gap hatching: near-black, neither a variant nor a kind
REFERENCE_COLOR = "0.4"  # chance line and calibration diagonal
CHANCE_LABEL = "chance (1/K)"
TARGET_LABEL = "IM target 1 − ε(NMI)"
DATASET_LABELS = {"cifar100": "CIFAR-100", "synthetic": "synthetic set",
                  "digits": "handwritten digits"}
BINS_PALETTE = "crest"  # a sequential palette for numbers of bins: neither a variant nor a kind
INLINE_DPI = 72  # figures shown in a notebook (a screen inch); saved files: 150 dpi


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The look of every figure, applied only while it is drawn (no global state changed)."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        yield


@functools.cache
def _load_backend() -> None:
    """Load pyplot's backend, once, as pyplot's own first figure would. These figures bypass
    pyplot, and under Jupyter's inline backend it is loading the backend that registers the PNG
    display of Figure objects: without it a figure ending a notebook cell shows as text."""
    plt.switch_backend(matplotlib.get_backend())


def new_figure(width: float, height: float) -> Figure:
    """A Figure not registered with pyplot (a notebook shows it by ending a cell with it).

    Shown in a notebook at ``INLINE_DPI``, which keeps the executed notebooks small; the files
    :func:`save_figure` writes have their own, higher resolution."""
    _load_backend()
    return Figure(figsize=(width, height), dpi=INLINE_DPI, layout="constrained")


def source_line(dataset: str, protocol: str | None = None) -> str:
    """What a figure's numbers come from, for its title: the data set and, for trained models,
    the training protocol (``"CIFAR-100, paper protocol"``)."""
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a data set's name such as 'cifar100', got {dataset!r}")
    name = DATASET_LABELS.get(dataset, dataset)
    return name if protocol is None else f"{name}, {protocol} protocol"


def percent_axis(ax: Axes) -> None:
    """A y-axis of percentages over the whole 0-100 % range, so that panels compare at a glance
    (a small margin keeps a line at 0 or 100 % visible)."""
    ax.set_ylim(-2, 102)
    ax.set_yticks(range(0, 101, 20))


def chance_line(ax: Axes, num_classes: int) -> None:
    """The dashed chance level 1/K, in percent, labelled ``CHANCE_LABEL``."""
    check_int(num_classes, "num_classes", 2)
    ax.axhline(100.0 / num_classes, color=REFERENCE_COLOR, linestyle="--", linewidth=1.2,
               label=CHANCE_LABEL)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (150 dpi, tight bounding box), creating the folder, then close
    it; returns the path. The file is replaced whole (:func:`imlib.io.atomic_write_bytes`): a
    kill leaves the old figure or the new one, never a cut one."""
    if not isinstance(fig, Figure):
        raise ValueError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    atomic_write_bytes(png.getvalue(), path)
    plt.close(fig)
    return path


def show_and_save(fig: Figure, path: str | Path, title: str | None = None, *,
                  show: bool = True) -> Path:
    """Write ``fig`` with :func:`save_figure` and, with ``show``, display it in the notebook,
    under ``title`` (Markdown, bold) when given; returns the path. ``show=False`` writes a
    file the notebook does not show again (a figure another notebook shows, or another
    protocol's)."""
    from IPython.display import Markdown, display

    path = save_figure(fig, path)
    if show:
        display(*([Markdown(f"**{title}**")] if title else []), fig)
    return path
