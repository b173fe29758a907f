"""The study's figures: each a function of saved result tables (DataFrames in, a matplotlib
Figure out) or, for the image grids, of plain tensors. Computing lives in :mod:`imlib.evaluate`;
:mod:`imlib.results` writes and reads the tables used here.

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
- :func:`confidence_vs_nmi`: IM's claim, confidence against NMI with the target ``1 - eps(NMI)``.
- :func:`accuracy_vs_level`: accuracy vs level, one panel per kind.
- :func:`reliability_diagram`: accuracy and count per confidence bin, per variant.
- :func:`nmi_vs_level`: mean NMI(clean, degraded) per kind (a teaching plot).
- :func:`class_information_vs_nmi`: pixel information (NMI) against class information, per
  kind and level.
- :func:`training_draws_figure`: the levels and IM's eps over a sample of training draws.
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
from imlib.degradations import KINDS, DegradationConfig, degrade
from imlib.labels import im_eps, target_entropy, true_class_target
from imlib.results import (
    CLEAN_COLUMNS,
    ORDERS,
    RELIABILITY_COLUMNS,
    SWEEP_COLUMNS,
    EvalSettings,
    check_frame,
    summarize,
)
from imlib.paper import PAPER_TABLE1
from imlib.class_information import CLASS_INFORMATION_COLUMNS
from imlib.variants import VARIANTS
from imlib.style import (CHANCE_LABEL, GAP_COLOR, KIND_COLORS, KIND_LABELS, KIND_MARKERS,
                         REFERENCE_COLOR, TARGET_LABEL, VARIANT_COLORS, VARIANT_LABELS,
                         chance_line, new_figure, percent_axis, source_line, style)

__all__ = [
    "training_curves",
    "variant_targets",
    "clean_metrics_bars",
    "confidence_vs_level",
    "confidence_heatmap",
    "confidence_per_kind",
    "confidence_kinds_overlaid",
    "confidence_vs_nmi",
    "accuracy_vs_level",
    "reliability_diagram",
    "nmi_vs_level",
    "class_information_vs_nmi",
    "training_draws_figure",
]

_PERCENT = 100.0
_LEVEL_LABEL = "Degradation level d"
_CONFIDENCE_LABEL = "Mean true-class confidence (%)"
_STRIP_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # Fig. 3's strip of the degraded image
_ALL_CLASSES_UP_TO = 12  # variant_targets names every class up to this many


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


def _check_settings(settings: EvalSettings) -> None:
    if not isinstance(settings, EvalSettings):
        raise ValueError("settings must be the evaluation's imlib.results.EvalSettings "
                         f"(EvalResults.eval_settings), got {type(settings).__name__}")


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


def _variant_lines(ax: Axes, rows: pd.DataFrame, y: str, num_classes: int) -> None:
    """One line per variant of ``y`` (percent) against level, the chance line, a 0-100 % axis."""
    for variant in _variants(rows, "sweeps"):
        _seed_lines(ax, rows[rows["variant"] == variant], "level", y, VARIANT_COLORS[variant],
                    VARIANT_LABELS[variant], marker="o")
    chance_line(ax, num_classes)
    ax.set(xlim=(-0.02, 1.02), xlabel=_LEVEL_LABEL)
    percent_axis(ax)


def _title(fig: Figure, title: str, dataset: str, protocol: str | None) -> None:
    """The figure's bold title, its last line naming the data set (and protocol) drawn."""
    fig.suptitle(f"{title}\n{source_line(dataset, protocol)}", fontweight="bold")


def _legend(fig: Figure, ax: Axes, title: str | None = None) -> None:
    """One legend of the labelled lines of ``ax``, outside the axes, on the figure's right."""
    handles = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    fig.legend(handles=handles, title=title, loc="outside right upper", frameon=False)


# --- training and the clean test set ------------------------------------------------------------


def training_curves(histories: pd.DataFrame, *, dataset: str, protocol: str) -> Figure:
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
        percent_axis(axes[1][0])
        handles = [Line2D([], [], color=VARIANT_COLORS[v], linewidth=2.2, label=VARIANT_LABELS[v])
                   for v in variants]
        fig.legend(handles=handles, title="Variant", loc="outside right upper", frameon=False)
        _title(fig, f"Training curves ({_seeds_note(histories)})", dataset, protocol)
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
            ax.bar(positions, _PERCENT * row.numpy(), width=0.8, color=VARIANT_COLORS[variant])
            ax.axvspan(label - 0.5, label + 0.5, color="gold", alpha=0.25, zorder=0)
            shown = positions if k <= _ALL_CLASSES_UP_TO else [label]
            ax.set_xticks(shown, [class_names[c] for c in shown], rotation=45, ha="right",
                          fontsize=8)
            ax.set_title(f"{VARIANT_LABELS[variant]}: {_PERCENT * float(row[label]):.0f} % true"
                         f"\nH(t) = {h:.2f} nats", color=VARIANT_COLORS[variant])
            ax.grid(axis="x", visible=False)
            percent_axis(ax)
        axes[0].set_ylabel("Target probability (%)")
        _title(fig, f"The targets of one training image (true class '{class_names[label]}', "
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
            if scale == _PERCENT:
                percent_axis(ax)
            else:
                ax.set_ylim(0, ax.get_ylim()[1] * 1.1)  # room for the labels
            ax.grid(axis="x", visible=False)
        if show_paper:
            fig.legend(handles=[Line2D([], [], linestyle="none", marker="_", markersize=20,
                                       markeredgewidth=2.5, color="black",
                                       label="paper's Table 1\n(CIFAR-100)")],
                       loc="outside right upper", frameon=False)
        _title(fig, f"Clean test set ({_seeds_note(clean, 'bars')})", dataset, protocol)
    return fig


# --- confidence and accuracy under degradation --------------------------------------------------


def _image_band(ax: Axes, sweeps: pd.DataFrame, images: Sequence[str], kind: str,
                num_classes: int) -> None:
    """Per variant, the mean over the followed ``images`` (each first averaged over seeds) of
    the true-class confidence, with a band of ± 1 sd over the images (the paper's Fig. 3)."""
    rows = pd.concat([_select(sweeps, image, kind) for image in images])
    per_image = rows.groupby(["variant", "subset", "level"])["confidence"].mean()
    stats = per_image.groupby(["variant", "level"]).agg(["mean", "std"])
    for variant in _variants(rows, "sweeps"):
        s = stats.loc[variant].sort_index()
        color = VARIANT_COLORS[variant]
        ax.plot(s.index, _PERCENT * s["mean"], color=color, linewidth=2.2, marker="o",
                markersize=5, label=VARIANT_LABELS[variant])
        if len(images) > 1:
            ax.fill_between(s.index, _PERCENT * (s["mean"] - s["std"]),
                            _PERCENT * (s["mean"] + s["std"]), color=color, alpha=0.18,
                            linewidth=0, label=f"_band {variant}")
    chance_line(ax, num_classes)
    ax.set(xlim=(-0.02, 1.02), xlabel=_LEVEL_LABEL)
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
    rows = _select(sweeps, subset, kind)
    ordered = sweeps["subset"].drop_duplicates()
    images = list(ordered[ordered.str.startswith("image ")]) if subset == "class" else []
    if test_images is not None and degradation is None:
        raise ValueError("degradation is required with test_images: pass the sweeps' constants "
                         "(e.g. the evaluation settings' degradation)")
    title = (f"{KIND_LABELS.get(kind, kind)}: true-class confidence, "
             f"{_subject(subset, class_name)}")
    with style():
        if not images:
            fig = new_figure(7.5, 4.5)
            ax = fig.subplots()
            _variant_lines(ax, rows, "confidence", num_classes)
            ax.set(ylabel=_CONFIDENCE_LABEL, title=_seeds_note(rows))
            _legend(fig, ax)
            _title(fig, title, dataset, protocol)
            return fig
        strip = test_images is not None
        fig = new_figure(max(11.0, 2.3 * len(images) + 1.8), 10.0 if strip else 7.8)
        parts = fig.subfigures(3 if strip else 2, 1,
                               height_ratios=[1, 1.35, 0.8] if strip else [1, 1.35])
        for number, (image, ax) in enumerate(
                zip(images, parts[0].subplots(1, len(images), sharey=True), strict=True),
                start=1):
            _variant_lines(ax, _select(sweeps, image, kind), "confidence", num_classes)
            ax.set(title=f"Image {number} (test #{image.split()[1]})",
                   ylabel="True-class confidence (%)" if number == 1 else "")
            ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])  # narrow panels: labels apart
        band, mean = parts[1].subplots(1, 2, sharey=True)
        _image_band(band, sweeps, images, kind, num_classes)
        spread = " (band: ± 1 sd over them)" if len(images) > 1 else ""
        band.set(ylabel=_CONFIDENCE_LABEL,
                 title=f"Mean of the {len(images)} images above{spread}")
        _variant_lines(mean, rows, "confidence", num_classes)
        mean.set(title=f"Every image of {_subject(subset, class_name)} "
                       f"({int(rows['n'].iloc[0])}; {_seeds_note(rows)})")
        if strip:
            first = int(images[0].split()[1])
            _strip(parts[2], test_images[first], kind, degradation,
                   f"Image 1 (test #{first}) under {KIND_LABELS.get(kind, kind).lower()}")
        _legend(fig, mean)
        _title(fig, title, dataset, protocol)
    return fig


def confidence_heatmap(sweeps: pd.DataFrame, kind: str = "mosaic", subset: str = "class",
                       class_name: str = "apple", *, dataset: str, protocol: str) -> Figure:
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
        ax.set(xlabel=_LEVEL_LABEL, ylabel="")
        _title(fig, f"{KIND_LABELS.get(kind, kind)}: true-class confidence, "
                    f"{_subject(subset, class_name)} ({_seeds_note(rows, 'mean')})",
               dataset, protocol)
    return fig


def _panels_per_kind(rows: pd.DataFrame, y: str, ylabel: str, num_classes: int,
                     title: str, dataset: str, protocol: str) -> Figure:
    """One panel per kind (shared y-axis), one line per variant of ``y`` (%) against level."""
    kinds = _kinds(rows)
    with style():
        fig = new_figure(3.6 * len(kinds) + 1.6, 4.2)
        axes = np.atleast_1d(fig.subplots(1, len(kinds), sharey=True))
        for ax, kind in zip(axes, kinds, strict=True):
            _variant_lines(ax, rows[rows["kind"] == kind], y, num_classes)
            ax.set(title=KIND_LABELS.get(kind, kind))
        axes[0].set_ylabel(ylabel)
        _legend(fig, axes[0])
        _title(fig, f"{title} ({_seeds_note(rows)})", dataset, protocol)
    return fig


def confidence_per_kind(sweeps: pd.DataFrame, subset: str = "class", class_name: str = "apple",
                        *, num_classes: int, dataset: str, protocol: str) -> Figure:
    """Fig. 5: mean true-class confidence (%) vs level, one panel per kind (same y-range), one
    line per variant, with the chance line."""
    rows = _select(sweeps, subset)
    return _panels_per_kind(rows, "confidence", _CONFIDENCE_LABEL, num_classes,
                            f"True-class confidence per degradation, "
                            f"{_subject(subset, class_name)}", dataset, protocol)


def confidence_kinds_overlaid(sweeps: pd.DataFrame, variant: str = "im", subset: str = "class",
                              class_name: str = "apple", *, num_classes: int, dataset: str,
                              protocol: str) -> Figure:
    """Fig. 5 in the paper's own view: one variant (IM, as the paper shows), one line per kind
    in the kind's colour and marker, with the chance line."""
    rows = _select(sweeps, subset)
    check_choice(variant, _variants(rows, "sweeps"), "variant")
    rows = rows[rows["variant"] == variant]
    with style():
        fig = new_figure(8, 4.5)
        ax = fig.subplots()
        for kind in _kinds(rows):
            _seed_lines(ax, rows[rows["kind"] == kind], "level", "confidence",
                        KIND_COLORS.get(kind, "0.2"), KIND_LABELS.get(kind, kind),
                        marker=KIND_MARKERS.get(kind, "o"))
        chance_line(ax, num_classes)
        ax.set(xlim=(-0.02, 1.02), xlabel=_LEVEL_LABEL, ylabel=_CONFIDENCE_LABEL,
               title=_seeds_note(rows))
        percent_axis(ax)
        _legend(fig, ax, title="Degradation")
        _title(fig, f"{VARIANT_LABELS[variant]}: true-class confidence per degradation, "
                    f"{_subject(subset, class_name)}", dataset, protocol)
    return fig


def confidence_vs_nmi(sweeps: pd.DataFrame, settings: EvalSettings, *, num_classes: int,
                      dataset: str, protocol: str, subset: str = "all",
                      class_name: str = "apple") -> Figure:
    """IM's claim: a model trained on IM targets reports the information left in its input.

    One panel per variant: mean true-class confidence (%) against mean NMI(clean, degraded),
    one point per (kind, level), averaged over images and seeds (colour: the variant, marker:
    the kind). Every panel carries IM's target, the confidence its loss is minimised at:
    ``1 - eps`` with ``eps = clamp(1 - NMI, 0, max_eps)`` (:func:`imlib.labels.im_eps`), plus
    ``eps / K`` with ``spread="all"`` (the public code's targets); and the chance line. The
    NMI bins, ``max_eps`` and ``spread`` are the evaluation's ``settings``
    (:attr:`imlib.results.EvalResults.eval_settings`): the runs' own.
    """
    rows = _select(sweeps, subset)
    check_int(num_classes, "num_classes", 2)
    _check_settings(settings)
    max_eps, spread = settings.max_eps, settings.spread
    points = rows.groupby(["variant", "kind", "level"], as_index=False)[
        ["confidence", "nmi"]].mean()
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    target = true_class_target(im_eps(grid, max_eps), num_classes, spread)
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
            ax.set(xlim=(-0.02, 1.02),
                   xlabel=f"Mean NMI(clean, degraded), {settings.nmi_bins} bins",
                   title=VARIANT_LABELS[variant])
            percent_axis(ax)
            ax.title.set_color(VARIANT_COLORS[variant])
        axes[0].set_ylabel(_CONFIDENCE_LABEL)
        handles = [Line2D([], [], color="black", linewidth=1.5, label=TARGET_LABEL),
                   Line2D([], [], color=REFERENCE_COLOR, linestyle="--", label=CHANCE_LABEL)]
        handles += [Line2D([], [], linestyle="none", color="0.3", marker=KIND_MARKERS.get(k, "o"),
                           label=KIND_LABELS.get(k, k)) for k in kinds]
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
        _title(fig, f"True-class confidence against information kept, "
                    f"{_subject(subset, class_name)}\n(one point per kind and level, "
                    f"{_seeds_note(rows, 'mean')}; IM target with spread {spread!r})",
               dataset, protocol)
    return fig


def accuracy_vs_level(sweeps: pd.DataFrame, *, num_classes: int, dataset: str, protocol: str,
                      order: str = "degrade_first", subset: str = "all",
                      class_name: str = "apple") -> Figure:
    """Top-1 accuracy (%) vs level, one panel per kind, one line per variant, with the chance
    line; ``order`` picks the evaluation order (``imlib.results.ORDERS``)."""
    rows = _select(sweeps, subset, order=order)
    return _panels_per_kind(rows, "accuracy", "Top-1 accuracy (%)", num_classes,
                            f"Accuracy per degradation, {_subject(subset, class_name)}, "
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
        _title(fig, f"Reliability, {where}{pooled_note}", dataset, protocol)
    return fig


def nmi_vs_level(sweeps: pd.DataFrame, settings: EvalSettings, *, dataset: str) -> Figure:
    """Mean NMI(clean, degraded) over the test split vs level, one line per kind; the right
    axis reads it as IM's smoothing ``eps = 1 - NMI`` (before its clamp at
    ``settings.max_eps``). The bins are the evaluation's ``settings.nmi_bins``."""
    _check_settings(settings)
    rows = _select(sweeps, "all")
    table = rows.groupby(["kind", "level"], as_index=False)["nmi"].mean()
    with style():
        fig = new_figure(8.5, 4.5)
        ax = fig.subplots()
        for kind in _kinds(table):
            t = table[table["kind"] == kind].sort_values("level")
            ax.plot(t["level"], t["nmi"], color=KIND_COLORS.get(kind, "0.2"),
                    label=KIND_LABELS.get(kind, kind), marker=KIND_MARKERS.get(kind, "o"),
                    markersize=5, linewidth=2)
        ax.set(xlim=(-0.02, 1.02), ylim=(0, 1.02), xlabel=_LEVEL_LABEL,
               ylabel="Mean NMI(clean, degraded)")
        right = ax.secondary_yaxis("right", functions=(lambda y: 1 - y, lambda e: 1 - e))
        right.set_ylabel("IM smoothing ε = 1 − NMI")
        _legend(fig, ax, title="Degradation")
        _title(fig, f"Information kept by each degradation (test split, {settings.nmi_bins} bins)",
               dataset, None)
    return fig


# --- pixel information against class information ----------------------------------------------


def class_information_vs_nmi(information: pd.DataFrame, settings: EvalSettings, *,
                             dataset: str, protocol: str) -> Figure:
    """Pixel information against class information: per (kind, level), the mean NMI(clean,
    degraded) of the test images against the class information they still carry
    (:func:`imlib.report.class_information`: the best accuracy, chance = 0, clean = 1), one line
    per kind through its levels in the kind's colour and marker.

    Reference lines: the diagonal where NMI equals class information, and IM's target
    true-class mass ``1 - eps(NMI)`` with ``settings``' clamp ``max_eps`` and spread (it leaves
    the diagonal below NMI = 1 - max_eps). Above the diagonal NMI under-counts (images still
    recognisable at low NMI), below it NMI over-counts.
    """
    check_frame(information, "information", CLASS_INFORMATION_COLUMNS)
    _check_settings(settings)
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    num_classes = round(1 / float(information["chance"].iloc[0]))
    target = true_class_target(im_eps(grid, settings.max_eps), num_classes, settings.spread)
    with style():
        fig = new_figure(7.6, 8.0)
        ax = fig.subplots()
        ax.fill_between([0, 1], [0, 1], [1, 1], color="0.93", linewidth=0, zorder=0)
        ax.plot([0, 1], [0, 1], color=REFERENCE_COLOR, linestyle="--", linewidth=1.2,
                label="NMI = class information")
        ax.plot(grid.numpy(), target.numpy(), color="black", linewidth=1.5,
                label=f"{TARGET_LABEL}, ε ≤ {settings.max_eps:g}")
        for kind in _kinds(information):
            t = information[information["kind"] == kind].sort_values("level")
            ax.plot(t["nmi"], t["class_information"], color=KIND_COLORS.get(kind, "0.2"),
                    marker=KIND_MARKERS.get(kind, "o"), markersize=6, linewidth=1.6,
                    label=KIND_LABELS.get(kind, kind))
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02),
               xlabel="Mean NMI(clean, degraded): pixel information kept",
               ylabel="Class information kept (best accuracy: chance 0, clean 1)")
        handles = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        handles += [Patch(facecolor="0.93", label="shaded: NMI under-counts"),
                    Patch(facecolor="white", edgecolor="0.8", label="white: NMI over-counts")]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
        _title(fig, "Pixel information (NMI) against class information", dataset, protocol)
    return fig


def training_draws_figure(draws: pd.DataFrame, max_eps: float, *, dataset: str,
                          protocol: str) -> Figure:
    """What training feeds the models (:func:`imlib.nmi_study.training_draws`): histograms of
    the level d and of IM's eps over the draws, stacked by kind in the kinds' colours, with
    eps's clamp at ``max_eps`` marked."""
    check_frame(draws, "draws", ("kind", "level", "eps"))
    kinds = _kinds(draws)
    palette = {k: KIND_COLORS.get(k, "0.5") for k in kinds}
    with style():
        fig = new_figure(12.5, 4.0)
        axes = fig.subplots(1, 2)
        for ax, column, xlabel in ((axes[0], "level", _LEVEL_LABEL),
                                   (axes[1], "eps", f"IM's smoothing ε = clamp(1 − NMI, 0, "
                                                    f"{max_eps:g})")):
            sns.histplot(data=draws, x=column, hue="kind", hue_order=kinds, palette=palette,
                         multiple="stack", bins=20, binrange=(0, 1), ax=ax, legend=False,
                         edgecolor="white", linewidth=0.5)
            ax.set(xlim=(0, 1), xlabel=xlabel, ylabel="Training draws")
        axes[1].axvline(max_eps, color="black", linewidth=1.2, linestyle="--")
        axes[1].annotate(f"clamp\n{max_eps:g}", (max_eps, 1), xycoords=("data", "axes fraction"),
                         xytext=(4, -4), textcoords="offset points", ha="left", va="top",
                         fontsize="small")
        fig.legend(handles=[Patch(color=palette[k], label=KIND_LABELS.get(k, k)) for k in kinds],
                   title="Degradation", loc="outside right upper", frameon=False)
        _title(fig, f"Training draws: every image degraded at a random level ({len(draws):,} "
                    "draws)", dataset, protocol)
    return fig
