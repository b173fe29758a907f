"""The computations behind notebooks 01 (theory) and 02 (can we trust the NMI estimator?).

Each function returns a tensor or a pandas DataFrame that a notebook shows, plots and saves:

- :func:`sklearn_agreement`: imlib's NMI against scikit-learn's, per pair.
- :func:`nmi_by_level`: mean, std and 10/90 % quantiles of NMI per kind, level and bins.
- :func:`eps_distribution`: the smoothing ``eps`` that IM trains with under ``random_degrade``.
- :func:`loop_vs_batched_throughput`: the batched estimator against a loop over images.
- :func:`photograph`, :func:`sample_images`, :func:`degradation_grid`: the images the
  notebooks look at (:func:`imlib.thumbnails.plot_image_grid` draws a grid of them).
- :func:`save_nmi_study`, :func:`load_nmi_study`: notebook 02's tables in ``runs_dir/nmi``,
  with the settings they were made with (:func:`nmi_settings`), checked when read.

Python loops here run over kinds, levels, bins or channels of a small validation set, never
inside the estimator itself.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from imlib.records import read_tables, write_tables
from imlib.runs import TrainConfig
from imlib.train import prepare, training_batch

if TYPE_CHECKING:
    from imlib.study import StudyParams

__all__ = [
    "BINS",
    "photograph",
    "sample_images",
    "sklearn_nmi",
    "sklearn_agreement",
    "nmi_by_level",
    "eps_distribution",
    "training_draws",
    "loop_vs_batched_throughput",
    "degradation_grid",
    "nmi_settings",
    "save_nmi_study",
    "load_nmi_study",
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


def training_draws(config: TrainConfig, n_images: int = 2048) -> pd.DataFrame:
    """What a run's training feeds its model: ``n_images`` training images, picked as an epoch
    picks them (a permutation from the run's seeded generator), made into a batch exactly as
    training makes one (:func:`imlib.train.training_batch`: crop + flip, kinds, NMI bins, eps
    clamp, spread, all from ``config``). Nothing is trained or written.

    One row per image: ``kind`` (``"none"`` when the config does not degrade), ``level``,
    ``nmi`` (NMI(clean, degraded), computed for every variant), ``eps`` (the variant's
    smoothing) and ``target`` (the target's mass on the true class).
    """
    check_int(n_images, "n_images", 1)
    run = prepare(config)
    order = torch.randperm(len(run.train.y), generator=run.generator, device=run.device)
    batch = training_batch(run, order[:n_images], with_nmi=True)
    n = len(batch.labels)
    kinds = (["none"] * n if batch.kinds is None
             else [KINDS[k] for k in batch.kinds.tolist()])
    levels = torch.zeros(n) if batch.levels is None else batch.levels
    target = batch.targets.gather(1, batch.labels[:, None]).squeeze(1)
    return pd.DataFrame({"kind": kinds, "level": levels.cpu().numpy(),
                         "nmi": batch.nmi.cpu().numpy(), "eps": batch.eps.cpu().numpy(),
                         "target": target.cpu().numpy()})


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


# --- the tables of notebook 02 -------------------------------------------------------------------

_REMAKE = "./run_all.sh --only 02_nmi_validation (same --profile and -p options)"


def nmi_settings(params: StudyParams) -> dict[str, Any]:
    """What notebook 02's tables depend on: the data set, the number of images, the NMI bins,
    eps clamp and degradation kinds the runs train with, and the seed."""
    training = params.training
    data = {"dataset": training.dataset}
    if training.dataset == "synthetic":
        data.update({name: getattr(training, name) for name in
                     ("synthetic_per_class", "synthetic_test_per_class", "synthetic_classes",
                      "synthetic_cue")})
    return {**data, "images": params.nmi_pairs, "bins": training.nmi_bins,
            "max_eps": training.im_max_eps, "kinds": list(training.degrade_kinds), "seed": 0}


def save_nmi_study(tables: Mapping[str, pd.DataFrame], params: StudyParams,
                   details: Mapping[str, Any]) -> Path:
    """Write notebook 02's tables into ``params.nmi_dir`` with :func:`nmi_settings` and
    ``details`` (what else describes them: levels, the bins study...) as their settings, the
    profile's parameters, provenance and a completion record; returns the folder."""
    return write_tables(tables, params.nmi_dir, {**details, **nmi_settings(params)},
                        params=dataclasses.asdict(params))


def load_nmi_study(params: StudyParams, names: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Notebook 02's tables ``names`` (e.g. ``["eps"]``), refused in one line naming the file
    and the command that remakes them when missing, damaged, partial, or made with other
    settings than :func:`nmi_settings` of ``params``."""
    return read_tables(params.nmi_dir, names, _REMAKE, nmi_settings(params))[0]
