"""The image data of the study: CIFAR-100 through torchvision and an offline synthetic
stand-in whose class cues can be chosen (the data sets by name, the digits among them, are
:mod:`imlib.datasets`).

Both come as :class:`ImageData`, uint8 tensors that the training loop moves to the device once and
batches there. Images are scaled to [0, 1] by the caller (``x.float() / 255``) and then
normalised with :func:`normalize` and the set's ``mean``/``std``. CIFAR-100-C is
:mod:`imlib.corruptions`.
"""

from __future__ import annotations

import math
import os
import pickle
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from imlib._checks import check_choice, check_images, check_int

__all__ = [
    "CIFAR100_MD5",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "SYNTHETIC_CUES",
    "ImageData",
    "data_root",
    "denormalize",
    "holdout_split",
    "load_cifar100",
    "normalize",
    "synthetic",
    "synthetic_cues",
]

# Per-channel mean and std of the CIFAR-100 training images on [0, 1], as the paper normalises.
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
# md5 of the official cifar-100-python.tar.gz (torchvision checks the same value).
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
SYNTHETIC_CUES = ("both", "coarse", "fine")  # where the synthetic set's class lives

@dataclass(frozen=True)
class ImageData:
    """A train/test image classification set held as uint8 tensors."""

    name: str
    x_train: Tensor  # uint8 (N, 3, 32, 32)
    y_train: Tensor  # int64 (N,)
    x_test: Tensor  # uint8 (M, 3, 32, 32)
    y_test: Tensor  # int64 (M,)
    classes: tuple[str, ...]
    mean: tuple[float, float, float]  # per-channel mean of the [0, 1] training images
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------------------------------------
# CIFAR-100


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else the ``IMLIB_DATA`` environment variable, else
    ``./data``; returned absolute, so messages and logs name the folder actually used. A
    regular file there (the archive itself, say) is refused by name: the folder holds it."""
    given_as = "data_root"
    if root is None:
        given_as = "IMLIB_DATA" if os.environ.get("IMLIB_DATA") else "the default"
        root = os.environ.get("IMLIB_DATA") or "data"
    elif not isinstance(root, (str, os.PathLike)) or not os.fspath(root):
        raise ValueError(f"root must be a non-empty path or None, got {root!r}")
    folder = Path(root).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"the data folder {folder} ({given_as}) is a file, not a folder; give "
                         "the folder that holds (or will hold) cifar-100-python.tar.gz")
    return folder


def _offline_help(root: Path) -> str:
    return (
        f"To proceed offline, place cifar-100-python.tar.gz (md5 {CIFAR100_MD5}, from "
        f"{CIFAR100_PAGE}) in {root}, or its extracted folder cifar-100-python/ there, "
        "or set IMLIB_DATA to a folder that holds either."
    )


def load_cifar100(root: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """CIFAR-100 (50,000 train and 10,000 test images, 100 fine classes) from :func:`data_root`.

    Two steps. torchvision's ``CIFAR100`` downloads the archive when it is missing and checks
    the md5 of ``train``, ``test`` and ``meta`` against the official values, so a corrupted or
    unofficial copy is refused and a machine that already holds the archive or the extracted
    folder never touches the network. Then :func:`_read_cifar100_folder` reads the verified
    files: a short reader of the official layout that the tests run on a small copy, which no
    md5 check would let through ``CIFAR100`` (and which is not patched to pass).
    """
    from torchvision.datasets import CIFAR100  # here: torchvision takes seconds to import

    if not isinstance(download, bool):
        raise ValueError(f"download must be a bool, got {download!r}")
    root = data_root(root)
    archive = root / CIFAR100.filename
    try:
        # Constructing the (smaller) test split downloads if needed and verifies all three files.
        CIFAR100(root, train=False, download=download)
    except (urllib.error.URLError, ConnectionError, TimeoutError, HTTPException,
            OSError, RuntimeError) as err:
        _refuse_bad_archive(archive, err)
        raise _cifar100_error(err, root, download) from err
    return _read_cifar100_folder(root / CIFAR100.base_folder)


def _refuse_bad_archive(archive: Path, err: Exception) -> None:
    """Raise when ``archive`` exists with another md5 than the official one: that, not the
    network or a missing file, is then why CIFAR-100 could not be prepared."""
    from torchvision.datasets.utils import calculate_md5

    if not archive.is_file():
        return
    found = calculate_md5(str(archive))
    if found != CIFAR100_MD5:
        raise RuntimeError(
            f"{archive} is not the official CIFAR-100 archive: its md5 is {found}, expected "
            f"{CIFAR100_MD5}. Delete it (it is downloaded again) or replace it with the "
            f"archive from {CIFAR100_PAGE}."
        ) from err


def _cifar100_error(err: Exception, root: Path, download: bool) -> RuntimeError:
    """The message for a failed download or check, with how to proceed offline."""
    from torchvision.datasets import CIFAR100

    if isinstance(err, (urllib.error.URLError, ConnectionError, TimeoutError, HTTPException)):
        return RuntimeError(
            f"could not reach the CIFAR-100 host ({CIFAR100.url}) to download it into {root}: "
            f"{err}. " + _offline_help(root)
        )
    if isinstance(err, OSError):  # e.g. root not writable
        return RuntimeError(f"could not prepare CIFAR-100 in {root}: {err}. " + _offline_help(root))
    # torchvision: files not found or corrupted (md5 mismatch)
    return RuntimeError(f"CIFAR-100 is missing or corrupted in {root} ({err}; "
                        f"download={download}). " + _offline_help(root))


def _read_cifar100_folder(folder: Path) -> ImageData:
    """Read ``train``, ``test`` and ``meta`` of an extracted ``cifar-100-python`` folder.

    The official pickles hold ``data``, uint8 rows of 3072 values (the 1024 red, then green, then
    blue pixels of a 32x32 image, row-major), ``fine_labels`` and, in ``meta``,
    ``fine_label_names``. Integrity is checked by the caller.
    """
    x, y = {}, {}
    for split in ("train", "test"):
        entry = _unpickle(folder / split)
        x[split] = torch.from_numpy(
            np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        )
        y[split] = torch.as_tensor(entry["fine_labels"], dtype=torch.int64)
    classes = tuple(_unpickle(folder / "meta")["fine_label_names"])
    return ImageData(
        name="cifar100",
        x_train=x["train"],
        y_train=y["train"],
        x_test=x["test"],
        y_test=y["test"],
        classes=classes,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
    )


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # the official Python 2 pickles


# ---------------------------------------------------------------------------------------------
# Synthetic


def _hue(h: Tensor, saturation: float) -> Tensor:
    """RGB colours (K, 3) around mid-grey on a cosine hue wheel."""
    phases = torch.tensor([0.0, 1.0, 2.0]) / 3
    return 0.5 + saturation * torch.cos(2 * math.pi * (h[:, None] - phases))


def _class_patterns(num_classes: int) -> dict[str, Tensor]:
    """Fixed per-class attributes (K,) or (K, 3), independent of the seed.

    Additive recurrences ``frac(c * a)`` with irrational steps ``a`` (golden ratio, sqrt 2,
    sqrt 7) spread each attribute evenly over its circle for any K and keep class ``c``'s values
    as K grows; distinct steps keep classes close in one attribute apart in the others. The two
    colours of a class are a quarter turn apart, so their blend, what survives heavy blur and
    mosaic, still has the class's hue.
    """
    c = torch.arange(num_classes, dtype=torch.float64)

    def spread(step: float, offset: float) -> Tensor:
        return ((c * step + offset) % 1).float()

    hue = spread(math.sqrt(7) - 2, 0.1)
    return {
        "theta": math.pi * spread((math.sqrt(5) - 1) / 2, 0.3),  # grating orientation, radians
        "period": torch.tensor([2.6, 3.2, 4.0]).repeat(num_classes)[:num_classes],  # pixels
        "phi": 2 * math.pi * spread(math.sqrt(2) - 1, 0.05),  # colour edge direction, radians
        "colour_a": _hue(hue, 0.35),
        "colour_b": _hue((hue + 0.3) % 1, 0.25),
    }


def synthetic_cues(num_classes: int = 10, cue: str = "both") -> dict[str, list]:
    """What defines each class of :func:`synthetic` with ``cue``, read from the generator's own
    per-class attributes (so it cannot drift from them), as columns for a table (a cue that
    ``cue`` draws at random is left out: it defines no class):

    - the coarse cue, a soft edge from ``colour_a`` to ``colour_b`` (``#rrggbb``) along
      ``edge_direction_deg`` (0-360 degrees; each image jitters it by a std of 14 degrees);
    - the fine cue, a sine grating at ``grating_orientation_deg`` (0-180 degrees, jitter std
      9 degrees) with a period of ``grating_period_px`` pixels (+-8 % per image).

    Every image also carries up to 25 % of another class's edge and a weak grating of another
    class, under random phase, edge position, contrast, brightness, pixel noise and a mirror.
    How much each cue alone separates the classes: ``imlib.datasets.cue_separability``.
    """
    check_int(num_classes, "num_classes", 2)
    check_choice(cue, SYNTHETIC_CUES, "cue")
    pattern = _class_patterns(num_classes)

    def hex_colour(rgb: Tensor) -> str:
        return "#" + "".join(f"{round(255 * float(v)):02x}" for v in rgb.clamp(0, 1))

    columns: dict[str, list] = {"class": [f"class_{c}" for c in range(num_classes)]}
    if cue != "fine":
        columns["colour_a"] = [hex_colour(rgb) for rgb in pattern["colour_a"]]
        columns["colour_b"] = [hex_colour(rgb) for rgb in pattern["colour_b"]]
        columns["edge_direction_deg"] = [round(math.degrees(v), 1) for v in pattern["phi"].tolist()]
    if cue != "coarse":
        columns["grating_orientation_deg"] = [round(math.degrees(v), 1)
                                              for v in pattern["theta"].tolist()]
        columns["grating_period_px"] = [round(v, 2) for v in pattern["period"].tolist()]
    return columns


def _render(labels: Tensor, pattern: dict[str, Tensor], g: torch.Generator, cue: str) -> Tensor:
    """uint8 images (N, 3, 32, 32) of classes ``labels``, every nuisance drawn from ``g``.

    ``cue`` says which cues follow the label: ``"both"``, or only the colour edge
    (``"coarse"``) or only the grating (``"fine"``); the other cue is then drawn for a class
    chosen uniformly at random, independent of the label, so it carries no class information
    while the images keep the same kind of content.

    The nuisance sizes are set so that the small CNN of the smoke profile, trained on images
    that every variant degrades at a random level, reaches about 88-97 % on clean images, while
    a nearest-class-mean classifier on either cue alone gets about 75-80 % (the mean colour
    alone about 45 %): the classes overlap, and only both cues together separate them.
    """
    n = labels.shape[0]
    num_classes = pattern["theta"].shape[0]

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=g)

    def normal(std: float, *shape: int) -> Tensor:
        return std * torch.randn(n, *shape, generator=g)

    def other_class(cls: Tensor) -> Tensor:
        return (cls + torch.randint(1, num_classes, (n,), generator=g)) % num_classes

    def random_class() -> Tensor:
        return torch.randint(0, num_classes, (n,), generator=g)

    edge_class = random_class() if cue == "fine" else labels
    grating_class = random_class() if cue == "coarse" else labels

    coords = (torch.arange(32, dtype=torch.float32) - 15.5) / 32  # image widths, centred

    def along(angle: Tensor) -> Tensor:  # (N, 32, 32): position along a direction per image
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        return cos * coords[None, None, :] + sin * coords[None, :, None]

    def edge(cls: Tensor) -> Tensor:  # (N, 3, 32, 32): colour a blending into colour b
        phi = pattern["phi"][cls] + normal(0.25)  # radians of direction jitter
        # sharpness 4-12 per image width, edge position +-0.2 image widths from the centre
        ramp = torch.sigmoid(uniform(4, 12, 1, 1) * (along(phi) - uniform(-0.2, 0.2, 1, 1)))
        a, b = pattern["colour_a"][cls], pattern["colour_b"][cls]
        return torch.addcmul(a[:, :, None, None], (b - a)[:, :, None, None], ramp[:, None])

    def grating(cls: Tensor) -> Tensor:  # (N, 32, 32): unit sine of the class's orientation
        theta = pattern["theta"][cls] + normal(0.15)  # radians of orientation jitter
        freq = 2 * math.pi * 32 / (pattern["period"][cls] * uniform(0.92, 1.08))
        return torch.sin(freq[:, None, None] * along(theta) + uniform(0, 2 * math.pi, 1, 1))

    # Coarse: the edge blended with up to 25 % of another class's, plus a colour cast.
    mix = uniform(0.0, 0.25, 1, 1, 1)
    x = edge(edge_class).mul_(1 - mix).add_(edge(other_class(edge_class)).mul_(mix))
    x.add_(normal(0.06, 3, 1, 1))
    # Fine: the grating (amplitude 0.06-0.2) over a weaker one of another class (0-0.04).
    fine = grating(grating_class).mul_(uniform(0.06, 0.2, 1, 1))
    fine.add_(grating(other_class(grating_class)).mul_(uniform(0.0, 0.04, 1, 1)))
    x.add_(fine[:, None])
    # Contrast 0.7-1.1 about mid-grey, brightness shift (std 0.05), pixel noise (std 0.05).
    x.sub_(0.5).mul_(uniform(0.7, 1.1, 1, 1, 1)).add_(0.5 + normal(0.05, 1, 1, 1))
    x.add_(normal(0.05, 3, 32, 32))
    # Half the images mirrored left-right: the training flip then stays within the distribution.
    x = torch.where(torch.rand(n, 1, 1, 1, generator=g) < 0.5, x.flip(-1), x)
    return x.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def synthetic(
    n_per_class: int,
    num_classes: int = 10,
    seed: int = 0,
    test_per_class: int | None = None,
    cue: str = "both",
) -> ImageData:
    """A deterministic, offline 32x32 RGB data set whose class lives in coarse and fine structure.

    Each class has a coarse cue (a two-colour soft edge along a class direction, partly mixed
    with another class's) and a fine cue (a grating of class orientation and a 2.6-4 pixel
    period), under random phase, shift, contrast, brightness, pixel noise and a left-right
    mirror. Blur and mosaic remove the fine cue first and the coarse one later (the blend of
    the two colours keeps the class's hue); noise and patch dropout erode both. The same
    arguments give the same bytes; ``test_per_class`` defaults to ``max(1, n_per_class // 5)``.

    ``cue`` (one of ``SYNTHETIC_CUES``) chooses where the class lives: ``"both"`` cues (the
    default), only the ``"coarse"`` colour edge, which survives blur and mosaic, or only the
    ``"fine"`` grating, which they destroy early; the cue left out is drawn for a random class
    (``imlib.datasets.cue_separability`` measures what each cue then tells apart).

    >>> data = synthetic(20, num_classes=4)
    >>> data.x_train.shape, data.x_test.shape, data.classes[0]
    (torch.Size([80, 3, 32, 32]), torch.Size([16, 3, 32, 32]), 'class_0')
    """
    check_int(n_per_class, "n_per_class", 1)
    check_int(num_classes, "num_classes", 2)
    check_int(seed, "seed", 0)
    if test_per_class is None:
        test_per_class = max(1, n_per_class // 5)
    check_int(test_per_class, "test_per_class", 1)
    check_choice(cue, SYNTHETIC_CUES, "cue")

    g = torch.Generator().manual_seed(seed)
    pattern = _class_patterns(num_classes)
    y_train = torch.arange(num_classes).repeat(n_per_class)
    y_test = torch.arange(num_classes).repeat(test_per_class)
    x_train = _render(y_train, pattern, g, cue)
    x_test = _render(y_test, pattern, g, cue)
    scaled = x_train.float() / 255
    return ImageData(
        name="synthetic",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=tuple(f"class_{c}" for c in range(num_classes)),
        mean=tuple(scaled.mean(dim=(0, 2, 3)).tolist()),
        std=tuple(scaled.std(dim=(0, 2, 3)).tolist()),
    )


def holdout_split(labels: Tensor, fraction: float = 0.1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split the indices of ``labels`` into ``(train_idx, holdout_idx)``, stratified per class.

    Each class with ``n`` samples gives ``round(fraction * n)`` of them, at least one and at most
    ``n - 1`` (a class of one stays in train), chosen at random from ``seed``. Both are sorted
    int64 index tensors on ``labels``' device; together they cover every index exactly once.

    >>> train_idx, holdout_idx = holdout_split(torch.arange(4).repeat(10), fraction=0.2)
    >>> len(train_idx), len(holdout_idx)
    (32, 8)
    """
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.numel() == 0:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a non-empty 1-D integer tensor (N,), got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be a number in (0, 1), got {fraction!r}")
    check_int(seed, "seed", 0)
    y = labels.detach().cpu().long()
    if int(y.min()) < 0:
        raise ValueError(f"labels must be >= 0, got a minimum of {int(y.min())}")

    # Shuffle, then stable-sort by class: each class's indices in random order, classes in a row.
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    order = perm[torch.argsort(y[perm], stable=True)]
    counts = torch.bincount(y)
    n_holdout = (fraction * counts).round().long().clamp(min=1).minimum(counts - 1).clamp(min=0)
    rank = torch.arange(len(y)) - (torch.cumsum(counts, 0) - counts)[y[order]]
    is_holdout = rank < n_holdout[y[order]]
    train_idx, holdout_idx = order[~is_holdout].sort().values, order[is_holdout].sort().values
    return train_idx.to(labels.device), holdout_idx.to(labels.device)


def _channel_stats(x: Tensor, mean: Sequence[float], std: Sequence[float]
                   ) -> list[tuple[float, float]]:
    """Validated host numbers ``(mean_c, std_c)`` for each channel of images ``x``."""
    check_images(x, values=False)
    c = x.shape[1]
    stats = {}
    for name, values in (("mean", mean), ("std", std)):
        try:
            stats[name] = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a sequence of {c} numbers, got {values!r}") from None
        if len(stats[name]) != c or not all(math.isfinite(v) for v in stats[name]):
            raise ValueError(
                f"{name} must hold {c} finite numbers (one per channel), got {values!r}"
            )
    if min(stats["std"]) <= 0:
        raise ValueError(f"std must be positive, got {std!r}")
    return list(zip(stats["mean"], stats["std"], strict=True))


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel, for float images ``x`` (N, C, H, W) on any device.

    ``mean`` and ``std`` are host numbers (C values each), applied as scalars channel by
    channel, so nothing is copied to the device and nothing waits for it.

    >>> normalize(torch.full((1, 3, 2, 2), 0.5), CIFAR100_MEAN, CIFAR100_STD)[0, :, 0, 0]
    tensor([-0.0265,  0.0519,  0.2144])
    """
    stats = _channel_stats(x, mean, std)
    out = torch.empty_like(x)
    for i, (m, s) in enumerate(stats):
        torch.sub(x[:, i], m, out=out[:, i]).div_(s)
    return out


def denormalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``x * std + mean`` per channel: the inverse of :func:`normalize` with the same
    arguments, back to the images' [0, 1] scale (values outside it are kept, not clamped).

    >>> x = torch.rand(2, 3, 4, 4)
    >>> y = denormalize(normalize(x, CIFAR100_MEAN, CIFAR100_STD), CIFAR100_MEAN, CIFAR100_STD)
    >>> torch.allclose(y, x, atol=1e-6)
    True
    """
    stats = _channel_stats(x, mean, std)
    out = torch.empty_like(x)
    for i, (m, s) in enumerate(stats):
        torch.mul(x[:, i], s, out=out[:, i]).add_(m)
    return out
