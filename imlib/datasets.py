"""The data sets of the study by name (``DATASETS``, :func:`load_dataset`,
:func:`dataset_classes`), scikit-learn's handwritten digits (real images, offline), and
what each set is, for a notebook or report to show beside its results: a card per set
(``DATASET_CARDS``) and how much each cue alone separates its classes
(:func:`cue_separability`).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from imlib._checks import check_choice, check_int
from imlib.data import CIFAR100_PAGE, ImageData, holdout_split, load_cifar100, synthetic

__all__ = ["CUE_FEATURES", "DATASETS", "DATASET_CARDS", "DIGITS_TEST_FRACTION",
           "cue_separability", "dataset_classes", "digits_split", "load_dataset", "load_digits"]

DATASETS = ("synthetic", "cifar100", "digits")
DIGITS_TEST_FRACTION = 0.2  # of each digit's images, held out as the test split (seed 0)

# Source, images, split and scaling of each name in DATASETS.
DATASET_CARDS: dict[str, dict[str, str]] = {
    "cifar100": {
        "source": f"CIFAR-100 (Krizhevsky 2009), {CIFAR100_PAGE}, through torchvision",
        "images": "60,000 natural 32 x 32 RGB images, 100 classes",
        "split": "the official 50,000 training / 10,000 test images",
        "scaling": "none (32 x 32 RGB as published); normalised with the published "
                   "per-channel mean and std",
    },
    "digits": {
        "source": "scikit-learn's bundled handwritten digits (sklearn.datasets.load_digits, "
                  "UCI optdigits test set): real images, no download",
        "images": "1,797 grey 8 x 8 images, values 0-16, classes '0'..'9' (174-183 each)",
        "split": "1,438 training / 359 test images: 20 % of each digit held out for testing "
                 "(imlib.data.holdout_split, seed 0), the same split on every machine",
        "scaling": "bilinear upscaling from 8 x 8 to 32 x 32 (pixel centres aligned, edges "
                   "repeated), values 0-16 scaled to 0-255 and rounded, the grey copied to 3 "
                   "channels (the CIFAR layout); mean/std from the training images",
    },
    "synthetic": {
        "source": "imlib.data.synthetic: generated in memory from a seed, offline",
        "images": "32 x 32 RGB, K classes, a colour edge (coarse cue) and a grating "
                  "(fine cue) per class; synthetic_cue chooses which of them carry the class",
        "split": "separate training and test draws of the generator",
        "scaling": "none (drawn at 32 x 32); mean/std from the training images",
    },
}


def _mean_colour(x: Tensor) -> Tensor:
    """(N, 3) mean colour: what is left once heavy blur or mosaic has flattened an image."""
    return (x.float() / 255).mean(dim=(2, 3))


def _colour_layout(x: Tensor) -> Tensor:
    """(N, 192) colours of an 8x8 grid: the colour edge's layout, without fine detail."""
    return F.avg_pool2d(x.float() / 255, 4).flatten(1)


def _grating_spectrum(x: Tensor) -> Tensor:
    """(N, 1024) spectrum magnitude of the high-passed luminance: fine texture, blind to its
    phase and position."""
    lum = x.float().mean(1, keepdim=True) / 255
    high = lum - F.avg_pool2d(lum, 5, stride=1, padding=2, count_include_pad=False)
    return torch.fft.fft2(high).abs().flatten(1)


CUE_FEATURES = {"mean_colour": _mean_colour, "colour_edge": _colour_layout,
                "grating": _grating_spectrum}


def cue_separability(data: ImageData) -> dict[str, float]:
    """How well each cue alone tells the classes of ``data`` apart: the test accuracy of a
    nearest-class-mean classifier fitted on the training images to one feature at a time
    (``mean_colour``; ``colour_edge``, 8x8 colours; ``grating``, the high-passed luminance
    spectrum), beside ``chance`` (1 / K). On the synthetic set it shows where ``cue`` put
    the class; on any set, what a flattened (blurred, mosaicked) image can still tell."""
    if not isinstance(data, ImageData):
        raise ValueError(f"data must be an ImageData (e.g. synthetic(...)), got "
                         f"{type(data).__name__}")
    k = data.num_classes
    counts = torch.bincount(data.y_train, minlength=k).clamp(min=1)[:, None].float()
    scores = {"chance": 1 / k}
    for name, feature in CUE_FEATURES.items():
        train, test = feature(data.x_train), feature(data.x_test)
        centres = torch.zeros(k, train.shape[1]).index_add_(0, data.y_train, train) / counts
        predicted = torch.cdist(test, centres).argmin(1)
        scores[name] = (predicted == data.y_test).double().mean().item()
    return scores


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images (1797, 8, 8) of integers 0-16, labels (1797,)."""
    from sklearn.datasets import load_digits as sklearn_load_digits  # here: seconds to import

    bunch = sklearn_load_digits()
    return bunch.images.astype(np.int64), bunch.target.astype(np.int64)


def digits_split() -> tuple[Tensor, Tensor]:
    """``(train_idx, test_idx)`` of :func:`load_digits`, indices into scikit-learn's order.

    20 % of each digit's images (``DIGITS_TEST_FRACTION``, rounded per digit: 359 of 1,797)
    form the test split, drawn by :func:`holdout_split` with seed 0, so it is stratified and
    the same everywhere; both index tensors are sorted.
    """
    return _split_digits(torch.from_numpy(_sklearn_digits()[1]))


def _split_digits(labels: Tensor) -> tuple[Tensor, Tensor]:
    return holdout_split(labels, DIGITS_TEST_FRACTION, seed=0)


def load_digits() -> ImageData:
    """scikit-learn's 1,797 real handwritten digits as 32x32 RGB images (its card:
    ``DATASET_CARDS["digits"]``).

    The 8x8 grey images (values 0-16) are upscaled bilinearly to 32x32 (``F.interpolate``,
    ``align_corners=False``: pixel centres aligned, the border repeated), scaled to 0-255 and
    rounded, and the grey is copied to three channels, so the degradations and the CNN see
    CIFAR's layout. Bilinear rather than nearest: 4x4 blocks of one grey would make mosaic
    with patches of 2 or 4 pixels the identity and give blur sharp block edges to remove.
    Split by :func:`digits_split` (1,438 train / 359 test); ``mean``/``std`` are those of the
    training images, classes ``"0"`` to ``"9"``.
    """
    images, labels = _sklearn_digits()
    small = torch.from_numpy(images).to(torch.float64)[:, None]
    grey = F.interpolate(small, size=32, mode="bilinear", align_corners=False)
    x = grey.mul_(255 / 16).round_().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(labels)
    train_idx, test_idx = _split_digits(y)
    scaled = x[train_idx].float() / 255
    return ImageData(
        name="digits",
        x_train=x[train_idx],
        y_train=y[train_idx],
        x_test=x[test_idx],
        y_test=y[test_idx],
        classes=tuple(str(d) for d in range(10)),
        mean=tuple(scaled.mean(dim=(0, 2, 3)).tolist()),
        std=tuple(scaled.std(dim=(0, 2, 3)).tolist()),
    )


def load_dataset(name: str, root: str | os.PathLike | None = None, **kwargs) -> ImageData:
    """The data set called ``name`` (one of ``DATASETS``); ``kwargs`` go to its loader.

    ``root`` is where ``cifar100`` lives (see ``imlib.data.data_root``); ``synthetic`` is
    generated in memory and ``digits`` ships with scikit-learn: both ignore it, so one config
    can name any.
    """
    check_choice(name, DATASETS, "name")
    if name == "cifar100":
        return load_cifar100(root, **kwargs)
    if name == "digits":
        return load_digits(**kwargs)
    return synthetic(**kwargs)


def dataset_classes(name: str, synthetic_classes: int = 10) -> int:
    """K of the data set ``name`` without loading it (``synthetic_classes`` for the synthetic
    set, which has as many as asked for)."""
    check_choice(name, DATASETS, "name")
    if name == "synthetic":
        check_int(synthetic_classes, "synthetic_classes", 2)
        return synthetic_classes
    return {"cifar100": 100, "digits": 10}[name]
