"""Evaluation of trained models: clean metrics, degradation sweeps, reliability, result tables.

Pure computation and result files, no plotting (that is :mod:`imlib.plots`, which reads only
what is written here). Per trained model:

- clean metrics on the test split (Table 1's columns, :func:`imlib.metrics.classification_metrics`);
- a sweep over kind x level ``d in {0, 0.1, ..., 1}``: top-1 accuracy, mean true-class
  confidence and mean NMI(clean, degraded), on the whole test split and on one class (apple,
  class 0, in CIFAR-100: Figs. 3-5), in each evaluation order of ``ORDERS``;
- reliability bins on the clean test split and under mosaic at ``d = 0.5``;
- optionally, accuracy, NLL and ECE on CIFAR-100-C (:func:`corruption_metrics`).

Evaluation order. Training degrades images in [0, 1] and normalises after; ``"degrade_first"``
evaluates the same way and is what the figures show. The paper's evaluation script normalised
first and degraded the normalised tensors; ``"normalize_first"`` reproduces it, so its effect can
be measured: diffusion's final clamp to [0, 1] then wipes out every negative (below-mean) value,
and dropout's zeroed patches become the mean colour instead of black. Blur and mosaic are linear
with rows summing to 1, so they commute with the per-channel affine normalisation: both orders
give the same numbers for them. Every sweep condition draws its randomness (diffusion noise,
dropout patches) from a generator seeded by ``(seed, kind, level)``, the same in both orders, so
every model of a study sees the same degraded images and the orders differ only by the order.

Result files, in ``eval_dir`` (the layout the notebooks read for every profile):

- ``clean_metrics.csv``: ``variant, seed, top1, top5, ece, nll, brier, ece_paper_script, n``
- ``sweeps.csv``: ``variant, seed, kind, level, subset, order, accuracy, confidence, nmi, n``
- ``reliability.csv``: ``variant, seed, condition, bin, lower, upper, count, confidence,
  accuracy``
- ``meta.json``: ``settings`` (data set, class, kinds, levels, orders, degradation constants,
  sweep seed), ``params`` (the study's parameters), ``provenance`` (time, commit, versions,
  device).

CIFAR-100-C results (:func:`evaluate_corruptions`) are a separate table with the columns
``variant, seed`` and ``CORRUPTION_COLUMNS``, summarised by :func:`corruption_summary`.

Accuracies, confidences and NMI are fractions in [0, 1]; ``nll`` is in nats; ``mce`` in percent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from imlib._checks import check_images, check_int
from imlib.data import (
    CIFAR100C_CORRUPTIONS,
    CIFAR100C_EXTRA,
    CIFAR100C_SEVERITIES,
    ImageData,
    denormalize,
    iter_cifar100c,
    normalize,
)
from imlib.degradations import (KINDS, LEVELS, PAPER_EVAL, DegradationConfig, check_kinds,
                                check_levels, degrade)
from imlib.io import atomic_write_text, provenance, read_jsonl
from imlib.metrics import classification_metrics, ece, nll, reliability_bins, topk_accuracy
from imlib.nmi import nmi
from imlib.train import VARIANTS, load_model

__all__ = [
    "LEVELS",
    "METRICS",
    "SUBSETS",
    "ORDERS",
    "RELIABILITY_CONDITIONS",
    "VARIANT_LABELS",
    "CLEAN_COLUMNS",
    "SWEEP_COLUMNS",
    "RELIABILITY_COLUMNS",
    "CORRUPTION_COLUMNS",
    "CORRUPTION_SUMMARY_COLUMNS",
    "EvalResults",
    "predict",
    "clean_metrics",
    "degradation_sweep",
    "reliability_table",
    "evaluate_checkpoint",
    "evaluate_study",
    "corruption_metrics",
    "corruption_summary",
    "evaluate_corruptions",
    "summarize",
    "table1",
    "table1_markdown",
    "save_results",
    "load_results",
    "load_histories",
]

METRICS = ("top1", "top5", "ece", "nll", "brier", "ece_paper_script")  # classification_metrics
SUBSETS = ("all", "class")  # whole test split | the test images of one class
# When images are normalised: after degrading (training's order) | before (the paper's eval script)
ORDERS = ("degrade_first", "normalize_first")
# Conditions of the reliability tables: the clean test split, and mosaic at d = 0.5 (blocks of
# 8 x 8 pixels on 32 x 32 images), where calibration under degradation shows.
RELIABILITY_CONDITIONS = {"clean": None, "mosaic_0.5": ("mosaic", 0.5)}
VARIANT_LABELS = {"baseline": "Baseline", "ls": "LS", "im": "IM", "level": "Level"}

CLEAN_COLUMNS = ("variant", "seed", *METRICS, "n")
SWEEP_COLUMNS = ("variant", "seed", "kind", "level", "subset", "order", "accuracy", "confidence",
                 "nmi", "n")
RELIABILITY_COLUMNS = ("variant", "seed", "condition", "bin", "lower", "upper", "count",
                       "confidence", "accuracy")
CORRUPTION_COLUMNS = ("corruption", "severity", "accuracy", "nll", "ece", "n")
CORRUPTION_SUMMARY_COLUMNS = ("corruption", "accuracy", "mce", "nll", "ece", "n_sets")
_FILES = {"clean": ("clean_metrics.csv", CLEAN_COLUMNS), "sweeps": ("sweeps.csv", SWEEP_COLUMNS),
          "reliability": ("reliability.csv", RELIABILITY_COLUMNS)}

# Table 1: metric -> (column title, scale, decimals). Accuracies in percent as in the paper.
_TABLE1 = {
    "top1": ("Top-1 Acc (%)", 100.0, 2),
    "top5": ("Top-5 Acc (%)", 100.0, 2),
    "ece": ("ECE", 1.0, 4),
    "nll": ("CE Loss", 1.0, 4),
    "brier": ("Brier", 1.0, 4),
    "ece_paper_script": ("ECE (paper script)", 1.0, 4),
}


@dataclass
class EvalResults:
    """The result tables of one or more trained models (each row carries variant and seed).

    ``settings`` says how they were made (data set, class, kinds, levels, degradation
    constants, sweep seed); results are only combined when their settings agree.
    """

    clean: pd.DataFrame
    sweeps: pd.DataFrame
    reliability: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def concat(cls, results: Sequence[EvalResults]) -> EvalResults:
        """One EvalResults holding the rows of all of ``results`` (same settings required)."""
        if not results:
            raise ValueError("results must hold at least one EvalResults")
        settings = results[0].settings
        for r in results[1:]:
            if r.settings != settings:
                raise ValueError("results must share their settings to be combined, got "
                                 f"{settings} and {r.settings}")
        return cls(*(pd.concat([getattr(r, name) for r in results], ignore_index=True)
                     for name in _FILES), settings=settings)


# --- argument checks ---------------------------------------------------------------------------


def _check_orders(orders: Sequence[str]) -> tuple[str, ...]:
    values = tuple(orders) if not isinstance(orders, str) else (orders,)
    if not values or len(set(values)) != len(values) or any(o not in ORDERS for o in values):
        raise ValueError(f"orders must be a non-empty list of distinct names from ORDERS "
                         f"{ORDERS}, got {list(values)}")
    return values


def _check_model(model: torch.nn.Module) -> None:
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_data(data: ImageData) -> None:
    if not isinstance(data, ImageData):
        raise ValueError(f"data must be an imlib.data.ImageData, got {type(data).__name__}")
    if len(data.y_test) == 0:
        raise ValueError("data has no test images (data.x_test is empty)")


def _check_class(class_index: int, data: ImageData) -> None:
    if (isinstance(class_index, bool) or not isinstance(class_index, int)
            or not 0 <= class_index < data.num_classes):
        raise ValueError(f"class_index must be an int in [0, {data.num_classes}), "
                         f"got {class_index!r}")
    if not bool((data.y_test == class_index).any()):
        raise ValueError(f"class_index {class_index} ({data.classes[class_index]!r}) has no test "
                         "images")


def _check_frame(df: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError(f"{name} is empty")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(df.columns)}")


# --- predictions ------------------------------------------------------------------------------


def _device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters (or buffers) live; CPU for a model without either."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; the model's previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _predict(model: torch.nn.Module, x: Tensor, mean: Sequence[float] | None,
             std: Sequence[float] | None, batch_size: int) -> Tensor:
    """Probabilities (N, K) on the model's device; x is uint8 or float [0, 1], unchecked, and
    normalised batch by batch, or, with ``mean = std = None``, float and already normalised."""
    device = _device(model)
    out = []
    with _eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            batch = x[start:start + batch_size].to(device)
            batch = batch.float().div_(255) if batch.dtype == torch.uint8 else batch.float()
            if mean is not None:
                batch = normalize(batch, mean, std)
            batch = batch.contiguous(memory_format=torch.channels_last)  # as in training
            out.append(torch.softmax(model(batch).float(), dim=1))
    return torch.cat(out)


def predict(model: torch.nn.Module, x: Tensor, mean: Sequence[float], std: Sequence[float],
            batch_size: int = 1024) -> Tensor:
    """Softmax probabilities (N, K), float32 on the CPU, of ``model`` on images ``x``.

    ``x`` is float (N, C, H, W) in [0, 1] (already degraded, if at all) or uint8 (divided by
    255); batches go to the model's device and are normalised there with ``mean``/``std``,
    i.e. after any degradation, as in training. The model runs in eval mode without autograd
    (its previous mode is restored).

    >>> from imlib.models import small_cnn
    >>> predict(small_cnn(3), torch.rand(2, 3, 32, 32), (0.5,) * 3, (0.25,) * 3).shape
    torch.Size([2, 3])
    """
    _check_model(model)
    if isinstance(x, Tensor) and x.dtype == torch.uint8:
        if x.ndim != 4:
            raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    else:
        check_images(x, "x")
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one image, got 0")
    check_int(batch_size, "batch_size", 1)
    return _predict(model, x, mean, std, batch_size).cpu()


def clean_metrics(model: torch.nn.Module, data: ImageData, batch_size: int = 1024
                  ) -> dict[str, float]:
    """Table 1's metrics (``METRICS``; accuracies as fractions, NLL in nats) on the clean test
    split of ``data``."""
    _check_data(data)
    probs = predict(model, data.x_test, data.mean, data.std, batch_size)
    return classification_metrics(probs, data.y_test)


def _stream_seed(seed: int, kind: str, level: float) -> int:
    """A seed for the condition (seed, kind, level), the same in every process (unlike hash)."""
    return zlib.crc32(f"{seed}/{kind}/{level:.6f}".encode())


def _degrade_all(x: Tensor, kind: str, level: float, seed: int, config: DegradationConfig
                 ) -> Tensor:
    """The whole set x degraded at once, its randomness seeded by (seed, kind, level) on x's
    device: results do not depend on any batch size."""
    generator = torch.Generator(device=x.device).manual_seed(_stream_seed(seed, kind, level))
    return degrade(x, kind, level, generator, config, validate_args=False)


def degradation_sweep(model: torch.nn.Module, data: ImageData, kinds: Sequence[str] = KINDS,
                      levels: Sequence[float] = LEVELS, config: DegradationConfig = PAPER_EVAL,
                      class_index: int = 0, seed: int = 0, batch_size: int = 1024,
                      order: str = "degrade_first") -> pd.DataFrame:
    """Accuracy, mean true-class confidence and mean NMI of ``model`` on the test split
    degraded by each kind at each level.

    Returns one row per (kind, level, subset) with columns ``kind, level, subset, order,
    accuracy, confidence, nmi, n``: ``subset`` is ``"all"`` (the whole test split) or
    ``"class"`` (its images of class ``class_index``, a mask of the same predictions);
    ``confidence`` is the mean probability given to the true class; ``nmi`` the mean
    NMI(clean, degraded) (64 bins); ``n`` the number of images. The test split is degraded
    whole, once per (kind, level), with ``config``'s constants (the paper's evaluation settings
    by default) and randomness seeded by ``(seed, kind, level)``.

    ``order`` (one of ``ORDERS``): ``"degrade_first"`` degrades the [0, 1] images and
    normalises the result, as training does; ``"normalize_first"`` degrades the normalised
    images and feeds the result to the model as it is, as the paper's evaluation script did.
    Its NMI is taken against the degraded image mapped back to [0, 1] (de-normalised, then
    clamped): the information left in what the model saw, on the scale the NMI bins expect.
    """
    _check_model(model)
    _check_data(data)
    kinds, levels = check_kinds(kinds), check_levels(levels)
    _check_class(class_index, data)
    check_int(seed, "seed", 0)
    check_int(batch_size, "batch_size", 1)
    if order not in ORDERS:
        raise ValueError(f"order must be one of ORDERS {ORDERS}, got {order!r}")
    if not isinstance(config, DegradationConfig):
        raise ValueError(f"config must be a DegradationConfig, got {type(config).__name__}")

    device = _device(model)
    clean = data.x_test.to(device).float().div_(255)
    normalized_input = order == "normalize_first"
    source = normalize(clean, data.mean, data.std) if normalized_input else clean
    stats = (None, None) if normalized_input else (data.mean, data.std)
    labels = data.y_test.to(device)
    in_class = labels == class_index
    rows = []
    for kind in kinds:
        for level in levels:
            degraded = _degrade_all(source, kind, level, seed, config)
            probs = _predict(model, degraded, *stats, batch_size)
            if normalized_input:
                degraded = denormalize(degraded, data.mean, data.std).clamp_(0, 1)
            nmi_values = torch.cat([nmi(clean[i:i + batch_size], degraded[i:i + batch_size],
                                        validate_args=False)
                                    for i in range(0, len(labels), batch_size)])
            per_sample = torch.stack([(probs.argmax(1) == labels).float(),
                                      probs.gather(1, labels[:, None]).squeeze(1), nmi_values])
            for subset, mask in (("all", None), ("class", in_class)):
                chosen = per_sample if mask is None else per_sample[:, mask]
                accuracy, confidence, mean_nmi = chosen.mean(1).tolist()
                rows.append({"kind": kind, "level": level, "subset": subset, "order": order,
                             "accuracy": accuracy, "confidence": confidence, "nmi": mean_nmi,
                             "n": chosen.shape[1]})
    return pd.DataFrame(rows, columns=list(SWEEP_COLUMNS[2:]))


def reliability_table(probs: Tensor, labels: Tensor, n_bins: int = 15) -> pd.DataFrame:
    """Reliability diagram data: per equal-width top-1 confidence bin, its ``lower`` and
    ``upper`` edge, ``count`` and mean ``confidence`` and ``accuracy`` (0 when empty).

    ``sum(count / N * |accuracy - confidence|)`` is the ECE of :func:`imlib.metrics.ece`.
    """
    if isinstance(probs, Tensor) and probs.ndim >= 1 and probs.shape[0] == 0:
        raise ValueError("probs must hold at least one sample, got 0")
    bins = reliability_bins(probs, labels, n_bins)
    table = pd.DataFrame({name: bins[name].cpu().double().numpy()
                          for name in ("lower", "upper", "count", "confidence", "accuracy")})
    table.insert(0, "bin", range(len(table)))
    table["count"] = table["count"].round().astype("int64")
    return table


# --- one trained model, a whole study -----------------------------------------------------------


def evaluate_checkpoint(checkpoint: str | Path, data: ImageData, *, class_index: int = 0,
                        config: DegradationConfig = PAPER_EVAL, kinds: Sequence[str] = KINDS,
                        levels: Sequence[float] = LEVELS, sweep_seed: int = 0,
                        device: str = "auto", batch_size: int = 1024,
                        orders: Sequence[str] = ORDERS) -> EvalResults:
    """Everything the figures need from one trained model (a ``best.pt`` or ``last.pt``).

    Its variant and seed are read from the checkpoint's config. Returns its clean metrics
    (one row), its sweeps (:func:`degradation_sweep`, one per evaluation order in ``orders``,
    stacked) and its reliability tables for ``RELIABILITY_CONDITIONS`` (clean, and mosaic at
    0.5 with ``config``: linear, so the same in both orders), each with ``variant`` and
    ``seed`` columns in front.
    """
    _check_data(data)
    _check_class(class_index, data)
    kinds, levels = check_kinds(kinds), check_levels(levels)
    orders = _check_orders(orders)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist; train the model "
                                "first (notebook 03_training)")
    model, train_config = load_model(checkpoint, device)
    probs = predict(model, data.x_test, data.mean, data.std, batch_size)
    if probs.shape[1] != data.num_classes:
        raise ValueError(f"checkpoint {checkpoint} predicts {probs.shape[1]} classes, but data "
                         f"{data.name!r} has {data.num_classes}")
    clean = pd.DataFrame([{**classification_metrics(probs, data.y_test),
                           "n": len(data.y_test)}])
    sweeps = pd.concat([degradation_sweep(model, data, kinds, levels, config, class_index,
                                          sweep_seed, batch_size, order) for order in orders],
                       ignore_index=True)
    tables = []
    for condition, degradation in RELIABILITY_CONDITIONS.items():
        condition_probs = probs
        if degradation is not None:
            x = _degrade_all(data.x_test.to(_device(model)).float().div_(255), *degradation,
                             sweep_seed, config)
            condition_probs = predict(model, x, data.mean, data.std, batch_size)
        tables.append(reliability_table(condition_probs, data.y_test)
                      .assign(condition=condition))
    reliability = pd.concat(tables, ignore_index=True)

    def tagged(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
        df = df.assign(variant=train_config.variant, seed=train_config.seed)
        return df[list(columns)]

    settings = {"dataset": data.name, "n_test": len(data.y_test), "class_index": class_index,
                "class_name": data.classes[class_index], "kinds": list(kinds),
                "levels": list(levels), "orders": list(orders), "sweep_seed": sweep_seed,
                "degradation": {**dataclasses.asdict(config), "kinds": list(config.kinds)}}
    return EvalResults(tagged(clean, CLEAN_COLUMNS), tagged(sweeps, SWEEP_COLUMNS),
                       tagged(reliability, RELIABILITY_COLUMNS), settings)


def evaluate_study(params: Any, data: ImageData, *, checkpoint: str = "best.pt",
                   kinds: Sequence[str] = KINDS, levels: Sequence[float] = LEVELS,
                   batch_size: int = 1024, orders: Sequence[str] = ORDERS) -> EvalResults:
    """:func:`evaluate_checkpoint` on every (variant, seed) of a study, combined.

    ``params`` is an :class:`imlib.study.StudyParams`: its variants, seeds, ``train_dir``,
    ``eval_class``, ``eval_degradation_config`` and ``device`` are used. ``checkpoint`` is the
    file name in each run folder (``best.pt``: the selected epoch; ``last.pt``: the final one).

    By default the sweeps hold both evaluation orders (``ORDERS``: the ``order`` column), so a
    report can show what the paper script's normalise-then-degrade order changes; the figures
    read the ``"degrade_first"`` rows. The second order adds one sweep per model, which is most
    of a model's evaluation: about 1.9 times the time of one order (smoke profile, 400 test
    images, one CPU thread: 5.7 s -> 10.8 s per model); ``orders=("degrade_first",)`` skips it.
    """
    if data.name != params.dataset:
        raise ValueError(f"data is {data.name!r} but the study params name dataset "
                         f"{params.dataset!r}")
    runs = [(v, s) for v in params.variants for s in params.seeds]
    results = [evaluate_checkpoint(params.train_dir(v, s) / checkpoint, data,
                                   class_index=params.eval_class,
                                   config=params.eval_degradation_config, kinds=kinds,
                                   levels=levels, device=params.device, batch_size=batch_size,
                                   orders=orders)
               for v, s in tqdm(runs, desc="evaluate", unit="model")]
    return EvalResults.concat(results)


# --- CIFAR-100-C ------------------------------------------------------------------------------


def corruption_metrics(model: torch.nn.Module, directory: str | Path, mean: Sequence[float],
                       std: Sequence[float],
                       corruptions: Sequence[str] = CIFAR100C_CORRUPTIONS,
                       severities: Sequence[int] = CIFAR100C_SEVERITIES,
                       batch_size: int = 1024) -> pd.DataFrame:
    """Top-1 accuracy (fraction), NLL (nats) and ECE (15 bins) of ``model`` on CIFAR-100-C.

    One row per (corruption, severity), columns ``CORRUPTION_COLUMNS`` (``n``: images). The
    released images are already corrupted in pixel space, so they are only scaled and
    normalised with ``mean``/``std`` (:func:`predict`), as in training. The files are read
    one (corruption, severity) at a time by :func:`imlib.data.iter_cifar100c`, which checks
    all of them before the first prediction.
    """
    _check_model(model)
    check_int(batch_size, "batch_size", 1)
    rows = []
    sets = iter_cifar100c(directory, corruptions, severities)  # checks every file first
    for name, severity, x, y in tqdm(sets, desc="corruption sets", unit="set", leave=False):
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
    _check_frame(df, "df", [*by, *CORRUPTION_COLUMNS])
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
    return out.sort_values([*by, "corruption"], key=_canonical_rank, kind="stable",
                           ignore_index=True)[[*by, *CORRUPTION_SUMMARY_COLUMNS]]


def evaluate_corruptions(params: Any, data: ImageData, directory: str | Path, *,
                         checkpoint: str = "best.pt",
                         corruptions: Sequence[str] = CIFAR100C_CORRUPTIONS,
                         severities: Sequence[int] = CIFAR100C_SEVERITIES,
                         batch_size: int = 1024) -> pd.DataFrame:
    """:func:`corruption_metrics` of every (variant, seed) of a study, with ``variant`` and
    ``seed`` columns in front; ``params``, ``data`` (for its ``mean``/``std``) and
    ``checkpoint`` as in :func:`evaluate_study`.

    The checkpoints and the CIFAR-100-C files are all checked before the first model runs.
    Each model reads the files again, memory-mapped (from the page cache after the first).
    """
    _check_data(data)
    runs = [(v, s) for v in params.variants for s in params.seeds]
    paths = {run: Path(params.train_dir(*run)) / checkpoint for run in runs}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint(s) {missing} do not exist; train the models first "
                                "(notebook 03_training)")
    iter_cifar100c(directory, corruptions, severities)  # checks every file, reads no images
    frames = []
    for (variant, seed), path in tqdm(paths.items(), desc="CIFAR-100-C", unit="model"):
        model, _ = load_model(path, params.device)
        frames.append(corruption_metrics(model, directory, data.mean, data.std, corruptions,
                                         severities, batch_size)
                      .assign(variant=variant, seed=seed))
    return pd.concat(frames, ignore_index=True)[["variant", "seed", *CORRUPTION_COLUMNS]]


# --- tables -----------------------------------------------------------------------------------


def _canonical_rank(column: pd.Series) -> pd.Series:
    """Sort key: variants in the order baseline, ls, im, level, kinds, orders and CIFAR-100-C
    corruptions in their constants' order (unknown names after them); other columns sort by
    value."""
    order = {"variant": VARIANTS, "kind": KINDS, "order": ORDERS,
             "corruption": (*CIFAR100C_CORRUPTIONS, *CIFAR100C_EXTRA, "mean")}.get(column.name)
    if order is None:
        return column
    return column.map({v: i for i, v in enumerate(order)}).fillna(len(order))


def summarize(df: pd.DataFrame, by: Sequence[str] = ("variant",),
              metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and sample std over seeds of each metric, per group ``by``.

    ``df`` holds one row per seed and group (a ``seed`` column is required; a group with two
    rows for the same seed means ``by`` misses a key, e.g. ``kind`` for sweeps). Returns the
    ``by`` columns, ``<metric>_mean`` and ``<metric>_std`` (ddof 1; 0 for a single seed) for
    each metric, and ``n_seeds``; variants in the order baseline, ls, im, level, kinds in
    ``KINDS`` order.
    """
    by, metrics = list(by), list(metrics)
    if not by:
        raise ValueError("by must name at least one column")
    if not metrics:
        raise ValueError("metrics must name at least one column")
    _check_frame(df, "df", ["seed", *by, *metrics])
    if df.duplicated([*by, "seed"]).any():
        raise ValueError(f"df has several rows per seed in a group of by={by}; add the columns "
                         "that tell them apart (e.g. kind, level, subset, order for sweeps)")
    grouped = df.groupby(by, sort=False)[metrics]
    means, stds = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    out = pd.concat([means.add_suffix("_mean"), stds.add_suffix("_std")], axis=1)
    out = out[[f"{m}_{s}" for m in metrics for s in ("mean", "std")]]
    out["n_seeds"] = df.groupby(by, sort=False).size()
    return out.reset_index().sort_values(by, key=_canonical_rank, kind="stable",
                                         ignore_index=True)


def table1(clean: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 as strings "mean ± std" over seeds, one row per variant.

    Index: variant (baseline, ls, im, level, those present); columns ``Model``, ``Top-1 Acc
    (%)``, ``Top-5 Acc (%)`` (percent, 2 decimals), ``ECE``, ``CE Loss`` (the NLL, nats),
    ``Brier``, ``ECE (paper script)`` (4 decimals) and ``n seeds``.
    """
    summary = summarize(clean, ("variant",), tuple(_TABLE1))
    table = pd.DataFrame({"Model": summary["variant"].map(VARIANT_LABELS)
                          .fillna(summary["variant"])})
    for metric, (title, scale, decimals) in _TABLE1.items():
        mean, std = summary[f"{metric}_mean"] * scale, summary[f"{metric}_std"] * scale
        table[title] = [f"{m:.{decimals}f} ± {s:.{decimals}f}"
                        for m, s in zip(mean, std, strict=True)]
    table["n seeds"] = summary["n_seeds"].astype(int)
    table.index = pd.Index(summary["variant"], name="variant")
    return table


def table1_markdown(clean: pd.DataFrame) -> str:
    """:func:`table1` as a Markdown table (for ``table1.md``)."""
    table = table1(clean)
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join([":---"] + ["---:"] * (len(table.columns) - 1)) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


# --- files ------------------------------------------------------------------------------------


def save_results(results: EvalResults, eval_dir: str | Path,
                 params: Mapping[str, Any] | None = None) -> Path:
    """Write the three tables as CSV and ``meta.json`` (settings, params, provenance) into
    ``eval_dir``, each atomically; returns ``eval_dir``."""
    if not isinstance(results, EvalResults):
        raise ValueError(f"results must be an EvalResults, got {type(results).__name__}")
    eval_dir = Path(eval_dir)
    for name, (filename, columns) in _FILES.items():
        df = getattr(results, name)
        _check_frame(df, f"results.{name}", columns)
        atomic_write_text(df[list(columns)].to_csv(index=False), eval_dir / filename)
    meta = {"settings": results.settings, "params": dict(params) if params is not None else None,
            "provenance": provenance(),
            "files": {filename: list(columns) for filename, columns in _FILES.values()}}
    atomic_write_text(json.dumps(meta, indent=2, default=str), eval_dir / "meta.json")
    return eval_dir


def load_results(eval_dir: str | Path) -> EvalResults:
    """The tables written by :func:`save_results` (settings from ``meta.json``)."""
    eval_dir = Path(eval_dir)
    paths = [eval_dir / f for f, _ in _FILES.values()] + [eval_dir / "meta.json"]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{eval_dir} lacks {missing}; run the evaluation first "
                                "(notebook 04_evaluation)")
    frames = {}
    for name, (filename, columns) in _FILES.items():
        df = pd.read_csv(eval_dir / filename)
        _check_frame(df, filename, columns)
        frames[name] = df
    settings = json.loads((eval_dir / "meta.json").read_text(encoding="utf-8"))["settings"]
    return EvalResults(**frames, settings=settings)


def load_histories(params: Any) -> pd.DataFrame:
    """Every run's ``history.jsonl`` as one long table: ``variant``, ``seed``, then the
    history's columns (``epoch``, ``train_loss``, ``train_acc``, ``holdout_*``, ``test_*``...).

    ``params`` needs ``variants``, ``seeds`` and ``train_dir(variant, seed)`` (a StudyParams).
    Runs without a history are skipped; none at all is an error.
    """
    frames = []
    for variant in params.variants:
        for seed in params.seeds:
            path = Path(params.train_dir(variant, seed)) / "history.jsonl"
            records = read_jsonl(path) if path.is_file() else []
            if records:
                frames.append(pd.DataFrame(records).assign(variant=variant, seed=seed))
    if not frames:
        example = Path(params.train_dir(params.variants[0], params.seeds[0])) / "history.jsonl"
        raise FileNotFoundError(f"no training history found for variants {list(params.variants)}"
                                f" and seeds {list(params.seeds)} (e.g. {example}); train first "
                                "(notebook 03_training)")
    df = pd.concat(frames, ignore_index=True)
    front = ["variant", "seed"]
    return df[front + [c for c in df.columns if c not in front]]

