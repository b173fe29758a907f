"""The study's figures: each a function of saved result tables (DataFrames in, a matplotlib
Figure out) or, for the image grids, of plain tensors. Computing lives in :mod:`imlib.evaluate`;
:mod:`imlib.results` writes and reads the tables used here.

Conventions shared by every figure, so a reader learns them once:

- one colour per variant (``VARIANT_COLORS``) and one colour and marker per degradation kind
  (``KIND_COLORS``, ``KIND_MARKERS``); the two palettes share no colour, so a colour never means
  a variant in one figure and a kind in another;
- accuracies and confidences are in percent (axes marked "%"); NMI, eps, ECE and losses are
  plain numbers;
- a thick line is the mean over seeds and thin lines are the single seeds (drawn only when there
  are several); with one seed no "±" or sd appears;
- reference lines are grey or black: ``CHANCE_LABEL`` (dashed, at 100/K %), the diagonal of
  perfect calibration, IM's target line.

Figures are plain ``matplotlib.figure.Figure`` objects, not registered with pyplot: a notebook
shows one by ending a cell with it, and :func:`save_figure` writes it.

- :func:`training_curves`: Fig. 1, loss and accuracy per epoch: training batches, test set and
  (when the runs had one) the holdout split.
- :func:`clean_metrics_bars`: Fig. 2, the clean test set's metrics, the paper's Table 1 marked.
- :func:`confidence_vs_level`: Fig. 3, true-class confidence vs the level of one kind.
- :func:`confidence_heatmap`: Fig. 4, the same as a variant x level heatmap.
- :func:`confidence_per_kind`: Fig. 5, one panel per kind, every variant.
- :func:`confidence_kinds_overlaid`: Fig. 5 in the paper's own view, one variant, kinds overlaid.
- :func:`confidence_vs_nmi`: IM's claim, confidence against NMI with the target ``1 - eps(NMI)``.
- :func:`accuracy_vs_level`: accuracy vs level, one panel per kind.
- :func:`reliability_diagram`: accuracy and count per confidence bin, per variant.
- :func:`nmi_vs_level`: mean NMI(clean, degraded) per kind (a teaching plot).
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from imlib._checks import check_choice, check_int
from imlib.degradations import KINDS
from imlib.labels import SPREADS, im_eps
from imlib.results import (
    CLEAN_COLUMNS,
    ORDERS,
    RELIABILITY_COLUMNS,
    SWEEP_COLUMNS,
    VARIANT_LABELS,
    check_frame,
    summarize,
)
from imlib.paper import PAPER_TABLE1
from imlib.style import (CHANCE_LABEL, GAP_COLOR, KIND_COLORS, KIND_LABELS, KIND_MARKERS,
                         REFERENCE_COLOR, TARGET_LABEL, VARIANT_COLORS, chance_line, new_figure,
                         style)
from imlib.train import VARIANTS

__all__ = [
    "training_curves",
    "clean_metrics_bars",
    "confidence_vs_level",
    "confidence_heatmap",
    "confidence_per_kind",
    "confidence_kinds_overlaid",
    "confidence_vs_nmi",
    "accuracy_vs_level",
    "reliability_diagram",
    "nmi_vs_level",
]

_PERCENT = 100.0
_LEVEL_LABEL = "Degradation level d"
_CONFIDENCE_LABEL = "Mean true-class confidence (%)"


# --- shared pieces ----------------------------------------------------------------------------


def _variants(df: pd.DataFrame, name: str) -> list[str]:
    """The variants present in ``df``, in ``VARIANTS`` order; unknown names are refused."""
    present = set(df["variant"])
    unknown = sorted(present - set(VARIANTS))
    if unknown:
        raise ValueError(f"{name} holds unknown variant(s) {unknown}; known: {VARIANTS}")
    return [v for v in VARIANTS if v in present]


def _kinds(df: pd.DataFrame) -> list[str]:
    """The kinds present in ``df``, in ``KINDS`` order (unknown ones after, sorted)."""
    present = set(df["kind"])
    return [k for k in KINDS if k in present] + sorted(present - set(KINDS))


def _seeds_note(df: pd.DataFrame, shown: str = "lines") -> str:
    """How the seeds of ``df`` are drawn: "one seed", or their mean with sd error bars
    (``shown="bars"``), with thin per-seed lines (``"lines"``) or alone (``"mean"``)."""
    n = int(df["seed"].nunique())
    if n == 1:
        return "one seed"
    return {"bars": f"mean ± sd over {n} seeds", "lines": f"mean of {n} seeds, thin: each seed",
            "mean": f"mean of {n} seeds"}[shown]


def _select(sweeps: pd.DataFrame, subset: str, kind: str | None = None,
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


def _subject(subset: str, class_name: str) -> str:
    return f"class '{class_name}'" if subset == "class" else "all test images"


def _seed_lines(ax: Axes, rows: pd.DataFrame, x: str, y: str, color, label: str,
                scale: float = _PERCENT, **style) -> None:
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


def _fit_percent_axis(ax: Axes) -> None:
    """A y-axis fitted to what is drawn (chance line included), never beyond 0-100 %."""
    ax.relim()
    ax.autoscale_view(scalex=False)
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -1.0), min(high, 101.0))


def _variant_lines(ax: Axes, rows: pd.DataFrame, y: str, num_classes: int) -> None:
    """One line per variant of ``y`` (percent) against level, the chance line, a fitted axis."""
    for variant in _variants(rows, "sweeps"):
        _seed_lines(ax, rows[rows["variant"] == variant], "level", y, VARIANT_COLORS[variant],
                    VARIANT_LABELS[variant], marker="o")
    chance_line(ax, num_classes)
    ax.set(xlim=(-0.02, 1.02), xlabel=_LEVEL_LABEL)
    _fit_percent_axis(ax)


# --- training and the clean test set ------------------------------------------------------------


def training_curves(histories: pd.DataFrame) -> Figure:
    """Fig. 1: loss (nats) and top-1 accuracy (%) per epoch, one line per variant, in one column
    per split: the training batches (degraded, each variant against its own targets), the clean
    test set (what the paper's Fig. 1 shows as "validation") and, when the runs held one out, the
    clean holdout split. ``histories`` is :func:`imlib.results.load_histories`.
    """
    check_frame(histories, "histories", ("variant", "seed", "epoch", "train_loss", "train_acc",
                                          "test_loss", "test_acc"))
    splits = {"train": "Training batches (degraded)", "test": "Test set (clean)"}
    if "holdout_acc" in histories and histories["holdout_acc"].notna().any():
        check_frame(histories, "histories", ("holdout_loss",))
        splits["holdout"] = "Holdout split (clean)"
    variants = _variants(histories, "histories")
    rows = (("loss", "Loss (nats)", 1.0), ("acc", "Top-1 accuracy (%)", _PERCENT))
    with style():
        fig = new_figure(4.2 * len(splits) + 1.6, 7.5)
        axes = fig.subplots(2, len(splits), sharex=True, sharey="row")
        for row, (metric, ylabel, scale) in zip(axes, rows, strict=True):
            for ax, (split, title) in zip(row, splits.items(), strict=True):
                for variant in variants:
                    _seed_lines(ax, histories[histories["variant"] == variant], "epoch",
                                f"{split}_{metric}", VARIANT_COLORS[variant],
                                VARIANT_LABELS[variant], scale=scale)
                ax.set(title=title if metric == "loss" else "", xlabel="Epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.5"
            row[0].set_ylabel(ylabel)
        handles = [Line2D([], [], color=VARIANT_COLORS[v], linewidth=2.2, label=VARIANT_LABELS[v])
                   for v in variants]
        fig.legend(handles=handles, title="Variant", loc="outside right upper", frameon=False)
        fig.suptitle(f"Training curves ({_seeds_note(histories)})", fontweight="bold")
    return fig


def clean_metrics_bars(clean: pd.DataFrame, *, num_classes: int,
                       show_paper: bool = True) -> Figure:
    """Fig. 2: top-1 and top-5 accuracy (%), cross-entropy loss (nats) and ECE on the clean test
    set, one bar per variant (±1 sd error bars when there are several seeds), values written.

    The ECE panel uses the paper's estimator (``ece_paper_script``), so that with ``show_paper``
    the paper's Table 1 (``PAPER_TABLE1``, CIFAR-100) is marked like for like on every panel.
    Top-5 is left out when ``num_classes <= 10``, where it says little.
    """
    check_frame(clean, "clean", CLEAN_COLUMNS)
    check_int(num_classes, "num_classes", 2)
    panels = [("top1", "Top-1 accuracy", "Accuracy (%)", _PERCENT, "{:.1f}"),
              ("top5", "Top-5 accuracy", "Accuracy (%)", _PERCENT, "{:.1f}"),
              ("nll", "Cross-entropy loss", "Loss (nats)", 1.0, "{:.3f}"),
              ("ece_paper_script", "ECE (paper's script)", "ECE", 1.0, "{:.3f}")]
    if num_classes <= 10:
        panels = [p for p in panels if p[0] != "top5"]
    summary = summarize(clean, ("variant",), tuple(p[0] for p in panels))
    variants = _variants(clean, "clean")  # the summary's rows, in this order
    multi_seed = clean["seed"].nunique() > 1
    x = np.arange(len(variants))
    with style():
        fig = new_figure(3.4 * len(panels) + 1.8, 4.4)
        axes = fig.subplots(1, len(panels))
        for ax, (metric, title, ylabel, scale, fmt) in zip(axes, panels, strict=True):
            mean = scale * summary[f"{metric}_mean"].to_numpy()
            std = (scale * summary[f"{metric}_std"].to_numpy() if multi_seed
                   else np.zeros_like(mean))
            ax.bar(x, mean, yerr=std if multi_seed else None, capsize=5, width=0.65,
                   color=[VARIANT_COLORS[v] for v in variants])
            for xi, m, s in zip(x, mean, std, strict=True):
                ax.annotate(fmt.format(m), (xi, m + s), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom",
                            fontsize="small", fontweight="bold")
            if show_paper:
                marked = [(xi, PAPER_TABLE1[v][metric]) for xi, v in zip(x, variants, strict=True)
                          if v in PAPER_TABLE1]
                ax.plot(*zip(*marked, strict=True), linestyle="none", marker="_",
                        markersize=34, markeredgewidth=2.5, color="black",
                        label="paper (CIFAR-100)")
            ax.set_xticks(x, [VARIANT_LABELS[v] for v in variants])
            ax.set(title=title, ylabel=ylabel)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.1)  # room for the labels
            ax.grid(axis="x", visible=False)
        if show_paper:
            fig.legend(handles=[Line2D([], [], linestyle="none", marker="_", markersize=20,
                                       markeredgewidth=2.5, color="black",
                                       label="paper's Table 1\n(CIFAR-100)")],
                       loc="outside right upper", frameon=False)
        fig.suptitle(f"Clean test set ({_seeds_note(clean, 'bars')})", fontweight="bold")
    return fig


# --- confidence and accuracy under degradation --------------------------------------------------


def confidence_vs_level(sweeps: pd.DataFrame, kind: str = "mosaic", subset: str = "class",
                        class_name: str = "apple", *, num_classes: int) -> Figure:
    """Fig. 3: mean true-class confidence (%) vs level of ``kind``, one line per variant, on the
    images of one class (``subset="class"``) or all test images, with the chance line. For the
    class, as in the paper, a row of small panels above follows each image of the sweeps'
    ``"image <i>"`` subsets on its own."""
    rows = _select(sweeps, subset, kind)
    ordered = sweeps["subset"].drop_duplicates()
    images = list(ordered[ordered.str.startswith("image ")]) if subset == "class" else []
    with style():
        fig = new_figure(max(7.0, 2.4 * len(images)), 7.5 if images else 4.5)
        top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.7]) if images else (None, fig)
        for number, (image, ax) in enumerate(
                zip(images, top.subplots(1, len(images), sharey=True) if images else [],
                    strict=True), start=1):
            _variant_lines(ax, _select(sweeps, image, kind), "confidence", num_classes)
            ax.set(title=f"Image {number} (test #{image.split()[1]})", ylim=(-1, 101),
                   ylabel="True-class confidence (%)" if number == 1 else "")
        ax = bottom.subplots()
        _variant_lines(ax, rows, "confidence", num_classes)
        ax.set(ylabel=_CONFIDENCE_LABEL,
               title=f"{KIND_LABELS.get(kind, kind)}: true-class confidence, "
                     f"{_subject(subset, class_name)}\n({_seeds_note(rows)})")
        ax.legend(loc="upper right")
    return fig


def confidence_heatmap(sweeps: pd.DataFrame, kind: str = "mosaic", subset: str = "class",
                       class_name: str = "apple") -> Figure:
    """Fig. 4: mean true-class confidence (%, over images and seeds) as a variant x level
    heatmap for ``kind``; row labels in the variants' colours."""
    rows = _select(sweeps, subset, kind)
    variants = _variants(rows, "sweeps")
    table = _PERCENT * (rows.groupby(["variant", "level"])["confidence"].mean()
                        .unstack("level").reindex(variants))
    with style():
        fig = new_figure(1.0 + 0.75 * table.shape[1], 1.6 + 0.55 * len(variants))
        ax = fig.subplots()
        sns.heatmap(table, ax=ax, vmin=0, vmax=_PERCENT, cmap="viridis", annot=True, fmt=".0f",
                    linewidths=0.5, annot_kws={"fontsize": "small"},
                    xticklabels=[f"{d:g}" for d in table.columns],
                    yticklabels=[VARIANT_LABELS[v] for v in variants],
                    cbar_kws={"label": "Mean true-class\nconfidence (%)"})
        for label, variant in zip(ax.get_yticklabels(), variants, strict=True):
            label.set(color=VARIANT_COLORS[variant], fontweight="bold", rotation=0)
        ax.set(xlabel=_LEVEL_LABEL, ylabel="",
               title=f"{KIND_LABELS.get(kind, kind)}: true-class confidence, "
                     f"{_subject(subset, class_name)} ({_seeds_note(rows, 'mean')})")
    return fig


def _panels_per_kind(rows: pd.DataFrame, y: str, ylabel: str, num_classes: int,
                     title: str) -> Figure:
    """One panel per kind (shared y-axis), one line per variant of ``y`` (%) against level."""
    kinds = _kinds(rows)
    with style():
        fig = new_figure(3.6 * len(kinds) + 1.6, 4.2)
        axes = np.atleast_1d(fig.subplots(1, len(kinds), sharey=True))
        for ax, kind in zip(axes, kinds, strict=True):
            _variant_lines(ax, rows[rows["kind"] == kind], y, num_classes)
            ax.set(title=KIND_LABELS.get(kind, kind))
        axes[0].set_ylabel(ylabel)
        handles = [ln for ln in axes[0].get_lines() if not ln.get_label().startswith("_")]
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
        fig.suptitle(f"{title} ({_seeds_note(rows)})", fontweight="bold")
    return fig


def confidence_per_kind(sweeps: pd.DataFrame, subset: str = "class", class_name: str = "apple",
                        *, num_classes: int) -> Figure:
    """Fig. 5: mean true-class confidence (%) vs level, one panel per kind (same y-range), one
    line per variant, with the chance line."""
    rows = _select(sweeps, subset)
    return _panels_per_kind(rows, "confidence", _CONFIDENCE_LABEL, num_classes,
                            f"True-class confidence per degradation, "
                            f"{_subject(subset, class_name)}")


def confidence_kinds_overlaid(sweeps: pd.DataFrame, variant: str = "im", subset: str = "class",
                              class_name: str = "apple", *, num_classes: int) -> Figure:
    """Fig. 5 in the paper's own view: one variant (IM, as the paper shows), one line per kind
    in the kind's colour and marker, with the chance line."""
    rows = _select(sweeps, subset)
    check_choice(variant, _variants(rows, "sweeps"), "variant")
    rows = rows[rows["variant"] == variant]
    with style():
        fig = new_figure(7, 4.5)
        ax = fig.subplots()
        for kind in _kinds(rows):
            _seed_lines(ax, rows[rows["kind"] == kind], "level", "confidence",
                        KIND_COLORS.get(kind, "0.2"), KIND_LABELS.get(kind, kind),
                        marker=KIND_MARKERS.get(kind, "o"))
        chance_line(ax, num_classes)
        ax.set(xlim=(-0.02, 1.02), xlabel=_LEVEL_LABEL, ylabel=_CONFIDENCE_LABEL,
               title=f"{VARIANT_LABELS[variant]}: true-class confidence per degradation, "
                     f"{_subject(subset, class_name)}\n({_seeds_note(rows)})")
        _fit_percent_axis(ax)
        ax.legend(loc="upper right")
    return fig


def confidence_vs_nmi(sweeps: pd.DataFrame, *, num_classes: int, max_eps: float = 0.9,
                      spread: str = "others", subset: str = "all",
                      class_name: str = "apple") -> Figure:
    """IM's claim: a model trained on IM targets reports the information left in its input.

    One panel per variant: mean true-class confidence (%) against mean NMI(clean, degraded),
    one point per (kind, level), averaged over images and seeds (colour: the variant, marker:
    the kind). Every panel carries IM's target, the confidence its loss is minimised at:
    ``1 - eps`` with ``eps = clamp(1 - NMI, 0, max_eps)`` (:func:`imlib.labels.im_eps`), plus
    ``eps / K`` with ``spread="all"`` (the public code's targets); and the chance line.
    """
    rows = _select(sweeps, subset)
    check_int(num_classes, "num_classes", 2)
    check_choice(spread, SPREADS, "spread")
    if isinstance(max_eps, bool) or not isinstance(max_eps, (int, float)) or not 0 <= max_eps < 1:
        raise ValueError(f"max_eps must be a float in [0, 1), got {max_eps!r}")
    points = rows.groupby(["variant", "kind", "level"], as_index=False)[
        ["confidence", "nmi"]].mean()
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    eps = im_eps(grid, max_eps)
    target = 1 - eps + (eps / num_classes if spread == "all" else 0)
    variants = _variants(rows, "sweeps")
    kinds = _kinds(rows)
    with style():
        fig = new_figure(3.8 * len(variants) + 1.8, 4.4)
        axes = np.atleast_1d(fig.subplots(1, len(variants), sharey=True))
        for ax, variant in zip(axes, variants, strict=True):
            ax.plot(grid.numpy(), _PERCENT * target.numpy(), color="black", linewidth=1.5,
                    label=TARGET_LABEL)
            chance_line(ax, num_classes)
            for kind in kinds:
                p = points[(points["variant"] == variant) & (points["kind"] == kind)]
                ax.plot(p["nmi"], _PERCENT * p["confidence"], linestyle="none",
                        marker=KIND_MARKERS.get(kind, "o"), markersize=6, alpha=0.85,
                        color=VARIANT_COLORS[variant], label=KIND_LABELS.get(kind, kind))
            ax.set(xlim=(-0.02, 1.02), ylim=(-1, 101), xlabel="Mean NMI(clean, degraded)",
                   title=VARIANT_LABELS[variant])
            ax.title.set_color(VARIANT_COLORS[variant])
        axes[0].set_ylabel(_CONFIDENCE_LABEL)
        handles = [Line2D([], [], color="black", linewidth=1.5, label=TARGET_LABEL),
                   Line2D([], [], color=REFERENCE_COLOR, linestyle="--", label=CHANCE_LABEL)]
        handles += [Line2D([], [], linestyle="none", color="0.3", marker=KIND_MARKERS.get(k, "o"),
                           label=KIND_LABELS.get(k, k)) for k in kinds]
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
        fig.suptitle(f"True-class confidence against information kept, "
                     f"{_subject(subset, class_name)}\n(one point per kind and level, "
                     f"{_seeds_note(rows, 'mean')}; IM target with spread {spread!r})",
                     fontweight="bold")
    return fig


def accuracy_vs_level(sweeps: pd.DataFrame, *, num_classes: int, order: str = "degrade_first",
                      subset: str = "all", class_name: str = "apple") -> Figure:
    """Top-1 accuracy (%) vs level, one panel per kind, one line per variant, with the chance
    line; ``order`` picks the evaluation order (``imlib.results.ORDERS``)."""
    rows = _select(sweeps, subset, order=order)
    return _panels_per_kind(rows, "accuracy", "Top-1 accuracy (%)", num_classes,
                            f"Accuracy per degradation, {_subject(subset, class_name)}, "
                            f"order {order!r}")


# --- calibration and information ----------------------------------------------------------------


def reliability_diagram(reliability: pd.DataFrame, condition: str = "clean") -> Figure:
    """Accuracy (%) per top-1 confidence bin against the diagonal, one column per variant, seeds
    pooled (bin counts summed); the gap to the diagonal hatched; below, the images per bin.
    Each title gives the ECE of the pooled table, ``sum_b n_b / N |acc_b - conf_b|``."""
    check_frame(reliability, "reliability", RELIABILITY_COLUMNS)
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
    with style():
        fig = new_figure(3.6 * len(variants), 5.6)
        axes = fig.subplots(2, len(variants), sharex=True, sharey="row", squeeze=False,
                            height_ratios=(3, 1))
        for top, bottom, variant in zip(axes[0], axes[1], variants, strict=True):
            t = pooled[(pooled["variant"] == variant) & (pooled["count"] > 0)]
            accuracy, confidence = t["correct"] / t["count"], t["confident"] / t["count"]
            ece = float((t["count"] / t["count"].sum() * (accuracy - confidence).abs()).sum())
            centre = _PERCENT * (t["lower"] + t["upper"]) / 2
            width = _PERCENT * (t["upper"] - t["lower"])
            top.bar(centre, _PERCENT * accuracy, width=width, color=VARIANT_COLORS[variant],
                    edgecolor="white")
            top.bar(centre, _PERCENT * (confidence - accuracy), bottom=_PERCENT * accuracy,
                    width=width, fill=False, edgecolor=GAP_COLOR, hatch="xx", linewidth=0.5)
            top.plot([0, _PERCENT], [0, _PERCENT], linestyle="--", color=REFERENCE_COLOR)
            top.set(xlim=(0, _PERCENT), ylim=(0, _PERCENT),
                    title=f"{VARIANT_LABELS[variant]} (ECE {ece:.4f})")
            bottom.bar(centre, t["count"], width=width, color=VARIANT_COLORS[variant],
                       alpha=0.6, edgecolor="white")
            bottom.set(xlabel="Confidence (top-1, %)")
        axes[0, 0].set_ylabel("Accuracy (%)")
        axes[1, 0].set_ylabel("Images")
        handles = [Line2D([], [], linestyle="--", color=REFERENCE_COLOR,
                          label="perfect calibration"),
                   Patch(facecolor="0.6", label="accuracy per bin (variant colour)"),
                   Patch(fill=False, edgecolor=GAP_COLOR, hatch="xx",
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
    with style():
        fig = new_figure(7, 4.5)
        ax = fig.subplots()
        for kind in _kinds(table):
            t = table[table["kind"] == kind].sort_values("level")
            ax.plot(t["level"], t["nmi"], color=KIND_COLORS.get(kind, "0.2"),
                    label=KIND_LABELS.get(kind, kind), marker=KIND_MARKERS.get(kind, "o"),
                    markersize=5, linewidth=2)
        ax.set(xlim=(-0.02, 1.02), ylim=(0, 1.02), xlabel=_LEVEL_LABEL,
               ylabel="Mean NMI(clean, degraded)",
               title="Information kept by each degradation (test split, 64 bins)")
        right = ax.secondary_yaxis("right", functions=(lambda y: 1 - y, lambda e: 1 - e))
        right.set_ylabel("IM smoothing ε = 1 − NMI")
        ax.legend(title="Degradation", loc="upper right")
    return fig
