"""The figures of IM's claim and of what the runs teach about pixel information: each a function
of saved result tables, with the conventions of :mod:`imlib.figure_parts`.

- :func:`confidence_vs_nmi`: IM's claim, confidence against NMI with the target ``1 - eps(NMI)``.
- :func:`nmi_vs_level`: mean NMI(clean, degraded) per kind (a teaching plot).
- :func:`class_information_vs_nmi`: pixel information (NMI) against class information, per
  kind and level.
- :func:`training_draws_figure`: the levels and IM's eps over a sample of training draws.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from imlib._checks import check_int
from imlib.labels import im_eps, true_class_target
from imlib.results import (
    EvalSettings,
    check_frame,
)
from imlib.class_information import CLASS_INFORMATION_COLUMNS
from imlib.style import (CHANCE_LABEL, KIND_COLORS, KIND_LABELS, KIND_MARKERS,
                         REFERENCE_COLOR, TARGET_LABEL, VARIANT_COLORS, VARIANT_LABELS,
                         chance_line, new_figure, percent_axis, style)

from imlib.figure_parts import (PERCENT, LEVEL_LABEL, CONFIDENCE_LABEL, variants_in, kinds_in,
                                seeds_note, check_eval_settings,
                                select_rows, subject_text,
                                set_title, figure_legend)

__all__ = [
    "confidence_vs_nmi",
    "nmi_vs_level",
    "class_information_vs_nmi",
    "training_draws_figure",
]

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
    rows = select_rows(sweeps, subset)
    check_int(num_classes, "num_classes", 2)
    check_eval_settings(settings)
    max_eps, spread = settings.max_eps, settings.spread
    points = rows.groupby(["variant", "kind", "level"], as_index=False)[
        ["confidence", "nmi"]].mean()
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    target = true_class_target(im_eps(grid, max_eps), num_classes, spread)
    variants = variants_in(rows, "sweeps")
    kinds = kinds_in(rows)
    with style():
        fig = new_figure(3.8 * len(variants) + 1.8, 4.4)
        axes = np.atleast_1d(fig.subplots(1, len(variants), sharey=True))
        for ax, variant in zip(axes, variants, strict=True):
            ax.plot(grid.numpy(), PERCENT * target.numpy(), color="black", linewidth=1.5,
                    label=TARGET_LABEL)
            chance_line(ax, num_classes)
            for kind in kinds:
                p = points[(points["variant"] == variant) & (points["kind"] == kind)]
                ax.plot(p["nmi"], PERCENT * p["confidence"], linestyle="none",
                        marker=KIND_MARKERS.get(kind, "o"), markersize=6, alpha=0.85,
                        color=VARIANT_COLORS[variant], label=KIND_LABELS.get(kind, kind))
            ax.set(xlim=(-0.02, 1.02),
                   xlabel=f"Mean NMI(clean, degraded), {settings.nmi_bins} bins",
                   title=VARIANT_LABELS[variant])
            percent_axis(ax)
            ax.title.set_color(VARIANT_COLORS[variant])
        axes[0].set_ylabel(CONFIDENCE_LABEL)
        handles = [Line2D([], [], color="black", linewidth=1.5, label=TARGET_LABEL),
                   Line2D([], [], color=REFERENCE_COLOR, linestyle="--", label=CHANCE_LABEL)]
        handles += [Line2D([], [], linestyle="none", color="0.3", marker=KIND_MARKERS.get(k, "o"),
                           label=KIND_LABELS.get(k, k)) for k in kinds]
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
        set_title(fig, f"True-class confidence against information kept, "
                    f"{subject_text(subset, class_name)}\n(one point per kind and level, "
                    f"{seeds_note(rows, 'mean')}; IM target with spread {spread!r})",
               dataset, protocol)
    return fig


def nmi_vs_level(sweeps: pd.DataFrame, settings: EvalSettings, *, dataset: str) -> Figure:
    """Mean NMI(clean, degraded) over the test split vs level, one line per kind; the right
    axis reads it as IM's smoothing ``eps = 1 - NMI`` (before its clamp at
    ``settings.max_eps``). The bins are the evaluation's ``settings.nmi_bins``."""
    check_eval_settings(settings)
    rows = select_rows(sweeps, "all")
    table = rows.groupby(["kind", "level"], as_index=False)["nmi"].mean()
    with style():
        fig = new_figure(8.5, 4.5)
        ax = fig.subplots()
        for kind in kinds_in(table):
            t = table[table["kind"] == kind].sort_values("level")
            ax.plot(t["level"], t["nmi"], color=KIND_COLORS.get(kind, "0.2"),
                    label=KIND_LABELS.get(kind, kind), marker=KIND_MARKERS.get(kind, "o"),
                    markersize=5, linewidth=2)
        ax.set(xlim=(-0.02, 1.02), ylim=(0, 1.02), xlabel=LEVEL_LABEL,
               ylabel="Mean NMI(clean, degraded)")
        right = ax.secondary_yaxis("right", functions=(lambda y: 1 - y, lambda e: 1 - e))
        right.set_ylabel("IM smoothing ε = 1 − NMI")
        figure_legend(fig, ax, title="Degradation")
        set_title(fig, "Information kept by each degradation "
                       f"(test split, {settings.nmi_bins} bins)", dataset, None)
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
    check_eval_settings(settings)
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
        for kind in kinds_in(information):
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
        set_title(fig, "Pixel information (NMI) against class information", dataset, protocol)
    return fig


def training_draws_figure(draws: pd.DataFrame, max_eps: float, *, dataset: str,
                          protocol: str) -> Figure:
    """What training feeds the models (:func:`imlib.nmi_study.training_draws`): histograms of
    the level d and of IM's eps over the draws, stacked by kind in the kinds' colours, with
    eps's clamp at ``max_eps`` marked."""
    check_frame(draws, "draws", ("kind", "level", "eps"))
    kinds = kinds_in(draws)
    palette = {k: KIND_COLORS.get(k, "0.5") for k in kinds}
    with style():
        fig = new_figure(12.5, 4.0)
        axes = fig.subplots(1, 2)
        for ax, column, xlabel in ((axes[0], "level", LEVEL_LABEL),
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
        set_title(fig, f"Training draws: every image degraded at a random level ({len(draws):,} "
                    "draws)", dataset, protocol)
    return fig

