"""Thumbnails: a gallery of a data set's classes, a kind x level grid of degraded images, and one
training batch unrolled."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from imlib._checks import check_class_names, check_images, check_int, check_same_shape
from imlib.data import ImageData
from imlib.degradations import KINDS
from imlib.style import new_figure

__all__ = ["class_gallery", "plot_image_grid", "training_batch_grid"]


def _image_grid(tiles: Tensor, titles: Sequence[Sequence[str]], row_labels: Sequence[str],
                col_labels: Sequence[str], title: str | None, tile_size: float) -> Figure:
    """Thumbnails ``tiles`` (R, L, C, H, W), each titled, rows and columns labelled."""
    rows, cols = tiles.shape[:2]
    if len(row_labels) != rows or len(col_labels) != cols:
        raise ValueError(f"row_labels and col_labels must have {rows} and {cols} entries, got "
                         f"{len(row_labels)} and {len(col_labels)}")
    pictures = tiles.detach().cpu().float().clamp(0, 1).permute(0, 1, 3, 4, 2).numpy()
    fig = new_figure(tile_size * cols, tile_size * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    for (r, c), ax in np.ndenumerate(axes):
        ax.imshow(pictures[r, c].squeeze(-1) if pictures.shape[-1] == 1 else pictures[r, c],
                  cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(titles[r][c], fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel(col_labels[c] if r == rows - 1 else "", fontsize=9)
        ax.set_ylabel(row_labels[r] if c == 0 else "", fontsize=10)
    if title:
        fig.suptitle(title)
    return fig


def plot_image_grid(tiles: Tensor, scores: Tensor, row_labels: Sequence[str],
                    col_labels: Sequence[str], title: str | None = None,
                    tile_size: float = 1.6) -> Figure:
    """A Figure of ``tiles`` (R, L, C, H, W), each titled ``NMI <score>`` from ``scores``
    (R, L); rows labelled ``row_labels`` (e.g. kinds), columns ``col_labels`` (e.g. levels)."""
    if (not isinstance(tiles, Tensor) or not isinstance(scores, Tensor) or tiles.ndim != 5
            or tuple(scores.shape) != tuple(tiles.shape[:2])):
        raise ValueError("tiles must be a tensor (R, L, C, H, W) and scores (R, L), got "
                         f"{getattr(tiles, 'shape', tiles)} and {getattr(scores, 'shape', scores)}")
    titles = [[f"NMI {s:.2f}" for s in row] for row in scores.tolist()]
    return _image_grid(tiles, titles, row_labels, col_labels, title, tile_size)


def training_batch_grid(clean: Tensor, degraded: Tensor, kinds: Tensor, levels: Tensor,
                        nmi: Tensor, eps: Tensor, true_mass: Tensor, *, labels: Tensor,
                        class_names: Sequence[str], n: int = 8) -> Figure:
    """The first ``n`` samples of one training batch: clean thumbnails titled with their class
    name (top row) and degraded ones (bottom row) titled with their kind and level d and
    labelled with their NMI, IM's eps and the target's mass on the true class (%).

    ``clean`` and ``degraded`` are (N, C, H, W) in [0, 1]; ``kinds`` (N,) int indices into
    ``imlib.degradations.KINDS``; ``levels``, ``nmi``, ``eps``, ``true_mass`` and ``labels``
    (N,), the labels indexing ``class_names``.
    """
    check_images(clean, "clean")
    check_images(degraded, "degraded")
    check_same_shape(clean, degraded, ("clean", "degraded"))
    check_int(n, "n", 1)
    check_class_names(class_names)
    size = clean.shape[0]
    per_sample = {"kinds": kinds, "levels": levels, "nmi": nmi, "eps": eps,
                  "true_mass": true_mass, "labels": labels}
    for name, values in per_sample.items():
        if not isinstance(values, Tensor) or tuple(values.shape) != (size,):
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"{name} must be a tensor of shape ({size},), got {shape}")
    if kinds.is_floating_point() or not bool(((kinds >= 0) & (kinds < len(KINDS))).all()):
        raise ValueError(f"kinds must hold int indices into KINDS {KINDS}, got {kinds.tolist()}")
    if labels.is_floating_point() or not bool(((labels >= 0)
                                                 & (labels < len(class_names))).all()):
        raise ValueError(f"labels must hold int indices into class_names, got {labels.tolist()}")
    n = min(n, size)
    kind, level, info, smoothing, mass, label = (values[:n].tolist()
                                                 for values in per_sample.values())
    titles = [[class_names[k] for k in label],
              [f"{KINDS[k]}, d = {d:.2f}" for k, d in zip(kind, level, strict=True)]]
    captions = [f"NMI {i:.2f}, ε {e:.2f}\ntarget {100 * m:.0f} % true"
                for i, e, m in zip(info, smoothing, mass, strict=True)]
    tiles = torch.stack([clean[:n], degraded[:n]])
    return _image_grid(tiles, titles, ["clean", "degraded"], captions,
                       "One training batch: degrade, measure NMI, smooth the label", 1.9)


def class_gallery(data: ImageData, per_class: int = 6, max_classes: int = 10,
                  seed: int = 0) -> Figure:
    """Training images of ``data``, one row per class labelled with its name: ``per_class``
    images drawn at random (``seed``) from each of at most ``max_classes`` classes, spread
    evenly over the classes when there are more (every class of a 10-class set; 10 of
    CIFAR-100's 100)."""
    if not isinstance(data, ImageData):
        raise ValueError(f"data must be an imlib.data.ImageData, got {type(data).__name__}")
    check_int(per_class, "per_class", 1)
    check_int(max_classes, "max_classes", 1)
    shown = np.unique(np.linspace(0, data.num_classes - 1, min(max_classes, data.num_classes))
                      .round().astype(int)).tolist()
    g = torch.Generator().manual_seed(seed)
    rows = []
    for c in shown:
        members = (data.y_train == c).nonzero().squeeze(1)
        if len(members) < per_class:
            raise ValueError(f"class {c} ({data.classes[c]!r}) has {len(members)} training "
                             f"images, fewer than per_class={per_class}")
        rows.append(data.x_train[members[torch.randperm(len(members), generator=g)[:per_class]]])
    tiles = torch.stack(rows).float() / 255
    titles = [[""] * per_class for _ in shown]
    part = "" if len(shown) == data.num_classes else f" ({len(shown)} of {data.num_classes})"
    return _image_grid(tiles, titles, [f"{c}: {data.classes[c]}" for c in shown],
                       [""] * per_class, f"{data.name}: {per_class} training images of each "
                       f"class{part}", 0.8)
