"""The study's figures: each a function of saved result tables (DataFrames in, a matplotlib
Figure out) or, for the image grids, of plain tensors. Computing lives in :mod:`imlib.evaluate`;
:mod:`imlib.results` writes and reads the tables used here.

Every figure follows the conventions of :mod:`imlib.figure_parts` (one palette, percent axes,
titles that name the data, legends outside the axes, seeds drawn thin).

Figures are plain ``matplotlib.figure.Figure`` objects, not registered with pyplot: a notebook
shows one by ending a cell with it, and :func:`save_figure` writes it.

- :func:`training_curves`: Fig. 1, loss and accuracy per epoch: training batches, test set and
  (when the runs had one) the holdout split.
- :func:`variant_targets`: the four variants' targets for one training image, with their
  entropies (the floor of each one's loss).
- :func:`clean_metrics_bars`: Fig. 2, the clean test set's metrics, the paper's Table 1 marked.
- :func:`confidence_vs_level`: Fig. 3, true-class confidence vs the level of one kind: each
  followed image, their mean ± sd, the class's mean, and the degraded image at a few levels.
- :func:`confidence_heatmap`: Fig. 4, the same as a variant x level heatmap.
- :func:`confidence_per_kind`: Fig. 5, one panel per kind, every variant.
- :func:`confidence_kinds_overlaid`: Fig. 5 in the paper's own view, one variant, kinds overlaid.
- :func:`accuracy_vs_level`: accuracy vs level, one panel per kind.
- :func:`reliability_diagram`: accuracy and count per confidence bin, per variant.

The figures of IM's claim and of pixel against class information are
:mod:`imlib.information_plots`; the pieces all figures share, :mod:`imlib.figure_parts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from imlib._checks import check_choice, check_class_names, check_int
from imlib.degradations import DegradationConfig, degrade
from imlib.labels import target_entropy
from imlib.results import (
    CLEAN_COLUMNS,
    RELIABILITY_COLUMNS,
    check_frame,
    summarize,
)
from imlib.paper import PAPER_TABLE1
from imlib.variants import VARIANTS
from imlib.style import (GAP_COLOR, KIND_COLORS, KIND_LABELS, KIND_MARKERS,
                         REFERENCE_COLOR, VARIANT_COLORS, VARIANT_LABELS,
                         chance_line, new_figure, percent_axis, style)

from imlib.figure_parts import (PERCENT, LEVEL_LABEL, CONFIDENCE_LABEL, variants_in, kinds_in,
                                seeds_note, select_rows,
                                subject_text, seed_lines,
                                variant_lines, set_title,
                                figure_legend)

__all__ = [
    "training_curves",
    "variant_targets",
    "clean_metrics_bars",
    "confidence_vs_level",
    "confidence_heatmap",
    "confidence_per_kind",
    "confidence_kinds_overlaid",
    "accuracy_vs_level",
    "reliability_diagram",
]

_STRIP_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # Fig. 3's strip of the degraded image


_ALL_CLASSES_UP_TO = 12  # variant_targets names every class up to this many


def training_curves(histories: pd.DataFrame, *, dataset: str, protocol: str) -> Figure:
    """Fig. 1: loss (nats) and top-1 accuracy (%) per epoch, one line per variant, in one column
    per split: the training batches (degraded, each variant against its own targets), the clean
    test set (what the paper's Fig. 1 shows as "validation") and, when the runs held one out, the
    clean holdout split. ``histories`` is :func:`imlib.histories.load_histories`.
    """
    check_frame(histories, "histories", ("variant", "seed", "epoch", "train_loss", "train_acc",
                                          "test_loss", "test_acc"))
    splits = {"train": "Training batches (degraded)", "test": "Test set (clean)"}
    if "holdout_acc" in histories and histories["holdout_acc"].notna().any():
        check_frame(histories, "histories", ("holdout_loss",))
        splits["holdout"] = "Holdout split (clean)"
    variants = variants_in(histories, "histories")
    rows = (("loss", "Loss (nats)", 1.0), ("acc", "Top-1 accuracy (%)", PERCENT))
    with style():
        fig = new_figure(4.2 * len(splits) + 1.6, 7.5)
        axes = fig.subplots(2, len(splits), sharex=True, sharey="row")
        for row, (metric, ylabel, scale) in zip(axes, rows, strict=True):
            for ax, (split, title) in zip(row, splits.items(), strict=True):
                for variant in variants:
                    seed_lines(ax, histories[histories["variant"] == variant], "epoch",
                               f"{split}_{metric}", VARIANT_COLORS[variant],
                               VARIANT_LABELS[variant], scale=scale)
                ax.set(title=title if metric == "loss" else "", xlabel="Epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.5"
            row[0].set_ylabel(ylabel)
        percent_axis(axes[1][0])
        handles = [Line2D([], [], color=VARIANT_COLORS[v], linewidth=2.2, label=VARIANT_LABELS[v])
                   for v in variants]
        fig.legend(handles=handles, title="Variant", loc="outside right upper", frameon=False)
        set_title(fig, f"Training curves ({seeds_note(histories)})", dataset, protocol)
    return fig


def variant_targets(targets: Mapping[str, Tensor], class_names: Sequence[str], label: int, *,
                    dataset: str, protocol: str) -> Figure:
    """The soft target (%) each variant gives one training image, one panel per variant, with
    the mass on the true class and the target's entropy H(t) in the title: the lowest loss that
    target allows. ``targets`` maps variant names to rows (K,) summing to 1."""
    check_class_names(class_names)
    k = len(class_names)
    check_int(label, "label", 0)
    if label >= k:
        raise ValueError(f"label must be a class index below {k}, got {label}")
    if not isinstance(targets, Mapping) or not targets:
        raise ValueError("targets must map variant names to one target row (K,) each")
    unknown = sorted(set(targets) - set(VARIANTS))
    if unknown:
        raise ValueError(f"targets holds unknown variant(s) {unknown}; known: {VARIANTS}")
    rows = {v: targets[v] for v in VARIANTS if v in targets}
    for variant, row in rows.items():
        if not isinstance(row, Tensor) or tuple(row.shape) != (k,):
            shape = tuple(row.shape) if isinstance(row, Tensor) else type(row).__name__
            raise ValueError(f"targets[{variant!r}] must be a tensor of shape ({k},), got {shape}")
    table = torch.stack(list(rows.values())).detach().cpu().double()
    entropy = target_entropy(table)
    positions = np.arange(k)
    with style():
        fig = new_figure(3.2 * len(rows) + 0.4, 3.8)
        axes = np.atleast_1d(fig.subplots(1, len(rows), sharey=True))
        for ax, variant, row, h in zip(axes, rows, table, entropy.tolist(), strict=True):
            ax.bar(positions, PERCENT * row.numpy(), width=0.8, color=VARIANT_COLORS[variant])
            ax.axvspan(label - 0.5, label + 0.5, color="gold", alpha=0.25, zorder=0)
            shown = positions if k <= _ALL_CLASSES_UP_TO else [label]
            ax.set_xticks(shown, [class_names[c] for c in shown], rotation=45, ha="right",
                          fontsize=8)
            ax.set_title(f"{VARIANT_LABELS[variant]}: {PERCENT * float(row[label]):.0f} % true"
                         f"\nH(t) = {h:.2f} nats", color=VARIANT_COLORS[variant])
            ax.grid(axis="x", visible=False)
            percent_axis(ax)
        axes[0].set_ylabel("Target probability (%)")
        set_title(fig, f"The targets of one training image (true class '{class_names[label]}', "
                    f"shaded); a uniform prediction's loss is ln K = {np.log(k):.2f} nats",
               dataset, protocol)
    return fig


def clean_metrics_bars(clean: pd.DataFrame, *, num_classes: int, dataset: str,
                       protocol: str) -> Figure:
    """Fig. 2: top-1 and top-5 accuracy (%), cross-entropy loss (nats) and ECE on the clean test
    set, one bar per variant (±1 sd error bars when there are several seeds), values written.

    The ECE panel uses the paper's estimator (``ece_paper_script``), so that on CIFAR-100 runs
    the paper's Table 1 (``PAPER_TABLE1``) is marked like for like on every panel; on another
    data set its numbers would compare nothing and are left out. Top-5 is left out when
    ``num_classes <= 10``, where it says little.
    """
    check_frame(clean, "clean", CLEAN_COLUMNS)
    check_int(num_classes, "num_classes", 2)
    show_paper = dataset == "cifar100"
    panels = [("top1", "Top-1 accuracy", "Accuracy (%)", PERCENT, "{:.1f}"),
              ("top5", "Top-5 accuracy", "Accuracy (%)", PERCENT, "{:.1f}"),
              ("nll", "Cross-entropy loss", "Loss (nats)", 1.0, "{:.3f}"),
              ("ece_paper_script", "ECE (paper's script)", "ECE", 1.0, "{:.3f}")]
    if num_classes <= 10:
        panels = [p for p in panels if p[0] != "top5"]
    summary = summarize(clean, ("variant",), tuple(p[0] for p in panels))
    variants = variants_in(clean, "clean")  # the summary's rows, in this order
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
            if scale == PERCENT:
                percent_axis(ax)
            else:
                ax.set_ylim(0, ax.get_ylim()[1] * 1.1)  # room for the labels
            ax.grid(axis="x", visible=False)
        if show_paper:
            fig.legend(handles=[Line2D([], [], linestyle="none", marker="_", markersize=20,
                                       markeredgewidth=2.5, color="black",
                                       label="paper's Table 1\n(CIFAR-100)")],
                       loc="outside right upper", frameon=False)
        set_title(fig, f"Clean test set ({seeds_note(clean, 'bars')})", dataset, protocol)
    return fig


# --- confidence and accuracy under degradation --------------------------------------------------


def _image_band(ax: Axes, sweeps: pd.DataFrame, images: Sequence[str], kind: str,
                num_classes: int) -> None:
    """Per variant, the mean over the followed ``images`` (each first averaged over seeds) of
    the true-class confidence, with a band of ± 1 sd over the images (the paper's Fig. 3)."""
    rows = pd.concat([select_rows(sweeps, image, kind) for image in images])
    per_image = rows.groupby(["variant", "subset", "level"])["confidence"].mean()
    stats = per_image.groupby(["variant", "level"]).agg(["mean", "std"])
    for variant in variants_in(rows, "sweeps"):
        s = stats.loc[variant].sort_index()
        color = VARIANT_COLORS[variant]
        ax.plot(s.index, PERCENT * s["mean"], color=color, linewidth=2.2, marker="o",
                markersize=5, label=VARIANT_LABELS[variant])
        if len(images) > 1:
            ax.fill_between(s.index, PERCENT * (s["mean"] - s["std"]),
                            PERCENT * (s["mean"] + s["std"]), color=color, alpha=0.18,
                            linewidth=0, label=f"_band {variant}")
    chance_line(ax, num_classes)
    ax.set(xlim=(-0.02, 1.02), xlabel=LEVEL_LABEL)
    percent_axis(ax)


def _strip(fig: Figure, image: Tensor, kind: str, degradation: DegradationConfig,
           title: str) -> None:
    """``image`` degraded by ``kind`` at each of ``_STRIP_LEVELS``, in a row of thumbnails (the
    randomness of diffusion and dropout drawn with seed 0)."""
    image = image.detach().cpu()
    image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    axes = fig.subplots(1, len(_STRIP_LEVELS))
    for ax, level in zip(axes, _STRIP_LEVELS, strict=True):
        degraded = degrade(image[None], kind, level, torch.Generator().manual_seed(0),
                           degradation)[0]
        pixels = degraded.permute(1, 2, 0).numpy()
        ax.imshow(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, cmap="gray", vmin=0,
                  vmax=1, interpolation="nearest")
        ax.set_title(f"d = {level:.1f}", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)


def confidence_vs_level(sweeps: pd.DataFrame, kind: str = "mosaic", subset: str = "class",
                        class_name: str = "apple", *, num_classes: int, dataset: str,
                        protocol: str, test_images: Tensor | None = None,
                        degradation: DegradationConfig | None = None) -> Figure:
    """Fig. 3: mean true-class confidence (%) vs level of ``kind``, one line per variant, on the
    images of one class (``subset="class"``) or all test images, with the chance line.

    For the class, the paper's composite: a row of small panels follows each image of the
    sweeps' ``"image <i>"`` subsets on its own; below, their mean with a band of ± 1 sd over
    them, beside the mean over every image of the class; and, given ``test_images`` (the test
    split the indices refer to) and the sweeps' ``degradation`` constants, a strip of the first
    followed image degraded at a few levels."""
    rows = select_rows(sweeps, subset, kind)
    ordered = sweeps["subset"].drop_duplicates()
    images = list(ordered[ordered.str.startswith("image ")]) if subset == "class" else []
    if test_images is not None and degradation is None:
        raise ValueError("degradation is required with test_images: pass the sweeps' constants "
                         "(e.g. the evaluation settings' degradation)")
    title = (f"{KIND_LABELS.get(kind, kind)}: true-class confidence, "
             f"{subject_text(subset, class_name)}")
    with style():
        if not images:
            fig = new_figure(7.5, 4.5)
            ax = fig.subplots()
            variant_lines(ax, rows, "confidence", num_classes)
            ax.set(ylabel=CONFIDENCE_LABEL, title=seeds_note(rows))
            figure_legend(fig, ax)
            set_title(fig, title, dataset, protocol)
            return fig
        strip = test_images is not None
        fig = new_figure(max(11.0, 2.3 * len(images) + 1.8), 10.0 if strip else 7.8)
        parts = fig.subfigures(3 if strip else 2, 1,
                               height_ratios=[1, 1.35, 0.8] if strip else [1, 1.35])
        for number, (image, ax) in enumerate(
                zip(images, parts[0].subplots(1, len(images), sharey=True), strict=True),
                start=1):
            variant_lines(ax, select_rows(sweeps, image, kind), "confidence", num_classes)
            ax.set(title=f"Image {number} (test #{image.split()[1]})",
                   ylabel="True-class confidence (%)" if number == 1 else "")
            ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])  # narrow panels: labels apart
        band, mean = parts[1].subplots(1, 2, sharey=True)
        _image_band(band, sweeps, images, kind, num_classes)
        spread = " (band: ± 1 sd over them)" if len(images) > 1 else ""
        band.set(ylabel=CONFIDENCE_LABEL,
                 title=f"Mean of the {len(images)} images above{spread}")
        variant_lines(mean, rows, "confidence", num_classes)
        mean.set(title=f"Every image of {subject_text(subset, class_name)} "
                       f"({int(rows['n'].iloc[0])}; {seeds_note(rows)})")
        if strip:
            first = int(images[0].split()[1])
            _strip(parts[2], test_images[first], kind, degradation,
                   f"Image 1 (test #{first}) under {KIND_LABELS.get(kind, kind).lower()}")
        figure_legend(fig, mean)
        set_title(fig, title, dataset, protocol)
    return fig


def confidence_heatmap(sweeps: pd.DataFrame, kind: str = "mosaic", subset: str = "class",
                       class_name: str = "apple", *, dataset: str, protocol: str) -> Figure:
    """Fig. 4: mean true-class confidence (%, over images and seeds) as a variant x level
    heatmap for ``kind``; row labels in the variants' colours."""
    rows = select_rows(sweeps, subset, kind)
    variants = variants_in(rows, "sweeps")
    table = PERCENT * (rows.groupby(["variant", "level"])["confidence"].mean()
                        .unstack("level").reindex(variants))
    with style():
        fig = new_figure(1.0 + 0.75 * table.shape[1], 1.6 + 0.55 * len(variants))
        ax = fig.subplots()
        sns.heatmap(table, ax=ax, vmin=0, vmax=PERCENT, cmap="viridis", annot=True, fmt=".0f",
                    linewidths=0.5, annot_kws={"fontsize": "small"},
                    xticklabels=[f"{d:g}" for d in table.columns],
                    yticklabels=[VARIANT_LABELS[v] for v in variants],
                    cbar_kws={"label": "Mean true-class\nconfidence (%)"})
        for label, variant in zip(ax.get_yticklabels(), variants, strict=True):
            label.set(color=VARIANT_COLORS[variant], fontweight="bold", rotation=0)
        ax.set(xlabel=LEVEL_LABEL, ylabel="")
        set_title(fig, f"{KIND_LABELS.get(kind, kind)}: true-class confidence, "
                    f"{subject_text(subset, class_name)} ({seeds_note(rows, 'mean')})",
               dataset, protocol)
    return fig


def _panels_per_kind(rows: pd.DataFrame, y: str, ylabel: str, num_classes: int,
                     title: str, dataset: str, protocol: str) -> Figure:
    """One panel per kind (shared y-axis), one line per variant of ``y`` (%) against level."""
    kinds = kinds_in(rows)
    with style():
        fig = new_figure(3.6 * len(kinds) + 1.6, 4.2)
        axes = np.atleast_1d(fig.subplots(1, len(kinds), sharey=True))
        for ax, kind in zip(axes, kinds, strict=True):
            variant_lines(ax, rows[rows["kind"] == kind], y, num_classes)
            ax.set(title=KIND_LABELS.get(kind, kind))
        axes[0].set_ylabel(ylabel)
        figure_legend(fig, axes[0])
        set_title(fig, f"{title} ({seeds_note(rows)})", dataset, protocol)
    return fig


def confidence_per_kind(sweeps: pd.DataFrame, subset: str = "class", class_name: str = "apple",
                        *, num_classes: int, dataset: str, protocol: str) -> Figure:
    """Fig. 5: mean true-class confidence (%) vs level, one panel per kind (same y-range), one
    line per variant, with the chance line."""
    rows = select_rows(sweeps, subset)
    return _panels_per_kind(rows, "confidence", CONFIDENCE_LABEL, num_classes,
                            f"True-class confidence per degradation, "
                            f"{subject_text(subset, class_name)}", dataset, protocol)


def confidence_kinds_overlaid(sweeps: pd.DataFrame, variant: str = "im", subset: str = "class",
                              class_name: str = "apple", *, num_classes: int, dataset: str,
                              protocol: str) -> Figure:
    """Fig. 5 in the paper's own view: one variant (IM, as the paper shows), one line per kind
    in the kind's colour and marker, with the chance line."""
    rows = select_rows(sweeps, subset)
    check_choice(variant, variants_in(rows, "sweeps"), "variant")
    rows = rows[rows["variant"] == variant]
    with style():
        fig = new_figure(8, 4.5)
        ax = fig.subplots()
        for kind in kinds_in(rows):
            seed_lines(ax, rows[rows["kind"] == kind], "level", "confidence",
                       KIND_COLORS.get(kind, "0.2"), KIND_LABELS.get(kind, kind),
                       marker=KIND_MARKERS.get(kind, "o"))
        chance_line(ax, num_classes)
        ax.set(xlim=(-0.02, 1.02), xlabel=LEVEL_LABEL, ylabel=CONFIDENCE_LABEL,
               title=seeds_note(rows))
        percent_axis(ax)
        figure_legend(fig, ax, title="Degradation")
        set_title(fig, f"{VARIANT_LABELS[variant]}: true-class confidence per degradation, "
                    f"{subject_text(subset, class_name)}", dataset, protocol)
    return fig


def accuracy_vs_level(sweeps: pd.DataFrame, *, num_classes: int, dataset: str, protocol: str,
                      order: str = "degrade_first", subset: str = "all",
                      class_name: str = "apple") -> Figure:
    """Top-1 accuracy (%) vs level, one panel per kind, one line per variant, with the chance
    line; ``order`` picks the evaluation order (``imlib.results.ORDERS``)."""
    rows = select_rows(sweeps, subset, order=order)
    return _panels_per_kind(rows, "accuracy", "Top-1 accuracy (%)", num_classes,
                            f"Accuracy per degradation, {subject_text(subset, class_name)}, "
                            f"order {order!r}", dataset, protocol)


# --- calibration and information ----------------------------------------------------------------


def reliability_diagram(reliability: pd.DataFrame, condition: str = "clean", *, dataset: str,
                        protocol: str) -> Figure:
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
    variants = variants_in(rows, "reliability")
    n_seeds = rows["seed"].nunique()
    with style():
        fig = new_figure(3.6 * len(variants), 5.6)
        axes = fig.subplots(2, len(variants), sharex=True, sharey="row", squeeze=False,
                            height_ratios=(3, 1))
        for top, bottom, variant in zip(axes[0], axes[1], variants, strict=True):
            t = pooled[(pooled["variant"] == variant) & (pooled["count"] > 0)]
            accuracy, confidence = t["correct"] / t["count"], t["confident"] / t["count"]
            ece = float((t["count"] / t["count"].sum() * (accuracy - confidence).abs()).sum())
            centre = PERCENT * (t["lower"] + t["upper"]) / 2
            width = PERCENT * (t["upper"] - t["lower"])
            top.bar(centre, PERCENT * accuracy, width=width, color=VARIANT_COLORS[variant],
                    edgecolor="white")
            top.bar(centre, PERCENT * (confidence - accuracy), bottom=PERCENT * accuracy,
                    width=width, fill=False, edgecolor=GAP_COLOR, hatch="xx", linewidth=0.5)
            top.plot([0, PERCENT], [0, PERCENT], linestyle="--", color=REFERENCE_COLOR)
            top.set(xlim=(0, PERCENT), ylim=(0, PERCENT),
                    title=f"{VARIANT_LABELS[variant]} (ECE {ece:.3f})")
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
        set_title(fig, f"Reliability, {where}{pooled_note}", dataset, protocol)
    return fig

