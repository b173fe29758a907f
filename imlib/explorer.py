"""Probe one image by hand: degrade it, measure its NMI, see IM's target and what models predict.

The reader picks an image, a kind, a level ``d`` and the histogram bins, and sees the chain IM
trains on: the degraded image, ``NMI(clean, degraded)``, ``eps = clamp(1 - NMI, 0, max_eps)``,
the soft target, and, where trained models are given, each variant's predicted distribution
beside that target (the question the author's slider tool let a reader ask of a model).

- :func:`probe` does all the computation (pure and tested); :class:`Probe` holds its result.
- :func:`probe_figure` draws one probe; :func:`static_view` draws a grid of a few settings for
  headless runs (papermill has no widget frontend); :func:`explorer` wires ipywidgets sliders
  to :func:`probe` and :func:`probe_figure` for interactive use.

Images follow training: degraded in [0, 1] with the training constants (``TRAIN``) by default,
then normalised with the data set's ``mean``/``std`` before the model sees them. Each setting
draws its randomness (diffusion noise, dropout patches) from a generator seeded with ``seed``,
so the same setting always shows the same image.
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

from imlib._checks import check_choice, check_fraction, check_images, check_int, check_labels
from imlib.degradations import KINDS, TRAIN, DegradationConfig, degrade
from imlib.evaluate import predict
from imlib.labels import SPREADS, im_eps, information_matching
from imlib.nmi import nmi
from imlib.style import (KIND_LABELS, VARIANT_COLORS, VARIANT_LABELS, chance_line, new_figure,
                         style)

__all__ = ["Probe", "DEFAULT_SETTINGS", "probe", "probe_figure", "static_view", "explorer"]

# The static view's default grid: one image under every kind at a middle level, 64 bins.
DEFAULT_SETTINGS = tuple((0, kind, 0.5, 64) for kind in KINDS)
_ALL_CLASSES_UP_TO = 12  # up to this many classes the bar chart shows them all, else the top-k
_TOP_K = 5
_OTHER_COLOR = "0.5"  # a model whose name is not a variant of the study


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


def probe(image: Tensor, kind: str, level: float, bins: int = 64,
          models: Mapping[str, torch.nn.Module] | None = None,
          mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
          label: int | None = None, num_classes: int | None = None, max_eps: float = 0.9,
          spread: str = "others", seed: int = 0, config: DegradationConfig = TRAIN) -> Probe:
    """Degrade ``image`` with ``kind`` at ``level`` and compute everything IM derives from it.

    Args:
        image: one image (C, H, W), uint8 or float in [0, 1].
        kind, level: the degradation (one of ``KINDS``, ``d`` in [0, 1]).
        bins: histogram bins of the NMI (the paper uses 64).
        models: name (a variant) -> trained model; each predicts on the degraded image,
            normalised with ``mean`` and ``std`` (both required with models).
        label, num_classes: the image's class and the number of classes, for IM's target.
        max_eps, spread: IM's cap on eps and how it spreads the rest (see
            :func:`imlib.labels.information_matching`).
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


def _show_image(ax: Axes, image: Tensor, title: str) -> None:
    pixels = image.permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(pixels, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()


def _shown_classes(result: Probe, num_classes: int) -> list[int]:
    """Every class when there are few; else the true class and each model's top-k."""
    if num_classes <= _ALL_CLASSES_UP_TO:
        return list(range(num_classes))
    shown = [] if result.label is None else [result.label]
    for probs in result.predictions.values():
        shown += [int(k) for k in probs.topk(_TOP_K).indices if int(k) not in shown]
    return shown


def _draw_distributions(ax: Axes, result: Probe, class_names: Sequence[str]) -> None:
    """IM's target (outlined) and each model's probabilities in percent, grouped by class,
    over a fixed 0-100 % axis so that moving a slider never rescales it."""
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
                  fontsize=8)
    if result.label is not None:
        true = classes.index(result.label)
        ax.axvspan(true - 0.5, true + 0.5, color="gold", alpha=0.25, zorder=0)
        ax.get_xticklabels()[true].set_fontweight("bold")
    chance_line(ax, len(class_names))
    ax.set_ylim(0, 100)
    ax.set_ylabel("Probability (%)")
    title = "Target and predictions (true class shaded)"
    if len(classes) < len(class_names):
        title += f"\nthe true class and each model's top {_TOP_K} of {len(class_names)}"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")


def _panel_count(result: Probe) -> int:
    return 3 if result.target is not None or result.predictions else 2


def _draw(axes: Sequence[Axes], result: Probe, class_names: Sequence[str]) -> None:
    clean_title = "Clean" if result.label is None else f"Clean: {class_names[result.label]}"
    _show_image(axes[0], result.image, clean_title)
    _show_image(axes[1], result.degraded,
                f"{KIND_LABELS[result.kind]}, d = {result.level:.2f}\n"
                f"NMI = {result.nmi:.3f} ({result.bins} bins), eps = {result.eps:.3f}")
    if len(axes) > 2:
        _draw_distributions(axes[2], result, class_names)


def _check_class_names(class_names: Sequence[str]) -> None:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or len(
            class_names) < 2:
        raise ValueError(f"class_names must be a list of at least 2 names (e.g. data.classes), "
                         f"got {class_names!r}")


def probe_figure(result: Probe, class_names: Sequence[str]) -> Figure:
    """One probe: clean image, degraded image with its NMI and eps, and (where there is a
    target or a prediction) the target beside each model's predicted distribution."""
    if not isinstance(result, Probe):
        raise ValueError(f"result must be a Probe (from probe(...)), got {type(result).__name__}")
    _check_class_names(class_names)
    return _probe_rows([result], class_names, row_height=3.6)


def _probe_rows(results: Sequence[Probe], class_names: Sequence[str], row_height: float
                ) -> Figure:
    """One row of panels per probe (images, then target and predictions where there are any)."""
    panels = _panel_count(results[0])
    with style():
        fig = new_figure(4 + 3.5 * (panels - 2) + 2, row_height * len(results))
        grid = fig.add_gridspec(len(results), panels, width_ratios=[1, 1, 2.5][:panels])
        for row, result in enumerate(results):
            _draw([fig.add_subplot(grid[row, i]) for i in range(panels)], result, class_names)
    return fig


# --- a split of images: the static grid and the widgets -----------------------------------------


def _check_split(images: Tensor, labels: Tensor, class_names: Sequence[str]) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or not len(images):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty tensor (N, C, H, W) such as data.x_test, "
                         f"got {shape}")
    if images.dtype != torch.uint8:
        check_images(images, "images")
    _check_class_names(class_names)
    check_labels(labels, len(class_names), n=images.shape[0])


def _probe_index(images: Tensor, labels: Tensor, class_names: Sequence[str], index: int,
                 kind: str, level: float, bins: int, **options) -> Probe:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(images):
        raise ValueError(f"image index must be an int in [0, {len(images)}), got {index!r}")
    return probe(images[index], kind, level, bins, label=int(labels[index]),
                 num_classes=len(class_names), **options)


def static_view(images: Tensor, labels: Tensor, class_names: Sequence[str],
                models: Mapping[str, torch.nn.Module] | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                settings: Sequence[tuple[int, str, float, int]] = DEFAULT_SETTINGS,
                max_eps: float = 0.9, spread: str = "others", seed: int = 0,
                config: DegradationConfig = TRAIN) -> Figure:
    """A grid of probes, one row per ``(index, kind, level, bins)`` of ``settings``: the
    explorer's view for headless runs, where no widget can be moved."""
    _check_split(images, labels, class_names)
    if isinstance(settings, str) or not isinstance(settings, Sequence) or not settings or any(
            not isinstance(s, Sequence) or len(s) != 4 for s in settings):
        raise ValueError("settings must be a non-empty list of (index, kind, level, bins) "
                         f"tuples, e.g. [(0, 'blur', 0.3, 64)], got {settings!r}")
    options = dict(models=models, mean=mean, std=std, max_eps=max_eps, spread=spread, seed=seed,
                   config=config)
    results = [_probe_index(images, labels, class_names, *s, **options) for s in settings]
    return _probe_rows(results, class_names, row_height=3.4)


def explorer(images: Tensor, labels: Tensor, class_names: Sequence[str],
             models: Mapping[str, torch.nn.Module] | None = None,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
             max_eps: float = 0.9, spread: str = "others", seed: int = 0,
             config: DegradationConfig = TRAIN) -> widgets.VBox:
    """Sliders for image, kind, level and bins over ``images`` (e.g. the test split), redrawing
    :func:`probe_figure` on every change; returns the ipywidgets box to display."""
    _check_split(images, labels, class_names)
    options = dict(models=models, mean=mean, std=std, max_eps=max_eps, spread=spread, seed=seed,
                   config=config)
    # Raise bad arguments here: inside the widgets' output area a kernel would only print them.
    _probe_index(images, labels, class_names, 0, KINDS[0], 0.0, 64, **options)
    controls = {
        "index": widgets.IntSlider(0, min=0, max=len(images) - 1, description="image",
                                   continuous_update=False),
        "kind": widgets.Dropdown(options=KINDS, value=KINDS[0], description="kind"),
        "level": widgets.FloatSlider(0.5, min=0.0, max=1.0, step=0.01, description="level d",
                                     continuous_update=False),
        "bins": widgets.IntSlider(64, min=8, max=256, step=8, description="bins",
                                  continuous_update=False),
    }

    def show(index: int, kind: str, level: float, bins: int) -> None:
        result = _probe_index(images, labels, class_names, index, kind, level, bins, **options)
        display(probe_figure(result, class_names))

    output = widgets.interactive_output(show, controls)
    return widgets.VBox([widgets.HBox(list(controls.values())), output])
