"""CIFAR-100-C (Hendrycks & Dietterich 2019): its constants, a checked reader, and its evaluation.

The released set is the CIFAR-100 test split under 15 common corruptions at 5 severities, one
``<corruption>.npy`` per corruption (uint8 (5 M, 32, 32, 3), severities stacked) and
``labels.npy``. :func:`iter_cifar100c` checks every file before it yields anything and then
reads one (corruption, severity) at a time, memory-mapped; :func:`corruption_metrics` scores one
model on it, :func:`evaluate_corruptions` every run of a study, :func:`corruption_summary`
averages over severities and corruptions, :func:`save_corruptions` writes the table beside the
study's evaluation (``eval_dir/cifar100c/``, with its settings, the checkpoints read and a
completion record). Accuracies are fractions, ``nll`` in nats, ``mce`` in percent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from imlib._checks import check_int, check_names
from imlib.data import ImageData
from imlib.evaluate import predict
from imlib.metrics import ece, nll, topk_accuracy
from imlib.progress import progress
from imlib.records import write_tables
from imlib.results import check_frame, run_record, sort_rows
from imlib.runs import RunFiles, completed_run, load_model

if TYPE_CHECKING:
    from imlib.study import StudyParams

__all__ = [
    "CIFAR100C_CORRUPTIONS",
    "CIFAR100C_EXTRA",
    "CIFAR100C_SEVERITIES",
    "CIFAR100C_PAGE",
    "CORRUPTION_COLUMNS",
    "CORRUPTION_SUMMARY_COLUMNS",
    "CorruptedImages",
    "iter_cifar100c",
    "corruption_metrics",
    "corruption_summary",
    "evaluate_corruptions",
    "save_corruptions",
]

# The 15 corruptions of the benchmark (its mean corruption error averages these), in Hendrycks &
# Dietterich's order (noise, blur, weather, digital), and the release's 4 extra ones.
CIFAR100C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
CIFAR100C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CIFAR100C_SEVERITIES = (1, 2, 3, 4, 5)
CIFAR100C_PAGE = "https://zenodo.org/records/3555552"  # CIFAR-100-C.tar, 2.9 GB
CORRUPTION_COLUMNS = ("corruption", "severity", "accuracy", "nll", "ece", "n")
CORRUPTION_SUMMARY_COLUMNS = ("corruption", "accuracy", "mce", "nll", "ece", "n_sets")
_IMAGE_SIDE = 32  # CIFAR's images; the models are built for them


class CorruptedImages(NamedTuple):
    """The CIFAR-100 test images under one corruption at one severity."""

    corruption: str
    severity: int  # 1 (mildest) to 5
    x: Tensor  # uint8 (M, 3, 32, 32): pixels as released, corrupted in pixel space
    y: Tensor  # int64 (M,)


# --- reading --------------------------------------------------------------------------------------


def _check_severities(severities: Sequence[int]) -> tuple[int, ...]:
    values = (severities,) if isinstance(severities, int) else tuple(severities)
    if (not values or len(set(values)) != len(values)
            or any(isinstance(s, bool) or s not in CIFAR100C_SEVERITIES for s in values)):
        raise ValueError(f"severities must be a non-empty list of distinct ints from "
                         f"{CIFAR100C_SEVERITIES}, got {list(values)}")
    return values


def _open_npy(path: Path) -> np.ndarray:
    """``path`` memory-mapped; a missing, empty or truncated file is named with the fix."""
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-100-C file {path.name} is missing in {path.parent}; "
                                f"extract CIFAR-100-C.tar from {CIFAR100C_PAGE} there")
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"CIFAR-100-C file {path} is damaged (empty, truncated or not a .npy "
                         f"file: {err}); extract it again from CIFAR-100-C.tar "
                         f"({CIFAR100C_PAGE})") from err


def iter_cifar100c(directory: str | os.PathLike,
                   corruptions: Sequence[str] = CIFAR100C_CORRUPTIONS,
                   severities: Sequence[int] = CIFAR100C_SEVERITIES) -> Iterator[CorruptedImages]:
    """The released CIFAR-100-C, one :class:`CorruptedImages` per (corruption, severity).

    ``directory`` holds ``<corruption>.npy``, uint8 (5 M, 32, 32, 3): the M test images at
    severity 1 in rows ``[0, M)``, severity 2 in ``[M, 2 M)`` and so on, and ``labels.npy``
    (5 M,). Every file is opened memory-mapped and checked (present, readable, shape, dtype,
    length) by the call itself, before anything is yielded, so a broken copy fails at once, not
    an hour into an evaluation. Each yield then reads only its M rows, turned to CHW (30 MB for
    M = 10,000), where loading all 15 corruptions would take 2.3 GB.

    Raises FileNotFoundError naming a missing folder or file, ValueError naming a damaged file or
    one of the wrong layout.
    """
    corruptions = check_names(corruptions, CIFAR100C_CORRUPTIONS + CIFAR100C_EXTRA,
                              "corruptions")
    severities = _check_severities(severities)
    if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
        raise ValueError(f"directory must be a non-empty path, got {directory!r}")
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"CIFAR-100-C folder {directory} does not exist; extract "
                                f"CIFAR-100-C.tar from {CIFAR100C_PAGE} and point to its folder")
    labels = _open_npy(directory / "labels.npy")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels.npy must be a 1-D integer array, got {labels.dtype} "
                         f"{labels.shape}")
    images = {name: _open_npy(directory / f"{name}.npy") for name in corruptions}
    side = _IMAGE_SIDE
    for name, array in images.items():
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3:
            raise ValueError(f"{name}.npy must be uint8 images (N, H, W, 3), got {array.dtype} "
                             f"{array.shape}")
        if array.shape[1:3] != (side, side):
            raise ValueError(f"{name}.npy holds {array.shape[1]}x{array.shape[2]} images; "
                             f"CIFAR-100-C's are {side}x{side}: use the release's files")
        if array.shape[0] != len(labels):
            raise ValueError(f"{name}.npy has {array.shape[0]} images but labels.npy has "
                             f"{len(labels)} labels")
    if len(labels) == 0 or len(labels) % len(CIFAR100C_SEVERITIES):
        raise ValueError(f"labels.npy and the corruption files must hold the images of the "
                         f"{len(CIFAR100C_SEVERITIES)} severities stacked, a positive multiple "
                         f"of {len(CIFAR100C_SEVERITIES)} rows, got {len(labels)}")
    return _yield_cifar100c(images, labels, severities)


def _yield_cifar100c(images: dict[str, np.ndarray], labels: np.ndarray,
                     severities: tuple[int, ...]) -> Iterator[CorruptedImages]:
    m = len(labels) // len(CIFAR100C_SEVERITIES)
    for name, array in images.items():
        for severity in severities:
            rows = slice((severity - 1) * m, severity * m)
            x = torch.from_numpy(np.ascontiguousarray(array[rows].transpose(0, 3, 1, 2)))
            y = torch.from_numpy(np.array(labels[rows], dtype=np.int64))  # a copy, writable
            yield CorruptedImages(name, severity, x, y)


# --- evaluation -----------------------------------------------------------------------------------


def corruption_metrics(model: torch.nn.Module, directory: str | Path, mean: Sequence[float],
                       std: Sequence[float],
                       corruptions: Sequence[str] = CIFAR100C_CORRUPTIONS,
                       severities: Sequence[int] = CIFAR100C_SEVERITIES,
                       batch_size: int = 1024) -> pd.DataFrame:
    """Top-1 accuracy (fraction), NLL (nats) and ECE (15 bins) of ``model`` on CIFAR-100-C.

    One row per (corruption, severity), columns ``CORRUPTION_COLUMNS`` (``n``: images). The
    released images are already corrupted in pixel space, so they are only scaled and
    normalised with ``mean``/``std`` (:func:`imlib.evaluate.predict`), as in training. Every
    file is checked (:func:`iter_cifar100c`) before the first prediction.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_int(batch_size, "batch_size", 1)
    rows = []
    sets = iter_cifar100c(directory, corruptions, severities)  # checks every file first
    for name, severity, x, y in progress(sets, desc="corruption sets", unit="set", leave=False):
        probs = predict(model, x, mean, std, batch_size)
        if int(y.max()) >= probs.shape[1]:
            raise ValueError(f"the model predicts {probs.shape[1]} classes, but the labels of "
                             f"{name} reach {int(y.max())}: CIFAR-100-C needs a CIFAR-100 model")
        rows.append({"corruption": name, "severity": severity,
                     "accuracy": float(topk_accuracy(probs, y, 1)), "nll": float(nll(probs, y)),
                     "ece": float(ece(probs, y, n_bins=15)), "n": len(y)})
    return pd.DataFrame(rows, columns=list(CORRUPTION_COLUMNS))


def corruption_summary(df: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per corruption, the mean over its severities; then a ``"mean"`` row over corruptions.

    ``df`` is :func:`corruption_metrics`' table (``by`` names extra key columns, e.g.
    ``("variant", "seed")``, summarised apart). Columns ``[*by, *CORRUPTION_SUMMARY_COLUMNS]``:
    ``accuracy``, ``nll``, ``ece`` averaged, ``mce = 100 (1 - accuracy)`` in percent and
    ``n_sets`` the (corruption, severity) sets behind the row. The ``"mean"`` row weighs each
    of the 15 benchmark corruptions (``CIFAR100C_CORRUPTIONS``) present equally; extra ones
    get their own rows but stay out of it. Its ``mce`` is the mean corruption error in its
    unnormalised form, ``100 - mean accuracy (%)`` (Hendrycks & Dietterich also divide each
    corruption's error by AlexNet's, which is not done here).

    >>> df = pd.DataFrame({"corruption": ["fog", "fog", "snow", "snow"], "severity": [1, 2] * 2,
    ...                    "accuracy": [0.5, 0.3, 0.6, 0.6], "nll": 1.0, "ece": 0.1, "n": 10})
    >>> corruption_summary(df)[["corruption", "accuracy", "mce", "n_sets"]]
      corruption  accuracy   mce  n_sets
    0       snow       0.6  40.0       2
    1        fog       0.4  60.0       2
    2       mean       0.5  50.0       4
    """
    by = list(by)
    check_frame(df, "df", [*by, *CORRUPTION_COLUMNS])
    if df.duplicated([*by, "corruption", "severity"]).any():
        raise ValueError(f"df has several rows per corruption and severity in a group of "
                         f"by={by}; add the columns that tell them apart (e.g. variant, seed)")
    metrics = {m: (m, "mean") for m in ("accuracy", "nll", "ece")}
    per = (df.groupby([*by, "corruption"], sort=False)
           .agg(**metrics, n_sets=("severity", "size")).reset_index())
    standard = per[per["corruption"].isin(CIFAR100C_CORRUPTIONS)]
    if standard.empty:
        raise ValueError(f"df holds none of the benchmark corruptions CIFAR100C_CORRUPTIONS "
                         f"(got {sorted(set(df['corruption']))}), so there is no mean to take")
    grouped = standard.groupby(by, sort=False) if by else standard.groupby(lambda _: "mean")
    overall = (grouped.agg(**metrics, n_sets=("n_sets", "sum")).reset_index(drop=not by)
               .assign(corruption="mean"))
    out = pd.concat([per, overall], ignore_index=True)
    out["mce"] = 100 * (1 - out["accuracy"])
    order = {"corruption": (*CIFAR100C_CORRUPTIONS, *CIFAR100C_EXTRA, "mean")}
    return sort_rows(out, [*by, "corruption"], order)[[*by, *CORRUPTION_SUMMARY_COLUMNS]]


def evaluate_corruptions(params: StudyParams, protocol: str, data: ImageData,
                         directory: str | Path, *,
                         checkpoint: str = "best",
                         corruptions: Sequence[str] = CIFAR100C_CORRUPTIONS,
                         severities: Sequence[int] = CIFAR100C_SEVERITIES,
                         batch_size: int = 1024) -> pd.DataFrame:
    """:func:`corruption_metrics` of every run of ``params.runs(protocol)``, with ``variant`` and
    ``seed`` columns in front; ``data`` gives the normalisation ``mean``/``std``;
    ``checkpoint`` is ``"best"`` or ``"last"`` (:class:`imlib.runs.RunFiles`).

    Every run must be complete and trained with the profile's settings
    (:func:`imlib.runs.completed_run` raises naming the run and the fix otherwise), and every
    CIFAR-100-C file is checked, all before the first model runs.
    """
    if not isinstance(data, ImageData):
        raise ValueError(f"data must be an imlib.data.ImageData, got {type(data).__name__}")
    runs = params.runs(protocol)
    for run in runs:
        completed_run(run.config)
    iter_cifar100c(directory, corruptions, severities)  # checks every file, reads no images
    frames = []
    for run in progress(runs, desc="CIFAR-100-C", unit="model"):
        model, _ = load_model(RunFiles(run.dir).checkpoint(checkpoint), run.config.device)
        frames.append(corruption_metrics(model, directory, data.mean, data.std, corruptions,
                                         severities, batch_size)
                      .assign(variant=run.variant, seed=run.seed))
    return pd.concat(frames, ignore_index=True)[["variant", "seed", *CORRUPTION_COLUMNS]]


def save_corruptions(df: pd.DataFrame, params: StudyParams, protocol: str,
                     checkpoint: str = "best") -> Path:
    """Write :func:`evaluate_corruptions`'s table of ``protocol`` as
    ``eval_dir(protocol)/cifar100c/cifar100c.csv`` with ``meta.json`` (the corruptions and
    severities, the runs and the checkpoints read, provenance and the completion record,
    :func:`imlib.results.write_tables`); returns the folder."""
    check_frame(df, "df", ("variant", "seed", *CORRUPTION_COLUMNS))
    settings = {"corruptions": list(dict.fromkeys(df["corruption"])),
                "severities": sorted({int(s) for s in df["severity"]}), "checkpoint": checkpoint}
    runs = [run_record(run.config, RunFiles(run.dir).checkpoint(checkpoint))
            for run in params.runs(protocol)]
    return write_tables({"cifar100c": df}, params.eval_dir(protocol) / "cifar100c", settings,
                        params.record(protocol), runs)
