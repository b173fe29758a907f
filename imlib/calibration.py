"""Temperature scaling (Guo et al. 2017): one scalar T, fitted on held-out predictions, that
divides a model's logits so that ``softmax(logits / T)`` has the lowest NLL there.

Dividing by one positive number keeps every prediction's ranking, so accuracy is unchanged:
the ECE after scaling says how well a model could be calibrated, read apart from its accuracy.
Fit on the held-out split, apply to the test split.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from imlib._checks import check_labels

__all__ = ["TEMPERATURE_RANGE", "apply_temperature", "fit_temperature"]

TEMPERATURE_RANGE = (1e-2, 1e2)  # the search interval of fit_temperature
_BISECTIONS = 64  # halvings of the log-T interval: far below float64's resolution of T


def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor) or logits.ndim != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a float tensor of shape (N, K), got {shape}")
    if logits.shape[0] == 0 or logits.shape[1] < 2:
        raise ValueError(f"logits must hold at least one sample of at least 2 classes, got "
                         f"shape {tuple(logits.shape)}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits contains NaN or inf; pass the model's raw outputs, not "
                         "log-probabilities of zero")


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The T in ``TEMPERATURE_RANGE`` that minimises the mean NLL of ``softmax(logits / T)``.

    With beta = 1 / T the NLL is convex in beta, and its slope, the mean over samples of
    ``E_softmax[z] - z_label``, rises with beta; the minimum is where the slope is zero,
    found by bisection on log T (a fixed number of halvings: the same input gives the same
    T). Every step is one batched pass over all samples, in float64. An optimum outside the
    range returns its nearest end (e.g. the lower one when every sample is already correctly
    ranked and confidence only lowers the NLL); logits that are constant in every row do not
    depend on T and return 1.0.

    >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    >>> round(fit_temperature(z, torch.tensor([0, 1, 1])), 3)
    2.885
    """
    _check_logits(logits)
    check_labels(labels, logits.shape[1], n=logits.shape[0])
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64  # mps has no fp64
    z = logits.detach().to(dtype)
    if not bool((z.amax(1) > z.amin(1)).any()):
        return 1.0
    true_logit = z.gather(1, labels.to(z.device)[:, None]).mean()

    def slope(log_t: float) -> float:  # dNLL / dbeta at beta = exp(-log_t)
        p = torch.softmax(z * math.exp(-log_t), dim=1)
        return float((p * z).sum(1).mean() - true_logit)

    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    if slope(lo) <= 0:  # the NLL still falls at the smallest T
        return TEMPERATURE_RANGE[0]
    if slope(hi) >= 0:  # the NLL still falls at the largest T
        return TEMPERATURE_RANGE[1]
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if slope(mid) > 0:  # beta too large: T too small
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """``logits / temperature``: the scaled logits (softmax them for probabilities).

    >>> apply_temperature(torch.tensor([[2.0, 0.0]]), 2.0)
    tensor([[1., 0.]])
    """
    _check_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0 (from fit_temperature), "
                         f"got {temperature!r}")
    return logits / temperature
