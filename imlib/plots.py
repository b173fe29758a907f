"""The paper's figures, each a function of saved result tables only (DataFrames in, a matplotlib
Figure out): computing lives in :mod:`imlib.evaluate`, which writes the tables read here.

Every figure uses one colour per variant (``VARIANT_COLORS``) and the same style (seaborn
"whitegrid", "notebook" context); spreads are the sample std over seeds. Figures are plain
``matplotlib.figure.Figure`` objects, not registered with pyplot: a notebook shows one by
ending a cell with it, and :func:`save_figure` writes it.

- :func:`training_curves`: Fig. 1, loss and accuracy per epoch, train vs held out.
- :func:`clean_metrics_bars`: Fig. 2, top-1, top-5, CE loss and ECE on the clean test set.
- :func:`confidence_vs_level`: Fig. 3, true-class confidence vs the level of one kind.
- :func:`confidence_heatmap`: Fig. 4, the same as a variant x level heatmap.
- :func:`confidence_per_kind`: Fig. 5, one panel per kind.
- :func:`reliability_diagram`: accuracy per confidence bin, per variant.
- :func:`nmi_vs_level`: mean NMI(clean, degraded) per kind (a teaching plot).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from imlib.degradations import KINDS
from imlib.evaluate import (
    CLEAN_COLUMNS,
    RELIABILITY_COLUMNS,
    SWEEP_COLUMNS,
    VARIANT_LABELS,
    _check_frame,
    summarize,
)
from imlib.train import VARIANTS

__all__ = [
    "VARIANT_ORDER",
    "VARIANT_LABELS",
    "VARIANT_COLORS",
    "KIND_LABELS",
    "KIND_COLORS",
    "training_curves",
    "clean_metrics_bars",
    "confidence_vs_level",
    "confidence_heatmap",
    "confidence_per_kind",
    "reliability_diagram",
    "nmi_vs_level",
    "save_figure",
]

VARIANT_ORDER = VARIANTS  # ("baseline", "ls", "im", "level"): legends, bars and rows
_PALETTE = sns.color_palette("colorblind")
VARIANT_COLORS = {"baseline": _PALETTE[0], "ls": _PALETTE[1], "im": _PALETTE[2],
                  "level": _PALETTE[4]}
# Kinds get colours no variant uses, so a colour never means two things.
KIND_LABELS = {"diffusion": "Diffusion noise", "blur": "Gaussian blur",
               "dropout": "Patch dropout", "mosaic": "Mosaic"}
KIND_COLORS = {"diffusion": _PALETTE[3], "blur": _PALETTE[9], "dropout": _PALETTE[5],
               "mosaic": _PALETTE[7]}
_KIND_MARKERS = {"diffusion": "o", "blur": "s", "dropout": "^", "mosaic": "D"}
_LEVEL_LABEL = "Degradation level d"
_CONFIDENCE_LABEL = "Mean true-class confidence"


# --- shared pieces ----------------------------------------------------------------------------


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """The look of every figure, applied only while it is drawn (no global state changed)."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        yield


@functools.cache
def _load_backend() -> None:
    """Load pyplot's backend, once, as pyplot's own first figure would. These figures bypass
    pyplot, and under Jupyter's inline backend it is loading the backend that registers the PNG
    display of Figure objects: without it a figure ending a notebook cell shows as text."""
    plt.switch_backend(matplotlib.get_backend())


def _figure(width: float, height: float) -> Figure:
    _load_backend()
    return Figure(figsize=(width, height), layout="constrained")


def _variants(df: pd.DataFrame, name: str) -> list[str]:
    """The variants present in ``df``, in ``VARIANT_ORDER``; unknown names are refused."""
    present = set(df["variant"])
    unknown = sorted(present - set(VARIANT_ORDER))
    if unknown:
        raise ValueError(f"{name} holds unknown variant(s) {unknown}; known: {VARIANT_ORDER}")
    return [v for v in VARIANT_ORDER if v in present]


def _seeds_note(summary: pd.DataFrame) -> str:
    n = int(summary["n_seeds"].max())
    return "one seed" if n == 1 else f"mean ± sd over {n} seeds"


def _select(sweeps: pd.DataFrame, subset: str, kind: str | None = None) -> pd.DataFrame:
    """Rows of one subset (and kind) in training's evaluation order (``degrade_first``, what every
    figure shows); a ValueError naming what is available when none match."""
    _check_frame(sweeps, "sweeps", SWEEP_COLUMNS)
    if subset not in set(sweeps["subset"]):
        raise ValueError(f"subset must be one of {sorted(set(sweeps['subset']))}, got {subset!r}")
    rows = sweeps[(sweeps["subset"] == subset) & (sweeps["order"] == "degrade_first")]
    if kind is not None:
        if kind not in set(rows["kind"]):
            raise ValueError(f"kind must be one of {sorted(set(rows['kind']))}, got {kind!r}")
        rows = rows[rows["kind"] == kind]
    return rows


def _subject(subset: str, class_name: str) -> str:
    return f"class '{class_name}'" if subset == "class" else "all test images"


def _line(ax: Axes, x: np.ndarray, mean: np.ndarray, std: np.ndarray, color, label: str,
          **style) -> None:
    """A mean line with a ±1 sd band (no band when every sd is 0: a single seed)."""
    ax.plot(x, mean, color=color, label=label, linewidth=2, **style)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def _confidence_lines(ax: Axes, rows: pd.DataFrame) -> pd.DataFrame:
    """One line per variant: confidence vs level, mean ± sd over seeds. Returns the summary."""
    summary = summarize(rows, ("variant", "level"), ("confidence",))
    for variant in _variants(rows, "sweeps"):
        s = summary[summary["variant"] == variant].sort_values("level")
        _line(ax, s["level"].to_numpy(), s["confidence_mean"].to_numpy(),
              s["confidence_std"].to_numpy(), VARIANT_COLORS[variant], VARIANT_LABELS[variant],
              marker="o", markersize=5)
    ax.set(xlim=(-0.02, 1.02), ylim=(0, 1), xlabel=_LEVEL_LABEL)
    return summary


# --- the figures ------------------------------------------------------------------------------


def training_curves(histories: pd.DataFrame) -> Figure:
    """Fig. 1: loss (nats) and top-1 accuracy (%) per epoch and variant; training batches
    (degraded, each variant's own targets) dashed, the clean held-out split solid (the test
    split when the runs had no holdout). ``histories`` is :func:`imlib.evaluate.load_histories`.
    """
    _check_frame(histories, "histories", ("variant", "seed", "epoch", "train_loss", "train_acc"))
    split = ("holdout" if "holdout_acc" in histories and histories["holdout_acc"].notna().any()
             else "test")
    _check_frame(histories, "histories", (f"{split}_loss", f"{split}_acc"))
    summary = summarize(histories, ("variant", "epoch"),
                        ("train_loss", "train_acc", f"{split}_loss", f"{split}_acc"))
    variants = _variants(histories, "histories")
    with _style():
        fig = _figure(12, 4.5)
        axes = fig.subplots(1, 2)
        panels = (("loss", "Cross-entropy loss", "Loss (nats)", 1.0),
                  ("acc", "Top-1 accuracy", "Accuracy (%)", 100.0))
        for ax, (metric, title, ylabel, scale) in zip(axes, panels, strict=True):
            for variant in variants:
                s = summary[summary["variant"] == variant].sort_values("epoch")
                for source, linestyle in (("train", "--"), (split, "-")):
                    _line(ax, s["epoch"].to_numpy(),
                          scale * s[f"{source}_{metric}_mean"].to_numpy(),
                          scale * s[f"{source}_{metric}_std"].to_numpy(),
                          VARIANT_COLORS[variant], f"{VARIANT_LABELS[variant]} ({source})",
                          linestyle=linestyle)
            ax.set(title=title, xlabel="Epoch", ylabel=ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.5"
        handles = [Line2D([], [], color=VARIANT_COLORS[v], linewidth=2, label=VARIANT_LABELS[v])
                   for v in variants]
        handles += [Line2D([], [], color="0.3", linestyle="--",
                           label="train (degraded,\nown targets)"),
                    Line2D([], [], color="0.3", label=f"{split} (clean)")]
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
        fig.suptitle(f"Training curves ({_seeds_note(summary)})", fontweight="bold")
    return fig


def clean_metrics_bars(clean: pd.DataFrame) -> Figure:
    """Fig. 2: top-1 and top-5 accuracy (%), cross-entropy loss (nats) and ECE (15 bins) on the
    clean test set, one bar per variant with ±1 sd error bars over seeds, values annotated."""
    _check_frame(clean, "clean", CLEAN_COLUMNS)
    summary = summarize(clean, ("variant",), ("top1", "top5", "nll", "ece"))
    variants = _variants(clean, "clean")  # the summary's rows, in this order
    multi_seed = int(summary["n_seeds"].max()) > 1
    panels = (("top1", "Top-1 accuracy", "Accuracy (%)", 100.0, "{:.2f}"),
              ("top5", "Top-5 accuracy", "Accuracy (%)", 100.0, "{:.2f}"),
              ("nll", "Cross-entropy loss", "Loss (nats)", 1.0, "{:.3f}"),
              ("ece", "Expected calibration error (15 bins)", "ECE", 1.0, "{:.3f}"))
    with _style():
        fig = _figure(10, 7.5)
        axes = fig.subplots(2, 2).ravel()
        x = np.arange(len(variants))
        for ax, (metric, title, ylabel, scale, fmt) in zip(axes, panels, strict=True):
            mean = scale * summary[f"{metric}_mean"].to_numpy()
            std = scale * summary[f"{metric}_std"].to_numpy()
            ax.bar(x, mean, yerr=std if multi_seed else None, capsize=5, width=0.65,
                   color=[VARIANT_COLORS[v] for v in variants])
            for xi, m, s in zip(x, mean, std, strict=True):
                ax.annotate(fmt.format(m), (xi, m + s), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom",
                            fontsize="small", fontweight="bold")
            ax.set_xticks(x, [VARIANT_LABELS[v] for v in variants])
            ax.set(title=title, ylabel=ylabel)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # room for the labels
            ax.grid(axis="x", visible=False)
        fig.suptitle(f"Clean test set ({_seeds_note(summary)})", fontweight="bold")
    return fig


def confidence_vs_level(sweeps: pd.DataFrame, kind: str = "mosaic", subset: str = "class",
                        class_name: str = "apple") -> Figure:
    """Fig. 3: mean true-class confidence vs level of ``kind``, one line per variant (±1 sd
    over seeds), on the images of one class (``subset="class"``) or all test images."""
    rows = _select(sweeps, subset, kind)
    with _style():
        fig = _figure(7, 4.5)
        ax = fig.subplots()
        summary = _confidence_lines(ax, rows)
        ax.set(ylabel=_CONFIDENCE_LABEL,
               title=f"{KIND_LABELS.get(kind, kind)}: true-class confidence, "
                     f"{_subject(subset, class_name)}\n({_seeds_note(summary)})")
        ax.legend(title="Variant", loc="upper right")
    return fig


def confidence_heatmap(sweeps: pd.DataFrame, kind: str = "mosaic", subset: str = "class",
                       class_name: str = "apple") -> Figure:
    """Fig. 4: mean true-class confidence (over images and seeds) as a variant x level heatmap
    for ``kind``; row labels in the variants' colours."""
    rows = _select(sweeps, subset, kind)
    variants = _variants(rows, "sweeps")
    table = (rows.groupby(["variant", "level"])["confidence"].mean().unstack("level")
             .reindex(variants))
    with _style():
        fig = _figure(1.0 + 0.75 * table.shape[1], 1.6 + 0.55 * len(variants))
        ax = fig.subplots()
        sns.heatmap(table, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f",
                    linewidths=0.5, annot_kws={"fontsize": "small"},
                    xticklabels=[f"{d:g}" for d in table.columns],
                    yticklabels=[VARIANT_LABELS[v] for v in variants],
                    cbar_kws={"label": "Mean true-class\nconfidence"})
        for label, variant in zip(ax.get_yticklabels(), variants, strict=True):
            label.set(color=VARIANT_COLORS[variant], fontweight="bold", rotation=0)
        ax.set(xlabel=_LEVEL_LABEL, ylabel="",
               title=f"{KIND_LABELS.get(kind, kind)}: true-class confidence, "
                     f"{_subject(subset, class_name)}")
    return fig


def confidence_per_kind(sweeps: pd.DataFrame, subset: str = "class",
                        class_name: str = "apple") -> Figure:
    """Fig. 5: mean true-class confidence vs level, one panel per kind (same y-range), one line
    per variant (±1 sd over seeds)."""
    rows = _select(sweeps, subset)
    kinds = [k for k in KINDS if k in set(rows["kind"])] + sorted(set(rows["kind"]) - set(KINDS))
    with _style():
        fig = _figure(3.6 * len(kinds) + 1.4, 4.2)
        axes = np.atleast_1d(fig.subplots(1, len(kinds), sharey=True))
        for ax, kind in zip(axes, kinds, strict=True):
            summary = _confidence_lines(ax, rows[rows["kind"] == kind])
            ax.set(title=KIND_LABELS.get(kind, kind))
        axes[0].set_ylabel(_CONFIDENCE_LABEL)
        fig.legend(handles=axes[0].get_lines(), title="Variant", loc="outside right upper",
                   frameon=False)
        fig.suptitle(f"True-class confidence per degradation, {_subject(subset, class_name)} "
                     f"({_seeds_note(summary)})", fontweight="bold")
    return fig


def reliability_diagram(reliability: pd.DataFrame, condition: str = "clean") -> Figure:
    """Accuracy per top-1 confidence bin against the diagonal, one panel per variant, seeds
    pooled (bin counts summed); the gap to the diagonal hatched. Each title gives the ECE of
    the pooled table, ``sum_b n_b / N |acc_b - conf_b|``."""
    _check_frame(reliability, "reliability", RELIABILITY_COLUMNS)
    if condition not in set(reliability["condition"]):
        raise ValueError(f"condition must be one of {sorted(set(reliability['condition']))}, "
                         f"got {condition!r}")
    rows = reliability[reliability["condition"] == condition]
    rows = rows.assign(correct=rows["accuracy"] * rows["count"],
                       confident=rows["confidence"] * rows["count"])
    pooled = rows.groupby(["variant", "bin", "lower", "upper"], as_index=False)[
        ["count", "correct", "confident"]].sum()
    variants = _variants(rows, "reliability")
    n_seeds = rows["seed"].nunique()
    with _style():
        fig = _figure(3.6 * len(variants), 4.2)
        axes = np.atleast_1d(fig.subplots(1, len(variants), sharey=True))
        for ax, variant in zip(axes, variants, strict=True):
            t = pooled[(pooled["variant"] == variant) & (pooled["count"] > 0)]
            accuracy, confidence = t["correct"] / t["count"], t["confident"] / t["count"]
            ece = float((t["count"] / t["count"].sum() * (accuracy - confidence).abs()).sum())
            centre, width = (t["lower"] + t["upper"]) / 2, t["upper"] - t["lower"]
            ax.bar(centre, accuracy, width=width, color=VARIANT_COLORS[variant],
                   edgecolor="white")
            ax.bar(centre, confidence - accuracy, bottom=accuracy, width=width, fill=False,
                   edgecolor=_PALETTE[3], hatch="//", linewidth=0.5)
            ax.plot([0, 1], [0, 1], linestyle="--", color="0.3")
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Confidence (top-1 probability)",
                   title=f"{VARIANT_LABELS[variant]} (ECE {ece:.4f})")
        axes[0].set_ylabel("Accuracy")
        handles = [Line2D([], [], linestyle="--", color="0.3", label="perfect calibration"),
                   Patch(facecolor="0.6", label="accuracy per bin (variant colour)"),
                   Patch(fill=False, edgecolor=_PALETTE[3], hatch="//",
                         label="gap to mean confidence")]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
        where = "clean test set" if condition == "clean" else condition.replace("_", " at d = ")
        pooled_note = f", {n_seeds} seeds pooled" if n_seeds > 1 else ""
        fig.suptitle(f"Reliability, {where}{pooled_note}", fontweight="bold")
    return fig


def nmi_vs_level(sweeps: pd.DataFrame) -> Figure:
    """Mean NMI(clean, degraded) over the test split vs level, one line per kind; the right
    axis reads it as IM's smoothing ``eps = 1 - NMI`` (before its clamp at 0.9)."""
    rows = _select(sweeps, "all")
    table = rows.groupby(["kind", "level"], as_index=False)["nmi"].mean()
    kinds = [k for k in KINDS if k in set(table["kind"])]
    with _style():
        fig = _figure(7, 4.5)
        ax = fig.subplots()
        for kind in kinds:
            t = table[table["kind"] == kind].sort_values("level")
            ax.plot(t["level"], t["nmi"], color=KIND_COLORS[kind], label=KIND_LABELS[kind],
                    marker=_KIND_MARKERS[kind], markersize=5, linewidth=2)
        ax.set(xlim=(-0.02, 1.02), ylim=(0, 1.02), xlabel=_LEVEL_LABEL,
               ylabel="Mean NMI(clean, degraded)",
               title="Information kept by each degradation (test split, 64 bins)")
        right = ax.secondary_yaxis("right", functions=(lambda y: 1 - y, lambda e: 1 - e))
        right.set_ylabel("IM smoothing ε = 1 − NMI")
        ax.legend(title="Degradation", loc="upper right")
    return fig


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
