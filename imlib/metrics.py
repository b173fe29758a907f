"""Classification and calibration metrics on predicted probabilities (N, K) and labels (N,).

Pure tensor functions, any device. ``ece`` is the standard estimator (Guo et al. 2017: equal-width
confidence bins, weighted by their counts, over the whole set); ``ece_paper_script`` is the
estimator of the paper's evaluation script, kept so that its ECE column can be compared like for
like (it reads large even for a perfectly calibrated model; see its docstring).

Table 1's metrics are :class:`Metric` specs in ``METRIC_SPECS``, each declared once: its
function, whether higher or lower is better, its column title, scale and decimals, and the
column of the paper's Table 1 it compares with. Evaluation, Table 1, the figures and the report
read them; a new metric is one ``METRIC_SPECS.register`` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from imlib._checks import check_int, check_labels, check_unit_values
from imlib.registry import Registry

__all__ = [
    "Metric",
    "METRIC_SPECS",
    "METRICS",
    "topk_accuracy",
    "nll",
    "brier",
    "ece",
    "reliability_bins",
    "ece_paper_script",
    "classification_metrics",
]


def _check(probs: Tensor, labels: Tensor) -> None:
    """``probs`` (N >= 1, K) rows of probabilities and ``labels`` (N,) in [0, K)."""
    if not isinstance(probs, Tensor) or probs.ndim != 2 or not probs.is_floating_point():
        shape = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise ValueError(f"probs must be a float tensor of shape (N, K), got {shape}")
    if probs.shape[0] == 0:
        raise ValueError("probs must hold at least one sample, got an empty batch (0, K): "
                         "a metric of no predictions is undefined")
    check_labels(labels, probs.shape[1], n=probs.shape[0])
    check_unit_values(probs, "probs", hint="; pass softmax(logits), not logits")
    if float((probs.sum(1) - 1).abs().max()) > 1e-3:
        raise ValueError("probs rows must sum to 1; pass softmax(logits)")


def topk_accuracy(probs: Tensor, labels: Tensor, k: int = 1) -> Tensor:
    """Fraction of samples whose label is among the ``k`` most probable classes.

    >>> topk_accuracy(torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.2, 0.3]]), torch.tensor([1, 2]), k=2)
    tensor(1.)
    """
    _check(probs, labels)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= probs.shape[1]:
        raise ValueError(f"k must be an int in [1, {probs.shape[1]}], got {k!r}")
    top = probs.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean()


def nll(probs: Tensor, labels: Tensor) -> Tensor:
    """Mean negative log-likelihood of the true class (the paper's "CE loss").

    >>> nll(torch.tensor([[0.5, 0.5]]), torch.tensor([0]))
    tensor(0.6931)
    """
    _check(probs, labels)
    p_true = probs.gather(1, labels[:, None]).squeeze(1)
    return -p_true.clamp(min=torch.finfo(probs.dtype).tiny).log().mean()


def brier(probs: Tensor, labels: Tensor) -> Tensor:
    """Mean over samples of ``sum_k (p_k - onehot_k)^2`` (0 is perfect, 2 the worst).

    >>> brier(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    tensor(2.)
    """
    _check(probs, labels)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return ((probs - onehot) ** 2).sum(dim=1).mean()


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = 15) -> dict[str, Tensor]:
    """Top-1 confidence against accuracy in ``n_bins`` equal-width bins ``[lo, hi)`` (the last
    bin also holds confidence 1).

    Returns tensors (n_bins,): ``lower``, ``upper``, ``count``, ``confidence`` and ``accuracy``
    (mean per bin, 0 for an empty bin).
    """
    _check(probs, labels)
    check_int(n_bins, "n_bins", 1)
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == labels).to(probs.dtype)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=probs.dtype, device=probs.device)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device).index_add_(
        0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros_like(count).index_add_(0, index, confidence)
    acc_sum = torch.zeros_like(count).index_add_(0, index, correct)
    safe = count.clamp(min=1)
    return {"lower": edges[:-1], "upper": edges[1:], "count": count,
            "confidence": conf_sum / safe, "accuracy": acc_sum / safe}


def ece(probs: Tensor, labels: Tensor, n_bins: int = 15) -> Tensor:
    """Expected calibration error: ``sum_b (n_b / N) |acc_b - conf_b|`` over the whole set.

    Equal to torchmetrics' ``multiclass_calibration_error(..., n_bins, norm="l1")``.

    >>> ece(torch.tensor([[0.9, 0.1], [0.9, 0.1]]), torch.tensor([0, 1]))
    tensor(0.4000)
    """
    bins = reliability_bins(probs, labels, n_bins)
    weight = bins["count"] / bins["count"].sum().clamp(min=1)
    return (weight * (bins["accuracy"] - bins["confidence"]).abs()).sum()


def ece_paper_script(probs: Tensor, labels: Tensor, n_bins: int = 10,
                     batch_size: int = 100) -> Tensor:
    """The ECE of the paper's evaluation script (``compute_ece`` in the authors' ``evaluate.py``,
    named ``scripts/evaluate_models.py`` since their commit 24d6b7c).

    The samples are cut into batches of ``batch_size`` in order (the last may be shorter). Every
    (batch, bin) cell with a sample whose top-1 confidence lies in the bin ``(lo, hi]`` (edges
    ``torch.linspace(0, 1, n_bins + 1)``) gives one value ``|acc_cell - conf_cell|``; the
    estimate is the unweighted mean of these values over all cells of all batches.

    Unweighting lets cells holding one or two samples count as much as full ones, so the
    estimate stays far from 0 even for a perfectly calibrated model: its values are not
    comparable with the standard ``ece``.
    """
    _check(probs, labels)
    check_int(n_bins, "n_bins", 1)
    check_int(batch_size, "batch_size", 1)
    n = probs.shape[0]
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == labels).to(probs.dtype)
    # The script's float32 edges, as they compare with the confidences.
    edges = torch.linspace(0, 1, n_bins + 1).to(device=probs.device, dtype=probs.dtype)
    # Column b + 1 holds bin (edges[b], edges[b + 1]]; column 0 (confidence <= 0) is in no bin.
    column = torch.bucketize(confidence, edges, right=False)
    columns = n_bins + 1
    cell = torch.arange(n, device=probs.device) // batch_size * columns + column
    size = -(-n // batch_size) * columns
    count = torch.zeros(size, dtype=probs.dtype, device=probs.device).index_add_(
        0, cell, torch.ones_like(confidence))
    gap = (torch.zeros_like(count).index_add_(0, cell, correct)
           - torch.zeros_like(count).index_add_(0, cell, confidence)).abs() / count.clamp(min=1)
    in_a_bin = (count > 0).view(-1, columns)[:, 1:]
    return gap.view(-1, columns)[:, 1:].sum() / in_a_bin.sum()


@dataclass(frozen=True)
class Metric:
    """One column of Table 1, computed per model on the clean test set.

    ``fn(probs, labels, num_classes)`` gives the value; ``better`` is ``"higher"`` or
    ``"lower"``; the table shows ``scale * value`` with ``decimals`` under ``title``; the metric
    is left out of Table 1 for data sets of at most ``hidden_up_to_classes`` classes (top-5
    with 10 classes says nothing); ``paper_column`` is the key of :data:`imlib.paper.PAPER_TABLE1`
    whose printed numbers it compares with (the paper's "ECE" is its script's estimator).
    A ``scaled`` metric reads the predictions after temperature scaling (Guo et al. 2017: one
    temperature per model fitted on its holdout split, :mod:`imlib.calibration`), so that
    calibration can be read apart from accuracy; it is NaN for a run without a holdout split.
    """

    name: str
    fn: Callable[[Tensor, Tensor, int], Tensor]
    title: str
    better: str = "higher"
    scale: float = 1.0
    decimals: int = 4
    paper_column: str | None = None
    hidden_up_to_classes: int = 0
    scaled: bool = False

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise ValueError(f"metric {self.name!r}: better must be 'higher' or 'lower', "
                             f"got {self.better!r}")


METRIC_SPECS: Registry[Metric] = Registry("metric")
METRICS = METRIC_SPECS.names  # every registered metric's name, Table 1's column order (live)

METRIC_SPECS.register(Metric("top1", lambda p, y, k: topk_accuracy(p, y, 1), "Top-1 Acc (%)",
                             scale=100.0, decimals=2, paper_column="top1"))
# k = min(5, K): with 5 classes or fewer top-5 is 1 by construction and says nothing.
METRIC_SPECS.register(Metric("top5", lambda p, y, k: topk_accuracy(p, y, min(5, k)),
                             "Top-5 Acc (%)", scale=100.0, decimals=2, paper_column="top5",
                             hidden_up_to_classes=10))
METRIC_SPECS.register(Metric("ece", lambda p, y, k: ece(p, y), "ECE", "lower",
                             paper_column="ece_paper_script"))
METRIC_SPECS.register(Metric("nll", lambda p, y, k: nll(p, y), "CE Loss", "lower",
                             paper_column="nll"))
METRIC_SPECS.register(Metric("brier", lambda p, y, k: brier(p, y), "Brier", "lower"))
METRIC_SPECS.register(Metric("ece_paper_script", lambda p, y, k: ece_paper_script(p, y),
                             "ECE (paper script)", "lower", paper_column="ece_paper_script"))
METRIC_SPECS.register(Metric("ece_temperature", lambda p, y, k: ece(p, y),
                             "ECE after temperature scaling", "lower", scaled=True))


def classification_metrics(probs: Tensor, labels: Tensor,
                           scaled: Tensor | None = None) -> dict[str, float]:
    """Every metric of ``METRIC_SPECS`` (Table 1's columns) of one model's predictions
    ``probs``, those marked ``scaled`` on ``scaled`` (the temperature-scaled predictions; NaN
    without them): by default top-1 and top-5 accuracy (fractions), ECE (15 bins), NLL, Brier,
    the paper-script ECE and the ECE after temperature scaling."""
    _check(probs, labels)
    if scaled is not None:
        _check(scaled, labels)
    return {name: float(spec.fn(scaled if spec.scaled else probs, labels, probs.shape[1]))
            if scaled is not None or not spec.scaled else math.nan
            for name, spec in METRIC_SPECS.items()}
