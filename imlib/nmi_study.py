"""The computations behind notebooks 01 (theory) and 02 (can we trust the NMI estimator?).

Each function returns a tensor or a pandas DataFrame that a notebook shows, plots and saves:

- :func:`sklearn_agreement`: imlib's NMI against scikit-learn's, per pair.
- :func:`nmi_by_level`: mean, std and 10/90 % quantiles of NMI per kind, level and bins.
- :func:`eps_distribution`: the smoothing ``eps`` that IM trains with under ``random_degrade``.
- :func:`loop_vs_batched_throughput`: the batched estimator against a loop over images.
- :func:`photograph`, :func:`sample_images`, :func:`degradation_grid`: the images the
  notebooks look at (:func:`imlib.thumbnails.plot_image_grid` draws a grid of them).

Python loops here run over kinds, levels, bins or channels of a small validation set, never
inside the estimator itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from imlib._checks import check_fraction, check_images, check_int, check_same_shape
from imlib.data import ImageData
from imlib.degradations import (KINDS, LEVELS, TRAIN, DegradationConfig, check_kinds,
                                check_levels, degrade, random_degrade)
from imlib.labels import im_eps
from imlib.nmi import bin_codes, nmi

__all__ = [
    "LEVELS",
    "BINS",
    "photograph",
    "sample_images",
    "sklearn_nmi",
    "sklearn_agreement",
    "nmi_by_level",
    "eps_distribution",
    "loop_vs_batched_throughput",
    "degradation_grid",
]

BINS = (16, 32, 64, 128, 256)  # histogram sizes of the bins study (the paper uses 64)


# --- images -----------------------------------------------------------------------------------


def photograph(name: str = "astronaut", size: int = 64) -> Tensor:
    """A scikit-image sample photograph, centre-cropped square, as float (1, 3, size, size).

    Downscaled with antialiasing, so the values stay in [0, 1]. scikit-image bundles the
    photographs: no download.
    """
    from skimage import data as samples

    if name not in ("astronaut", "chelsea", "coffee", "rocket"):
        raise ValueError(f"name must be a colour photograph of skimage.data, got {name!r}")
    check_int(size, "size", 1)
    rgb = torch.from_numpy(np.ascontiguousarray(getattr(samples, name)()))  # (H, W, 3) uint8
    side = min(rgb.shape[:2])
    top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    x = rgb[top:top + side, left:left + side].permute(2, 0, 1).unsqueeze(0).float() / 255
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                        align_corners=False)
    return x.clamp_(0, 1)


def sample_images(data: ImageData, n: int, seed: int = 0, split: str = "train") -> Tensor:
    """``min(n, available)`` images of ``split`` drawn without replacement, float in [0, 1]."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    check_int(n, "n", 1)
    images = data.x_train if split == "train" else data.x_test
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    return images[order[:n]].float() / 255


# --- the estimator against scikit-learn ---------------------------------------------------------


def sklearn_nmi(x: Tensor, y: Tensor, bins: int = 64) -> np.ndarray:
    """scikit-learn's arithmetic NMI of every channel of every pair on imlib's bin codes (N, C).

    scikit-learn's own conventions, unchanged: a channel constant in both images scores 1.
    """
    from sklearn.metrics import normalized_mutual_info_score

    check_images(x, "x")
    check_images(y, "y")
    check_same_shape(x, y)
    cx = bin_codes(x, bins).flatten(2).cpu().numpy()
    cy = bin_codes(y, bins).flatten(2).cpu().numpy()
    out = np.empty(cx.shape[:2])
    for i, j in np.ndindex(*out.shape):
        out[i, j] = normalized_mutual_info_score(cx[i, j], cy[i, j], average_method="arithmetic")
    return out


def sklearn_agreement(x: Tensor, y: Tensor, bins: int = 64) -> pd.DataFrame:
    """imlib's NMI and scikit-learn's on the same bin codes, one row per pair.

    Columns: ``imlib``; ``sklearn_raw`` (channel mean of :func:`sklearn_nmi`); ``sklearn`` (the
    same with imlib's one deliberate convention: a channel constant in both images counts 0,
    not 1); ``both_constant`` (how many such channels); ``abs_diff = |imlib - sklearn|``.

    >>> x = torch.rand(2, 3, 8, 8)
    >>> float(sklearn_agreement(x, x)["abs_diff"].max()) < 1e-6
    True
    """
    raw = sklearn_nmi(x, y, bins)
    flat_x, flat_y = bin_codes(x, bins).flatten(2), bin_codes(y, bins).flatten(2)
    constant = ((flat_x.amin(2) == flat_x.amax(2)) & (flat_y.amin(2) == flat_y.amax(2)))
    constant = constant.cpu().numpy()
    ours = nmi(x, y, bins).double().cpu().numpy()
    theirs = np.where(constant, 0.0, raw).mean(1)
    return pd.DataFrame({"pair": np.arange(len(ours)), "imlib": ours,
                         "sklearn_raw": raw.mean(1), "sklearn": theirs,
                         "both_constant": constant.sum(1), "abs_diff": np.abs(ours - theirs)})


# --- NMI against the degradation level -----------------------------------------------------------


def nmi_by_level(x: Tensor, kinds: Sequence[str] = KINDS, levels: Sequence[float] = LEVELS,
                 bins: int | Sequence[int] = 64, seed: int = 0,
                 config: DegradationConfig = TRAIN) -> pd.DataFrame:
    """NMI between ``x`` and ``degrade(x, kind, level)`` summarised over the images.

    One row per (kind, level, bins): ``mean``, ``std``, ``q10``, ``q90`` and ``n`` (images).
    Every bins value scores the same degraded images, so curves for different bins differ only
    by the estimator. Randomness (diffusion, dropout) comes from one generator seeded ``seed``.

    >>> table = nmi_by_level(torch.rand(4, 3, 16, 16), kinds=["blur"], levels=[0.0, 1.0])
    >>> table["mean"].round(3).tolist()[0]
    1.0
    """
    check_images(x, "x")
    kinds, levels = check_kinds(kinds), check_levels(levels)
    bins = (bins,) if isinstance(bins, int) else tuple(bins)
    if not bins:
        raise ValueError("bins must be an int >= 2 or a non-empty sequence of them")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    rows = []
    for kind in kinds:
        for level in levels:
            y = degrade(x, kind, level, generator=generator, config=config)
            for b in bins:
                v = nmi(x, y, bins=b).double().cpu()
                q10, q90 = torch.quantile(v, torch.tensor([0.1, 0.9], dtype=v.dtype)).tolist()
                rows.append({"kind": kind, "level": level, "bins": b, "mean": v.mean().item(),
                             "std": v.std().item() if len(v) > 1 else 0.0,
                             "q10": q10, "q90": q90, "n": len(v)})
    return pd.DataFrame(rows)


def eps_distribution(x: Tensor, n_draws: int, bins: int = 64, max_eps: float = 0.9,
                     seed: int = 0, config: DegradationConfig = TRAIN) -> pd.DataFrame:
    """``n_draws`` draws of IM's training augmentation on the images of ``x`` (taken in turn).

    Each draw is ``random_degrade`` (a kind uniform over ``config.kinds``, ``level ~ U(0, 1)``)
    and its ``eps = clamp(1 - NMI, 0, max_eps)``, as in :func:`imlib.labels.information_matching`.
    Columns: ``image`` (index into x), ``kind``, ``level``, ``nmi``, ``eps``, ``clamped``
    (``1 - NMI >= max_eps``: eps was cut to ``max_eps``).
    """
    check_images(x, "x")
    check_int(n_draws, "n_draws", 1)
    check_fraction(max_eps, "max_eps")
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one image")
    image = torch.arange(n_draws, device=x.device) % x.shape[0]
    generator = torch.Generator(device=x.device).manual_seed(seed)
    clean = x[image]
    degraded, kind, level = random_degrade(clean, generator=generator, config=config)
    score = nmi(clean, degraded, bins=bins)
    eps = im_eps(score, max_eps)
    return pd.DataFrame({"image": image.cpu().numpy(),
                         "kind": [KINDS[k] for k in kind.tolist()],
                         "level": level.cpu().numpy(), "nmi": score.cpu().numpy(),
                         "eps": eps.cpu().numpy(),
                         "clamped": (1 - score >= max_eps).cpu().numpy()})


# --- speed ---------------------------------------------------------------------------------------


def _best_seconds(fn, repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def loop_vs_batched_throughput(x: Tensor, y: Tensor, bins: int = 64, repeats: int = 3,
                               loop_images: int = 32) -> pd.DataFrame:
    """Images per second of ``nmi`` on the whole batch and in a loop of one-image calls.

    The loop times the first ``min(loop_images, N)`` pairs (it is slow by design); each method's
    time is the best of ``repeats`` after one warm-up. Informative only: the numbers depend on
    the machine and its load. Columns: ``method``, ``images``, ``seconds``, ``images_per_s``,
    ``device``, ``threads``, ``bins``, ``repeats``.
    """
    check_images(x, "x")
    check_images(y, "y")
    check_same_shape(x, y)
    check_int(repeats, "repeats", 1)
    check_int(loop_images, "loop_images", 1)
    n_loop = min(loop_images, x.shape[0])
    if n_loop == 0:
        raise ValueError("x must hold at least one image")

    def batched() -> None:
        nmi(x, y, bins=bins)

    def loop() -> None:
        for i in range(n_loop):
            nmi(x[i:i + 1], y[i:i + 1], bins=bins)

    rows = []
    for method, fn, images in (("batched", batched, x.shape[0]), ("loop", loop, n_loop)):
        fn()  # warm-up
        seconds = _best_seconds(fn, repeats, x.device)
        rows.append({"method": method, "images": images, "seconds": seconds,
                     "images_per_s": images / seconds, "device": str(x.device),
                     "threads": torch.get_num_threads(), "bins": bins, "repeats": repeats})
    return pd.DataFrame(rows)


# --- a grid of degraded images -----------------------------------------------------------------


def degradation_grid(image: Tensor, kinds: Sequence[str] = KINDS,
                     levels: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), bins: int = 64,
                     seed: int = 0, config: DegradationConfig = TRAIN) -> tuple[Tensor, Tensor]:
    """``image`` (1, C, H, W) degraded by every kind at every level, and each tile's NMI.

    Returns ``(tiles, scores)``: tiles (K, L, C, H, W) and scores (K, L), for kinds K and
    levels L; one ``degrade`` call per kind with one level per column.
    """
    check_images(image, "image")
    if image.shape[0] != 1:
        raise ValueError(f"image must hold one image (1, C, H, W), got {tuple(image.shape)}")
    kinds, levels = check_kinds(kinds), check_levels(levels)
    generator = torch.Generator(device=image.device).manual_seed(seed)
    copies = image.expand(len(levels), *image.shape[1:])
    level = torch.tensor(levels, device=image.device)
    tiles = torch.stack([degrade(copies, k, level, generator=generator, config=config)
                         for k in kinds])
    scores = nmi(copies.repeat(len(kinds), 1, 1, 1), tiles.flatten(0, 1), bins=bins)
    return tiles, scores.view(len(kinds), len(levels))

