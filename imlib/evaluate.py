"""Evaluation of trained models: predictions, degradation sweeps, reliability.

Pure computation, no files or plots (the tables are :mod:`imlib.results`, the figures
:mod:`imlib.plots`, CIFAR-100-C :mod:`imlib.corruptions`). Per trained model:

- clean metrics on the test split (Table 1's columns, :func:`imlib.metrics.classification_metrics`);
- a sweep over kind x level ``d in {0, 0.1, ..., 1}``: top-1 accuracy, mean true-class
  confidence and mean NMI(clean, degraded), on the whole test split and on one class (apple,
  class 0, in CIFAR-100: Figs. 3-5), in each evaluation order of ``ORDERS``;
- reliability bins on the clean test split and under mosaic at ``d = 0.5``;
- per test image, the clean prediction and means over the sweep's condition groups of
  ``PER_IMAGE_CONDITIONS`` (:mod:`imlib.results`): what the report's intervals resample.

How each evaluation is made (class, degradation constants, kinds, levels, orders, sweep seed,
NMI bins, batch) is one :class:`imlib.results.EvalSettings`, built from the profile by
:func:`imlib.results.eval_settings`; without one, the functions use the paper's evaluation.

Evaluation order. Training degrades images in [0, 1] and normalises after; ``"degrade_first"``
evaluates the same way and is what the figures show. The paper's evaluation script normalised
first and degraded the normalised tensors; ``"normalize_first"`` reproduces it, so its effect can
be measured: diffusion's final clamp to [0, 1] then wipes out every negative (below-mean) value,
and dropout's zeroed patches become the mean colour instead of black. Blur and mosaic are one
matrix product per image axis with rows summing to 1 and no clamp (:mod:`imlib.degradations`),
so they commute with the per-channel affine normalisation: both orders give the same numbers,
and :func:`evaluate_checkpoints` computes their sweep once and writes it for both. Every sweep
condition draws its randomness (diffusion noise, dropout patches) from a generator seeded by
``(seed, kind, level)``, the same in both orders, so every model of a study sees the same
degraded images.

Accuracies, confidences and NMI are fractions in [0, 1].
"""

from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from imlib._checks import check_images, check_int
from imlib.calibration import apply_temperature, fit_temperature
from imlib.data import ImageData, denormalize, holdout_split, normalize
from imlib.degradations import KIND_SPECS, DegradationConfig, degrade
from imlib.metrics import classification_metrics, reliability_bins
from imlib.models import for_inference
from imlib.nmi import nmi
from imlib.progress import on_interrupt, progress
from imlib.results import (CLEAN_COLUMNS, ORDERS, PER_IMAGE_COLUMNS, PER_IMAGE_CONDITIONS,
                           RELIABILITY_COLUMNS, SWEEP_COLUMNS, EvalResults, EvalSettings,
                           run_record)
from imlib.runs import TrainConfig, load_model

__all__ = [
    "SUBSETS",
    "IMAGES_PER_CLASS",
    "RELIABILITY_CONDITIONS",
    "INTERRUPTED",
    "predict",
    "sweep_model",
    "sweep_models_together",
    "reliability_table",
    "evaluate_checkpoints",
]

SUBSETS = ("all", "class")  # whole test split | the test images of one class
# Plus one subset per image followed on its own, "image <test index>": the first
# IMAGES_PER_CLASS test images of the class, as the paper's Fig. 3 draws five apples one by one.
IMAGES_PER_CLASS = 5
# Conditions of the reliability tables: the clean test split, and mosaic at d = 0.5 (blocks of
# 8 x 8 pixels on 32 x 32 images), where calibration under degradation shows.
RELIABILITY_CONDITIONS = {"clean": None, "mosaic_0.5": ("mosaic", 0.5)}
INTERRUPTED = ("evaluation interrupted: nothing of it was saved (an evaluation is written whole "
               "at its end; a saved one is untouched); run the cell again to evaluate")


# --- argument checks ---------------------------------------------------------------------------


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
        with torch.inference_mode():
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


def _stream_seed(seed: int, kind: str, level: float) -> int:
    """A seed for the condition (seed, kind, level), the same in every process (unlike hash)."""
    return zlib.crc32(f"{seed}/{kind}/{level:.6f}".encode())


def _degrade_all(x: Tensor, kind: str, level: float, seed: int, config: DegradationConfig
                 ) -> Tensor:
    """The whole set x degraded at once, its randomness seeded by (seed, kind, level) on x's
    device: results do not depend on any batch size."""
    generator = torch.Generator(device=x.device).manual_seed(_stream_seed(seed, kind, level))
    return degrade(x, kind, level, generator, config, validate_args=False)


def sweep_model(model: torch.nn.Module, data: ImageData, settings: EvalSettings | None = None,
                order: str = "degrade_first") -> pd.DataFrame:
    """Accuracy, mean true-class confidence and mean NMI of ``model`` on the test split
    degraded by each kind at each level of ``settings`` (default: the paper's evaluation).

    Returns one row per (kind, level, subset) with columns ``kind, level, subset, order,
    accuracy, confidence, nmi, n``: ``subset`` is ``"all"`` (the whole test split),
    ``"class"`` (its images of class ``settings.class_index``, a mask of the same predictions)
    or ``"image <i>"`` for each of the class's first ``IMAGES_PER_CLASS`` test images
    (``n = 1``); ``confidence`` is the mean probability given to the true class; ``nmi`` the
    mean NMI(clean, degraded) with ``settings.nmi_bins`` bins, the runs' own; ``n`` the number
    of images. The test split is degraded whole, once per (kind, level), with
    ``settings.degradation``'s constants and randomness seeded by ``(settings.sweep_seed, kind,
    level)``.

    ``order`` (one of ``ORDERS``): ``"degrade_first"`` degrades the [0, 1] images and
    normalises the result, as training does; ``"normalize_first"`` degrades the normalised
    images and feeds the result to the model as it is, as the paper's evaluation script did.
    Its NMI is taken against the degraded image mapped back to [0, 1] (de-normalised, then
    clamped): the information left in what the model saw, on the scale the NMI bins expect.
    """
    return sweep_models_together([model], data, settings, order)[0]


def _groups(kind: str, level: float) -> list[tuple[int, int]]:
    """The groups of ``PER_IMAGE_CONDITIONS`` that the condition (kind, level) belongs to:
    (group, row of the per-image values: 0 correct, 1 true-class probability)."""
    return [(g, 0 if value == "correct" else 1)
            for g, (value, kinds, lowest, highest) in enumerate(PER_IMAGE_CONDITIONS.values())
            if kind in kinds and level > 0 and lowest - 1e-9 <= level <= highest + 1e-9]


def _check_settings(settings: EvalSettings | None) -> EvalSettings:
    if settings is None:
        return EvalSettings()
    if not isinstance(settings, EvalSettings):
        raise ValueError(f"settings must be an imlib.results.EvalSettings, "
                         f"got {type(settings).__name__}")
    return settings


def sweep_models_together(models: Sequence[torch.nn.Module], data: ImageData,
                          settings: EvalSettings | None = None, order: str = "degrade_first"
                          ) -> list[pd.DataFrame]:
    """:func:`sweep_model` of several models (on one device) at once, one frame each: every
    condition's degraded images and their NMI are computed once and shown to every model,
    which is most of a sweep's cost on a small model."""
    settings = _check_settings(settings)
    with progress(total=len(settings.kinds) * len(settings.levels), desc=f"sweep, {order}",
                  unit="condition") as bar:
        return _sweep_with_per_image_sums(models, data, settings, order, (), bar)[0]


def _sweep_with_per_image_sums(models: Sequence[torch.nn.Module], data: ImageData,
                               settings: EvalSettings, order: str,
                               per_image_kinds: Sequence[str], bar: tqdm
                               ) -> tuple[list[pd.DataFrame], list[tuple[Tensor, Tensor]]]:
    """:func:`sweep_models_together`, and per model the per-image sums (groups, N) over the
    conditions of ``per_image_kinds`` in each group of ``PER_IMAGE_CONDITIONS``, with their
    counts (groups,); ``bar`` advances by one per condition."""
    if isinstance(models, torch.nn.Module) or not models:
        raise ValueError("models must be a non-empty sequence of torch.nn.Module")
    for model in models:
        _check_model(model)
    _check_data(data)
    _check_class(settings.class_index, data)
    if order not in ORDERS:
        raise ValueError(f"order must be one of ORDERS {ORDERS}, got {order!r}")

    batch_size = settings.batch_size
    device = _device(models[0])
    clean = data.x_test.to(device).float().div_(255)
    normalized_input = order == "normalize_first"
    source = normalize(clean, data.mean, data.std) if normalized_input else clean
    stats = (None, None) if normalized_input else (data.mean, data.std)
    labels = data.y_test.to(device)
    in_class = labels == settings.class_index
    followed = in_class.nonzero().squeeze(1)[:IMAGES_PER_CLASS].tolist()
    masks = [("all", None), ("class", in_class)] + [(f"image {i}", torch.tensor([i]))
                                                    for i in followed]
    rows: list[list[dict]] = [[] for _ in models]
    sums = [torch.zeros(len(PER_IMAGE_CONDITIONS), len(labels), device=device) for _ in models]
    counts = torch.zeros(len(PER_IMAGE_CONDITIONS))
    for kind in settings.kinds:
        for level in settings.levels:
            degraded = _degrade_all(source, kind, level, settings.sweep_seed,
                                    settings.degradation)
            seen = (denormalize(degraded, data.mean, data.std).clamp_(0, 1) if normalized_input
                    else degraded)
            nmi_values = torch.cat([nmi(clean[i:i + batch_size], seen[i:i + batch_size],
                                        bins=settings.nmi_bins, validate_args=False)
                                    for i in range(0, len(labels), batch_size)])
            groups = _groups(kind, level) if kind in per_image_kinds else []
            for g, _ in groups:
                counts[g] += 1
            for model, model_rows, model_sums in zip(models, rows, sums, strict=True):
                probs = _predict(model, degraded, *stats, batch_size)
                per_sample = torch.stack([(probs.argmax(1) == labels).float(),
                                          probs.gather(1, labels[:, None]).squeeze(1),
                                          nmi_values])
                for g, value in groups:
                    model_sums[g] += per_sample[value]
                for subset, mask in masks:
                    chosen = per_sample if mask is None else per_sample[:, mask.to(device)]
                    accuracy, confidence, mean_nmi = chosen.mean(1).tolist()
                    model_rows.append({"kind": kind, "level": level, "subset": subset,
                                       "order": order, "accuracy": accuracy,
                                       "confidence": confidence, "nmi": mean_nmi,
                                       "n": chosen.shape[1]})
            bar.update(1)
    return ([pd.DataFrame(r, columns=list(SWEEP_COLUMNS[2:])) for r in rows],
            [(model_sums.cpu(), counts) for model_sums in sums])


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


def _per_image(probs: Tensor, scaled: Tensor | None, labels: Tensor, groups: Tensor
               ) -> pd.DataFrame:
    """One model's per-image table without variant and seed: the test index, label, clean
    correctness, top-1 probability (also after temperature scaling, from ``scaled``; NaN
    without it), true-class probability and NLL (``probs`` (N, K) on the clean test split),
    and ``groups`` (G, N), the means over ``PER_IMAGE_CONDITIONS``; 5 decimals."""
    true_prob = probs.gather(1, labels[:, None]).squeeze(1)
    top_scaled = (scaled.max(1).values if scaled is not None
                  else torch.full((len(labels),), float("nan")))
    columns = {"clean_top_prob": probs.max(1).values, "clean_top_prob_scaled": top_scaled,
               "clean_true_prob": true_prob,
               "clean_nll": -true_prob.clamp(min=torch.finfo(probs.dtype).tiny).log(),
               **dict(zip(PER_IMAGE_CONDITIONS, groups, strict=True))}
    return pd.DataFrame({"image": range(len(labels)), "label": labels.numpy(),
                         "clean_correct": (probs.argmax(1) == labels).int().numpy(),
                         **{name: values.double().numpy().round(5)
                            for name, values in columns.items()}})


# --- trained models, a whole study ------------------------------------------------------------


def _sweep_every_order(models: Sequence[torch.nn.Module], data: ImageData,
                       settings: EvalSettings) -> tuple[list[pd.DataFrame], list[Tensor]]:
    """The sweeps of every model in each of ``settings.orders``, stacked per model, under one
    progress bar; the linear kinds (``Kind.linear``: they commute with the normalisation) are
    computed in the first order only and copied to the others. Also per model the per-image
    means (groups, N) over each group of ``PER_IMAGE_CONDITIONS`` in the ``"degrade_first"``
    order (NaN without that order or without a swept condition in the group)."""
    kinds = settings.kinds
    plan = []  # per order: the kinds copied from the first order, those computed, those counted
    for order in settings.orders:
        copied = [k for k in kinds if KIND_SPECS[k].linear] if plan else []
        computed = [k for k in kinds if k not in copied]
        # Per-image groups: degrade_first's conditions, and those it copies from another order.
        counted = (computed if order == "degrade_first" else
                   [k for k in computed
                    if KIND_SPECS[k].linear and "degrade_first" in settings.orders])
        plan.append((order, copied, computed, counted))
    per_order: list[list[pd.DataFrame]] = []
    totals: list[tuple[Tensor, Tensor]] = []
    conditions = sum(len(computed) for _, _, computed, _ in plan) * len(settings.levels)
    with progress(total=conditions, desc=f"evaluation of {len(models)} models",
                  unit="condition") as bar:
        for order, copied, computed, counted in plan:
            fresh, sums = (_sweep_with_per_image_sums(
                models, data, dataclasses.replace(settings, kinds=computed), order, counted, bar)
                if computed else ([None] * len(models), []))
            if sums:
                totals = sums if not totals else [(t + s, c + k) for (t, c), (s, k)
                                                  in zip(totals, sums, strict=True)]
            frames = []
            for m, frame in enumerate(fresh):
                first = per_order[0][m] if copied else None
                parts = [first[first["kind"].isin(copied)].assign(order=order)] if copied else []
                merged = pd.concat(parts + ([frame] if frame is not None else []),
                                   ignore_index=True)
                frames.append(merged.sort_values("kind", key=lambda c: c.map(kinds.index),
                                                 kind="stable"))
            per_order.append(frames)
    return ([pd.concat([frames[m] for frames in per_order], ignore_index=True)
             for m in range(len(models))],
            [total / count[:, None] for total, count in totals])  # 0 / 0 = NaN: no condition


def evaluate_checkpoints(checkpoints: Sequence[str | Path], data: ImageData,
                         settings: EvalSettings | None = None, *, device: str = "auto"
                         ) -> EvalResults:
    """Everything the figures need from trained models (runs' best or last checkpoints),
    evaluated as ``settings`` says (default: the paper's evaluation), all loaded on ``device``
    and every sweep condition degraded once for all of them.

    Each model's variant and seed are read from its checkpoint's config, which is also recorded
    in the result's ``runs`` with the checkpoint's size and sha256
    (:func:`imlib.results.run_record`). Returns per model its clean metrics (one row), its
    sweeps (:func:`sweep_model`, one per evaluation order in ``settings.orders``, stacked; the
    linear kinds computed once), its reliability tables for
    ``RELIABILITY_CONDITIONS`` (clean, and mosaic at 0.5 with ``settings.degradation``: linear,
    so the same in both orders) and its per-image table (``PER_IMAGE_COLUMNS``: the clean
    prediction of every test image and its means over the sweep's ``PER_IMAGE_CONDITIONS``),
    each with ``variant`` and ``seed`` columns in front. An interrupt raises
    :class:`imlib.progress.Interrupted` (one line: nothing of it is kept).
    """
    _check_data(data)
    settings = _check_settings(settings)
    _check_class(settings.class_index, data)
    if isinstance(checkpoints, (str, Path)) or not checkpoints:
        raise ValueError("checkpoints must be a non-empty list of checkpoint files")
    for checkpoint in checkpoints:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist; train the model "
                                    "first (notebook 03_training)")
    with on_interrupt(INTERRUPTED):
        return _evaluate_checkpoints(checkpoints, data, settings, device)


def _temperature_scaled(model: torch.nn.Module, data: ImageData, config: TrainConfig,
                        probs: Tensor, batch_size: int) -> tuple[float, Tensor | None]:
    """The temperature of a model fitted on its run's holdout split (the images
    :func:`imlib.data.holdout_split` kept out of its training, :mod:`imlib.calibration`) and
    the test predictions ``probs`` scaled by it; (NaN, None) for a run without a holdout
    split, which has no unseen images to fit on. Log-probabilities stand in for the logits:
    softmax is the same for both."""
    if config.holdout_fraction == 0:
        return float("nan"), None
    _, holdout = holdout_split(data.y_train, config.holdout_fraction, config.seed)
    held_out = predict(model, data.x_train[holdout], data.mean, data.std, batch_size)
    tiny = torch.finfo(held_out.dtype).tiny
    temperature = fit_temperature(held_out.clamp(min=tiny).log(), data.y_train[holdout])
    scaled = torch.softmax(apply_temperature(probs.clamp(min=tiny).log(), temperature), dim=1)
    return temperature, scaled


def _evaluate_checkpoints(checkpoints: Sequence[str | Path], data: ImageData,
                          settings: EvalSettings, device: str) -> EvalResults:
    loaded = [load_model(checkpoint, device) for checkpoint in checkpoints]
    models = [for_inference(model) for model, _ in loaded]
    sweeps, group_means = _sweep_every_order(models, data, settings)
    batch_size = settings.batch_size
    clean_images = data.x_test.to(_device(models[0])).float().div_(255)
    reliability_images = {condition: _degrade_all(clean_images, *degradation,
                                                  settings.sweep_seed, settings.degradation)
                          for condition, degradation in RELIABILITY_CONDITIONS.items()
                          if degradation}
    recorded = {"dataset": data.name, "n_test": len(data.y_test),
                "class_name": data.classes[settings.class_index], **settings.to_dict()}
    results = []
    for checkpoint, model, (_, train_config), sweep, groups in zip(
            checkpoints, models, loaded, sweeps, group_means, strict=True):
        probs = predict(model, data.x_test, data.mean, data.std, batch_size)
        if probs.shape[1] != data.num_classes:
            raise ValueError(f"checkpoint {checkpoint} predicts {probs.shape[1]} classes, but "
                             f"data {data.name!r} has {data.num_classes}")
        temperature, scaled = _temperature_scaled(model, data, train_config, probs, batch_size)
        clean = pd.DataFrame([{**classification_metrics(probs, data.y_test, scaled),
                               "temperature": temperature, "n": len(data.y_test)}])
        tables = []
        for condition in RELIABILITY_CONDITIONS:
            condition_probs = (predict(model, reliability_images[condition], data.mean,
                                       data.std, batch_size)
                               if condition in reliability_images else probs)
            tables.append(reliability_table(condition_probs, data.y_test)
                          .assign(condition=condition))
        reliability = pd.concat(tables, ignore_index=True)

        def tagged(df: pd.DataFrame, columns: Sequence[str],
                   run: TrainConfig = train_config) -> pd.DataFrame:
            return df.assign(variant=run.variant, seed=run.seed)[list(columns)]

        results.append(EvalResults(tagged(clean, CLEAN_COLUMNS), tagged(sweep, SWEEP_COLUMNS),
                                   tagged(reliability, RELIABILITY_COLUMNS),
                                   tagged(_per_image(probs, scaled, data.y_test, groups),
                                          PER_IMAGE_COLUMNS),
                                   recorded, runs=[run_record(train_config, checkpoint)]))
    return EvalResults.concat(results)
