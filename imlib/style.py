"""The look shared by every figure of the project: one palette, one style, one chance line.

A variant's colour (``VARIANT_COLORS``) never means a kind and a kind's (``KIND_COLORS``) never
a variant: the two palettes share no colour (a test checks their distance). Reference lines
(chance, calibration diagonal, IM's target) are grey or black.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from imlib._checks import check_int
from imlib.results import VARIANT_LABELS

__all__ = ["VARIANT_LABELS", "VARIANT_COLORS", "KIND_LABELS", "KIND_COLORS", "KIND_MARKERS",
           "GAP_COLOR", "REFERENCE_COLOR", "CHANCE_LABEL", "TARGET_LABEL", "style",
           "new_figure", "chance_line", "save_figure", "show_and_save"]

# Variants: seaborn's colorblind palette (blue, orange, green, pink).
VARIANT_COLORS = {"baseline": "#0173b2", "ls": "#de8f05", "im": "#029e73", "level": "#cc78bc"}
# Kinds: Paul Tol's wine, indigo, olive and teal, far from every variant colour (a test checks).
KIND_LABELS = {"diffusion": "Diffusion noise", "blur": "Gaussian blur",
               "dropout": "Patch dropout", "mosaic": "Mosaic"}
KIND_COLORS = {"diffusion": "#882255", "blur": "#332288", "dropout": "#999933",
               "mosaic": "#44aa99"}
KIND_MARKERS = {"diffusion": "o", "blur": "s", "dropout": "^", "mosaic": "D"}
GAP_COLOR = "#222222"  # reliability gap hatching: near-black, neither a variant nor a kind
REFERENCE_COLOR = "0.4"  # chance line and calibration diagonal
CHANCE_LABEL = "chance (1/K)"
TARGET_LABEL = "IM target 1 − ε(NMI)"


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
    """A Figure not registered with pyplot (a notebook shows it by ending a cell with it)."""
    _load_backend()
    return Figure(figsize=(width, height), layout="constrained")


def chance_line(ax: Axes, num_classes: int) -> None:
    """The dashed chance level 1/K, in percent, labelled ``CHANCE_LABEL``."""
    check_int(num_classes, "num_classes", 2)
    ax.axhline(100.0 / num_classes, color=REFERENCE_COLOR, linestyle="--", linewidth=1.2,
               label=CHANCE_LABEL)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (150 dpi, tight bounding box), creating the folder, then close
    it; returns the path."""
    if not isinstance(fig, Figure):
        raise ValueError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def show_and_save(fig: Figure, path: str | Path, title: str | None = None) -> Path:
    """Write ``fig`` with :func:`save_figure` and display it in the notebook, under ``title``
    (Markdown, bold) when given; returns the path."""
    from IPython.display import Markdown, display

    path = save_figure(fig, path)
    display(*([Markdown(f"**{title}**")] if title else []), fig)
    return path
