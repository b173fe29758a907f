"""Pieces every figure of :mod:`imlib.plots` and :mod:`imlib.information_plots` shares: the
selection of sweep rows, seed lines, titles and legends. Computing lives in
:mod:`imlib.evaluate`; :mod:`imlib.results` writes and reads the tables figures are drawn from.

Conventions shared by every figure, so a reader learns them once:

- one colour per variant (``VARIANT_COLORS``) and one colour and marker per degradation kind
  (``KIND_COLORS``, ``KIND_MARKERS``); the two palettes share no colour, so a colour never means
  a variant in one figure and a kind in another;
- accuracies and confidences are in percent (axes marked "%"), on a 0-100 % axis in every
  panel; NMI, eps, ECE and losses are plain numbers;
- every title names what the numbers come from: the data set and, for trained models, the
  training protocol (``dataset`` and ``protocol`` arguments, :func:`imlib.style.source_line`);
- legends sit outside the axes, never over data; the paper's CIFAR-100 values are drawn only on
  figures of CIFAR-100 runs;
- a thick line is the mean over seeds and thin lines are the single seeds (drawn only when there
  are several); with one seed no "±" or sd appears;
- reference lines are grey or black: ``CHANCE_LABEL`` (dashed, at 100/K %), the diagonal of
  perfect calibration, IM's target line.
"""

from __future__ import annotations


import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from imlib._checks import check_choice
from imlib.degradations import KINDS
from imlib.results import (
    ORDERS,
    SWEEP_COLUMNS,
    EvalSettings,
    check_frame,
)
from imlib.variants import VARIANTS
from imlib.style import (VARIANT_COLORS, VARIANT_LABELS,
                         chance_line, percent_axis, source_line)


__all__ = [
    "PERCENT",
    "LEVEL_LABEL",
    "CONFIDENCE_LABEL",
    "variants_in",
    "kinds_in",
    "seeds_note",
    "check_eval_settings",
    "select_rows",
    "subject_text",
    "seed_lines",
    "variant_lines",
    "set_title",
    "figure_legend",
]

PERCENT = 100.0


LEVEL_LABEL = "Degradation level d"


CONFIDENCE_LABEL = "Mean true-class confidence (%)"


def variants_in(df: pd.DataFrame, name: str) -> list[str]:
    """The variants present in ``df``, in ``VARIANTS`` order; unknown names are refused."""
    present = set(df["variant"])
    unknown = sorted(present - set(VARIANTS))
    if unknown:
        raise ValueError(f"{name} holds unknown variant(s) {unknown}; known: {VARIANTS}")
    return [v for v in VARIANTS if v in present]


def kinds_in(df: pd.DataFrame) -> list[str]:
    """The kinds present in ``df``, in ``KINDS`` order (unknown ones after, sorted)."""
    present = set(df["kind"])
    return [k for k in KINDS if k in present] + sorted(present - set(KINDS))


def seeds_note(df: pd.DataFrame, shown: str = "lines") -> str:
    """How the seeds of ``df`` are drawn: "one seed", or their mean with sd error bars
    (``shown="bars"``), with thin per-seed lines (``"lines"``) or alone (``"mean"``)."""
    n = int(df["seed"].nunique())
    if n == 1:
        return "one seed"
    return {"bars": f"mean ± sd over {n} seeds", "lines": f"mean of {n} seeds, thin: each seed",
            "mean": f"mean of {n} seeds"}[shown]


def check_eval_settings(settings: EvalSettings) -> None:
    if not isinstance(settings, EvalSettings):
        raise ValueError("settings must be the evaluation's imlib.results.EvalSettings "
                         f"(EvalResults.eval_settings), got {type(settings).__name__}")


def select_rows(sweeps: pd.DataFrame, subset: str, kind: str | None = None,
                order: str = "degrade_first") -> pd.DataFrame:
    """Rows of one subset (and kind) in one evaluation order (training's, ``degrade_first``, by
    default); a ValueError naming what is available when none match."""
    check_frame(sweeps, "sweeps", SWEEP_COLUMNS)
    check_choice(order, ORDERS, "order")
    if subset not in set(sweeps["subset"]):
        raise ValueError(f"subset must be one of {sorted(set(sweeps['subset']))}, got {subset!r}")
    rows = sweeps[(sweeps["subset"] == subset) & (sweeps["order"] == order)]
    if rows.empty:
        raise ValueError(f"sweeps has no rows of order {order!r} for subset {subset!r}")
    if kind is not None:
        if kind not in set(rows["kind"]):
            raise ValueError(f"kind must be one of {sorted(set(rows['kind']))}, got {kind!r}")
        rows = rows[rows["kind"] == kind]
    return rows


def subject_text(subset: str, class_name: str) -> str:
    return f"class '{class_name}'" if subset == "class" else "all test images"


def seed_lines(ax: Axes, rows: pd.DataFrame, x: str, y: str, color, label: str,
               scale: float = PERCENT, **style) -> None:
    """``y`` against ``x``: a thick line of the mean over seeds, labelled ``label``, above thin
    unlabelled lines of each seed (only when there are several)."""
    table = rows.groupby([x, "seed"])[y].mean().unstack("seed").sort_index()
    marker = style.pop("marker", None)
    if table.shape[1] > 1:
        for seed in table.columns:
            ax.plot(table.index, scale * table[seed], color=color, linewidth=0.8, alpha=0.4,
                    label=f"_seed {seed}", **style)
    ax.plot(table.index, scale * table.mean(axis=1), color=color, linewidth=2.2, label=label,
            marker=marker, markersize=5, **style)


def variant_lines(ax: Axes, rows: pd.DataFrame, y: str, num_classes: int) -> None:
    """One line per variant of ``y`` (percent) against level, the chance line, a 0-100 % axis."""
    for variant in variants_in(rows, "sweeps"):
        seed_lines(ax, rows[rows["variant"] == variant], "level", y, VARIANT_COLORS[variant],
                   VARIANT_LABELS[variant], marker="o")
    chance_line(ax, num_classes)
    ax.set(xlim=(-0.02, 1.02), xlabel=LEVEL_LABEL)
    percent_axis(ax)


def set_title(fig: Figure, title: str, dataset: str, protocol: str | None) -> None:
    """The figure's bold title, its last line naming the data set (and protocol) drawn."""
    fig.suptitle(f"{title}\n{source_line(dataset, protocol)}", fontweight="bold")


def figure_legend(fig: Figure, ax: Axes, title: str | None = None) -> None:
    """One legend of the labelled lines of ``ax``, outside the axes, on the figure's right."""
    handles = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    fig.legend(handles=handles, title=title, loc="outside right upper", frameon=False)


# --- training and the clean test set ------------------------------------------------------------

