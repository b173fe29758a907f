"""Probe one image by hand: degrade it, measure its NMI, see IM's target and what models predict.

The reader picks an image, a kind, a level ``d``, the histogram bins, IM's clamp and spread and
the noise seed, and sees the chain IM trains on: the degraded image, ``NMI(clean, degraded)``,
``eps = clamp(1 - NMI, 0, max_eps)``, the soft target, and, where trained models are given,
each variant's predicted distribution beside that target (the question the author's slider
tool let a reader ask of a model).

- :func:`probe` does all the computation (pure and tested); :class:`Probe` holds its result.
- :func:`probe_figure` draws one probe.
- :func:`probe_grid` probes one image under every kind at a low and a high level;
  :func:`static_view` draws that grid (what a saved notebook shows without a kernel) and
  :func:`what_to_notice` says, from the same probes, what it shows.
- :func:`explorer` wires ipywidgets controls to :func:`probe` and :func:`probe_figure`.

The NMI bins, IM's clamp ``max_eps`` and its ``spread`` have no defaults here: a notebook passes
the trained runs' own settings. Images follow training: degraded in [0, 1] with the training
constants (``TRAIN``) by default, then normalised with the data set's ``mean``/``std`` before
the model sees them. Each setting draws its randomness (diffusion noise, dropout patches) from a
generator seeded with ``seed``, so the same setting always shows the same image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import display
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from imlib._checks import (check_choice, check_class_names, check_fraction, check_images,
                           check_int, check_labels)
from imlib.degradations import KINDS, TRAIN, DegradationConfig, degrade
from imlib.evaluate import predict
from imlib.labels import SPREADS, im_eps, information_matching
from imlib.nmi import nmi
from imlib.style import (INLINE_DPI, KIND_LABELS, VARIANT_COLORS, VARIANT_LABELS, chance_line,
                         new_figure, percent_axis, source_line, style)

__all__ = ["Probe", "GRID_LEVELS", "EXPLORER_WIDTH", "probe", "probe_figure", "probe_grid",
           "static_view",
           "what_to_notice", "explorer"]

GRID_LEVELS = (0.2, 0.8)  # the static grid's low and high level
_ALL_CLASSES_UP_TO = 12  # up to this many classes the bar chart shows them all, else the top-k
_TOP_K = 5
_OTHER_COLOR = "0.5"  # a model whose name is not a variant of the study
# The explorer's controls: a slider's track is its width less the description and the readout
# (at most 80 px), so 520 px leaves 320 px of track; one slider per row fits a 1280 px window.
SLIDER_WIDTH, CHOICE_WIDTH, DESCRIPTION_WIDTH = 520, 300, 120
# The explorer's figure, in pixels: JupyterLab's output area at 1024 x 768 with the file browser
# open is about 570 px wide, and a wider PNG is shrunk to fit, its text with it. Narrower than
# _SIDE_BY_SIDE_FROM, the image pair sits above the bar chart.
EXPLORER_WIDTH, _SIDE_BY_SIDE_FROM = 560, 900
_EXPLORER_FONT = 11  # points: pixels at INLINE_DPI


@dataclass(frozen=True)
class Probe:
    """One setting of the explorer and what it gives.

    ``image`` and ``degraded`` are float (C, H, W) in [0, 1] on the CPU; ``target`` is IM's
    soft target (K,) when a label was given; ``predictions`` maps each model's name to its
    softmax probabilities (K,) on the degraded image.
    """

    image: Tensor
    degraded: Tensor
    kind: str
    level: float
    bins: int
    nmi: float
    eps: float
    label: int | None = None
    target: Tensor | None = None
    predictions: dict[str, Tensor] = field(default_factory=dict)


def _as_image(image: Tensor) -> Tensor:
    """``image`` (C, H, W), uint8 or float in [0, 1], as float32 (C, H, W) on the CPU."""
    if not isinstance(image, Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a tensor (C, H, W), got {shape}; pick one image of a "
                         "batch with images[i]")
    image = image.detach().cpu()
    return image.float() / 255 if image.dtype == torch.uint8 else image.float()


def probe(image: Tensor, kind: str, level: float, *, bins: int, max_eps: float, spread: str,
          models: Mapping[str, torch.nn.Module] | None = None,
          mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
          label: int | None = None, num_classes: int | None = None, seed: int = 0,
          config: DegradationConfig = TRAIN) -> Probe:
    """Degrade ``image`` with ``kind`` at ``level`` and compute everything IM derives from it.

    Args:
        image: one image (C, H, W), uint8 or float in [0, 1].
        kind, level: the degradation (one of ``KINDS``, ``d`` in [0, 1]).
        bins, max_eps, spread: the NMI's histogram bins, IM's cap on eps and how it spreads the
            rest (see :func:`imlib.labels.information_matching`): the runs' own settings.
        models: name (a variant) -> trained model; each predicts on the degraded image,
            normalised with ``mean`` and ``std`` (both required with models).
        label, num_classes: the image's class and the number of classes, for IM's target.
        seed: seeds the degradation's randomness, so a setting is reproducible.
        config: the degradation constants (training's by default, as IM's targets used).
    """
    image = _as_image(image)
    check_int(bins, "bins", 2)
    check_fraction(max_eps, "max_eps")
    check_choice(spread, SPREADS, "spread")
    check_int(seed, "seed", 0)
    models = dict(models or {})
    if models and (mean is None or std is None):
        raise ValueError("mean and std are required with models: pass the data set's "
                         "normalisation, e.g. data.mean and data.std")
    if label is not None:
        if num_classes is None:
            raise ValueError("num_classes is required with label, e.g. len(class_names)")
        check_int(num_classes, "num_classes", 2)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
            raise ValueError(f"label must be an int in [0, {num_classes}), got {label!r}")

    clean = image.unsqueeze(0)
    generator = torch.Generator().manual_seed(seed)
    degraded = degrade(clean, kind, level, generator, config)
    score = nmi(clean, degraded, bins)
    target = None
    if label is not None:
        target = information_matching(torch.tensor([label]), num_classes, score, max_eps,
                                      spread)[0]
    predictions = {name: predict(model, degraded, mean, std)[0] for name, model in models.items()}
    for name, probs in predictions.items():
        if num_classes is not None and probs.numel() != num_classes:
            raise ValueError(f"model {name!r} predicts {probs.numel()} classes, expected "
                             f"num_classes = {num_classes}")
    return Probe(image=image, degraded=degraded[0], kind=kind, level=float(level), bins=bins,
                 nmi=float(score[0]), eps=float(im_eps(score, max_eps)[0]), label=label,
                 target=target, predictions=predictions)


# --- drawing ------------------------------------------------------------------------------------


def _show_image(ax: Axes, image: Tensor, title: str, fontsize: float) -> None:
    pixels = image.permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(pixels, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=fontsize)
    ax.set_axis_off()


def _shown_classes(result: Probe, num_classes: int) -> list[int]:
    """Every class when there are few; else the true class and each model's top-k."""
    if num_classes <= _ALL_CLASSES_UP_TO:
        return list(range(num_classes))
    shown = [] if result.label is None else [result.label]
    for probs in result.predictions.values():
        shown += [int(k) for k in probs.topk(_TOP_K).indices if int(k) not in shown]
    return shown


def _draw_distributions(ax: Axes, result: Probe, class_names: Sequence[str], title: str | None,
                        fontsize: float) -> None:
    """IM's target (outlined) and each model's probabilities in percent, grouped by class,
    over a fixed 0-100 % axis so that moving a slider never rescales it; ``title`` (with which
    classes are shown, when not all) above, unless None."""
    classes = _shown_classes(result, len(class_names))
    series = [] if result.target is None else [("IM target", result.target, None)]
    series += [(VARIANT_LABELS.get(name, name), probs, VARIANT_COLORS.get(name, _OTHER_COLOR))
               for name, probs in result.predictions.items()]
    width = 0.8 / len(series)
    positions = np.arange(len(classes))
    for i, (name, probs, color) in enumerate(series):
        heights = 100 * probs[classes].numpy()
        offset = positions - 0.4 + (i + 0.5) * width
        if color is None:  # the target: an outline, so it never reads as a variant
            ax.bar(offset, heights, width, fill=False, edgecolor="black", hatch="..", label=name)
        else:
            ax.bar(offset, heights, width, color=color, label=name)
    ax.set_xticks(positions, [class_names[k] for k in classes], rotation=45, ha="right",
                  fontsize=fontsize)
    ax.tick_params(axis="y", labelsize=fontsize)
    if result.label is not None:
        true = classes.index(result.label)
        ax.axvspan(true - 0.5, true + 0.5, color="gold", alpha=0.25, zorder=0)
        ax.get_xticklabels()[true].set_fontweight("bold")
    chance_line(ax, len(class_names))
    percent_axis(ax)
    ax.set_ylabel("Probability (%)", fontsize=fontsize)
    if title is None:
        return
    if len(classes) < len(class_names):
        title += f"\nthe true class and each model's top {_TOP_K} of {len(class_names)}"
    ax.set_title(title, fontsize=fontsize)


def _legend(fig: Figure, ax: Axes, fontsize: float, below: bool = False) -> None:
    """The bars' legend (target, models, chance), outside the panels: on the figure's right,
    or in one row below them."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center" if below else
                   "outside right upper", ncols=len(handles) if below else 1,
                   fontsize=fontsize, frameon=False)


def _degraded_title(result: Probe) -> str:
    """Three short lines, no wider than a small image: kind; level and eps; NMI and bins."""
    return (f"{KIND_LABELS[result.kind]}\nd = {result.level:.2f}, ε {result.eps:.2f}\n"
            f"NMI {result.nmi:.2f}, {result.bins} bins")


def _clean_title(result: Probe, class_names: Sequence[str]) -> str:
    return "Clean" if result.label is None else f"Clean: {class_names[result.label]}"


def probe_figure(result: Probe, class_names: Sequence[str], *, width: int = EXPLORER_WIDTH
                 ) -> Figure:
    """One probe: clean image, degraded image with its NMI and eps, and (where there is a
    target or a prediction) the target beside each model's predicted distribution.

    ``width`` is the figure's width in pixels as a notebook shows it (``INLINE_DPI``): below
    900 px the image pair sits above the bar chart, so that at the default 560 px, which fits
    JupyterLab's output area at 1024 x 768 with the file browser open, no text is shrunk."""
    if not isinstance(result, Probe):
        raise ValueError(f"result must be a Probe (from probe(...)), got {type(result).__name__}")
    check_class_names(class_names)
    check_int(width, "width", 300)
    bars = result.target is not None or bool(result.predictions)
    stacked = bars and width < _SIDE_BY_SIDE_FROM
    inches = width / INLINE_DPI
    with style():
        if stacked:
            fig = new_figure(inches, 6.4)
            axes = fig.subplot_mosaic([["clean", "degraded"], ["bars", "bars"]],
                                      height_ratios=[1, 1.35])
            axes = [axes["clean"], axes["degraded"], axes["bars"]]
        else:
            fig = new_figure(inches if bars else 4.5, 3.8)
            axes = fig.subplots(1, 3 if bars else 2, width_ratios=[1, 1, 2.6][:3 if bars else 2])
        _show_image(axes[0], result.image, _clean_title(result, class_names), _EXPLORER_FONT)
        _show_image(axes[1], result.degraded, _degraded_title(result), _EXPLORER_FONT)
        if bars:
            _draw_distributions(axes[2], result, class_names,
                                "Target and predictions (true class shaded)", _EXPLORER_FONT)
            _legend(fig, axes[2], _EXPLORER_FONT, below=stacked)
    return fig


# --- one image under every kind: the static grid ------------------------------------------------


def _check_split(images: Tensor, labels: Tensor, class_names: Sequence[str]) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or not len(images):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty tensor (N, C, H, W) such as data.x_test, "
                         f"got {shape}")
    if images.dtype != torch.uint8:
        check_images(images, "images")
    check_class_names(class_names)
    check_labels(labels, len(class_names), n=images.shape[0])


def _check_index(index: int, n: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"image index must be an int in [0, {n}), got {index!r}")


def probe_grid(images: Tensor, labels: Tensor, class_names: Sequence[str], index: int, *,
               bins: int, max_eps: float, spread: str,
               models: Mapping[str, torch.nn.Module] | None = None,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               kinds: Sequence[str] = KINDS, levels: Sequence[float] = GRID_LEVELS,
               seed: int = 0, config: DegradationConfig = TRAIN) -> list[Probe]:
    """Image ``index`` of ``images`` under each kind at each level (kind-major order), probed
    with the runs' ``bins``, ``max_eps`` and ``spread``: the explorer's view for a reader
    without a kernel."""
    _check_split(images, labels, class_names)
    _check_index(index, len(images))
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or not levels:
        raise ValueError(f"levels must be a non-empty list of levels in [0, 1], got {levels!r}")
    options = dict(bins=bins, max_eps=max_eps, spread=spread, models=models, mean=mean, std=std,
                   label=int(labels[index]), num_classes=len(class_names), seed=seed,
                   config=config)
    return [probe(images[index], kind, level, **options) for kind in kinds for level in levels]


def _grid_shape(probes: Sequence[Probe]) -> tuple[list[str], list[float]]:
    """The kinds (rows) and levels (columns) of a kind-major grid of probes, checked whole."""
    if not probes or not all(isinstance(p, Probe) for p in probes):
        raise ValueError("probes must be a non-empty list of Probe results, e.g. probe_grid(...)")
    kinds = list(dict.fromkeys(p.kind for p in probes))
    levels = list(dict.fromkeys(p.level for p in probes))
    if [(p.kind, p.level) for p in probes] != [(k, d) for k in kinds for d in levels]:
        raise ValueError("probes must cover each kind at the same levels, kind by kind, as "
                         "probe_grid returns them")
    return kinds, levels


def static_view(probes: Sequence[Probe], class_names: Sequence[str], *, dataset: str,
                protocol: str, width: int = EXPLORER_WIDTH) -> Figure:
    """The grid of :func:`probe_grid`, ``width`` pixels wide as a notebook shows it (default: the
    explorer's, which fits JupyterLab at 1024 x 768 with the file browser open): the clean image
    and the bars' legend on top, then one row per kind and level, the degraded image (NMI, eps)
    beside IM's target and each model's prediction; the title names the ``dataset`` and the
    ``protocol`` the models were trained under."""
    _, levels = _grid_shape(probes)
    check_class_names(class_names)
    check_int(width, "width", 300)
    bars = probes[0].target is not None or bool(probes[0].predictions)
    rows = [["clean", "legend"]] + [[f"image {i}", f"bars {i}"] for i in range(len(probes))]
    if not bars:
        rows = [[row[0]] for row in rows]
    with style():
        fig = new_figure(width / INLINE_DPI, 2.2 + 2.8 * len(probes))
        axes = fig.subplot_mosaic(rows, width_ratios=[1.0, 2.6] if bars else [1.0],
                                  height_ratios=[0.75] + [1.0] * len(probes))
        _show_image(axes["clean"], probes[0].image, _clean_title(probes[0], class_names),
                    _EXPLORER_FONT)
        for i, result in enumerate(probes):
            _show_image(axes[f"image {i}"], result.degraded, _degraded_title(result),
                        _EXPLORER_FONT)
            if bars:
                title = "Target and predictions (true class shaded)" if i == 0 else None
                _draw_distributions(axes[f"bars {i}"], result, class_names, title,
                                    _EXPLORER_FONT)
        if bars:
            handles, labels = axes["bars 0"].get_legend_handles_labels()
            axes["legend"].set_axis_off()
            axes["legend"].legend(handles, labels, loc="center left", fontsize=_EXPLORER_FONT,
                                  frameon=False)
        fig.suptitle(f"One test image under each degradation at d = "
                     f"{' and '.join(f'{d:g}' for d in levels)}\n"
                     f"{source_line(dataset, protocol)}", fontweight="bold")
    return fig


def _true_mass(probs: Tensor, label: int) -> float:
    return 100 * float(probs[label])


def what_to_notice(probes: Sequence[Probe], class_names: Sequence[str]) -> str:
    """What the grid of :func:`probe_grid` shows, in Markdown computed from the probes: per
    kind, the NMI and IM's target at the lowest and highest level beside each model's
    confidence in the true class, then the model whose confidence stays closest to IM's
    target over the grid."""
    kinds, levels = _grid_shape(probes)
    check_class_names(class_names)
    if probes[0].label is None:
        raise ValueError("probes must carry a label (probe_grid gives them one)")
    label = probes[0].label
    lines = [f"What to notice on this image of **{class_names[label]}** (confidences are in "
             f"the true class; d = {levels[0]:g} → {levels[-1]:g}):", ""]
    for kind in kinds:
        row = [p for p in probes if p.kind == kind]
        low, high = row[0], row[-1]
        text = (f"- **{KIND_LABELS[kind]}**: NMI {low.nmi:.2f} → {high.nmi:.2f}, so IM's target "
                f"{_true_mass(low.target, label):.0f} % → {_true_mass(high.target, label):.0f} %")
        models = [f"{VARIANT_LABELS.get(name, name)} {_true_mass(low.predictions[name], label):.0f}"
                  f" % → {_true_mass(high.predictions[name], label):.0f} %"
                  for name in low.predictions]
        lines.append(text + ("; the models: " + ", ".join(models) if models else "") + ".")
    if probes[0].predictions:
        gaps = {name: np.mean([abs(_true_mass(p.predictions[name], label)
                                   - _true_mass(p.target, label)) for p in probes])
                for name in probes[0].predictions}
        ranked = sorted(gaps, key=gaps.get)
        named = ", ".join(f"{VARIANT_LABELS.get(n, n)} {gaps[n]:.0f}" for n in ranked)
        lines += ["", f"Mean distance to IM's target over these {len(probes)} settings, in "
                      f"points of confidence: {named}. A model trained on IM's targets should "
                      "sit closest; one image is an anecdote, the sweeps of this notebook "
                      "measure it on the whole test split."]
    return "\n".join(lines)


# --- the widgets --------------------------------------------------------------------------------


def _slider_layout() -> dict:
    return dict(layout=widgets.Layout(width=f"{SLIDER_WIDTH}px"),
                style={"description_width": f"{DESCRIPTION_WIDTH}px"}, continuous_update=False)


def _choice_layout() -> dict:
    return dict(layout=widgets.Layout(width=f"{CHOICE_WIDTH}px"),
                style={"description_width": f"{DESCRIPTION_WIDTH}px"})


def explorer(images: Tensor, labels: Tensor, class_names: Sequence[str],
             models: Mapping[str, torch.nn.Module] | None = None,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None, *,
             bins: int, max_eps: float, spread: str, index: int = 0, kind: str = "blur",
             level: float = 0.5, seed: int = 0, config: DegradationConfig = TRAIN,
             width: int = EXPLORER_WIDTH) -> widgets.VBox:
    """Controls over ``images`` (e.g. the test split) redrawing :func:`probe_figure` on every
    change; returns the ipywidgets box to display.

    The controls, one slider per row so each is long enough to aim with: the class (by name)
    and which of its images, the kind and level, the NMI bins, IM's clamp and spread, and the
    seed of the degradation's noise. They start on image ``index`` under ``kind`` at ``level``
    with the runs' ``bins``, ``max_eps`` and ``spread``; the figure is ``width`` pixels wide
    (:func:`probe_figure`)."""
    _check_split(images, labels, class_names)
    _check_index(index, len(images))
    check_int(width, "width", 300)
    # Raise bad arguments here: inside the widgets' output area a kernel would only print them.
    probe(images[index], kind, level, bins=bins, max_eps=max_eps, spread=spread, models=models,
          mean=mean, std=std, label=int(labels[index]), num_classes=len(class_names), seed=seed,
          config=config)
    members = {int(k): (labels == k).nonzero().flatten().tolist()
               for k in labels.unique().tolist()}
    start_class = int(labels[index])
    controls = {
        "class": widgets.Dropdown(options=[(class_names[k], k) for k in members],
                                  value=start_class, description="class", **_choice_layout()),
        "nth": widgets.IntSlider(members[start_class].index(index), min=0,
                                 max=len(members[start_class]) - 1,
                                 description="image of class", **_slider_layout()),
        "kind": widgets.Dropdown(options=KINDS, value=kind, description="kind",
                                 **_choice_layout()),
        "level": widgets.FloatSlider(level, min=0.0, max=1.0, step=0.01, description="level d",
                                     **_slider_layout()),
        "spread": widgets.Dropdown(options=SPREADS, value=spread, description="IM spread",
                                   **_choice_layout()),
        "bins": widgets.IntSlider(bins, min=2, max=max(256, bins), description="NMI bins",
                                  **_slider_layout()),
        "seed": widgets.BoundedIntText(seed, min=0, max=2**31 - 1, description="noise seed",
                                       **_choice_layout()),
        "max_eps": widgets.FloatSlider(max_eps, min=0.0, max=0.99, step=0.01,
                                       description="IM clamp max ε", **_slider_layout()),
    }

    def restart_class(change: dict) -> None:
        controls["nth"].value = 0
        controls["nth"].max = len(members[change["new"]]) - 1

    controls["class"].observe(restart_class, names="value")

    def show(class_: int, nth: int, kind: str, level: float, spread: str, bins: int, seed: int,
             max_eps: float) -> None:
        chosen = members[class_][min(nth, len(members[class_]) - 1)]
        result = probe(images[chosen], kind, level, bins=bins, max_eps=max_eps, spread=spread,
                       models=models, mean=mean, std=std, label=int(labels[chosen]),
                       num_classes=len(class_names), seed=seed, config=config)
        display(probe_figure(result, class_names, width=width))

    output = widgets.interactive_output(
        lambda **values: show(values.pop("class"), **values), controls)
    order = list(controls.values())
    rows = [widgets.HBox(order[i:i + 2], layout=widgets.Layout(flex_flow="row wrap"))
            for i in range(0, len(order), 2)]
    return widgets.VBox([*rows, output])
