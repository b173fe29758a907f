"""Soft targets for the four variants of the study, and the one loss that trains them all.

Every policy returns a float tensor (N, K) whose rows sum to 1:

- ``hard``: one-hot (the baseline).
- ``smoothed``: ``(1 - eps) onehot + eps / K``, fixed eps (torch's ``label_smoothing``).
- ``information_matching``: ``eps = clamp(1 - NMI, 0, max_eps)`` per sample; the true class
  gets ``1 - eps`` and every other class ``eps / (K - 1)`` (the paper's formula), or with
  ``spread="all"`` the public code's ``(1 - eps) onehot + eps / K``.
- ``level_matching``: the same with ``eps = clamp(d, 0, max_eps)``, the control that asks
  whether NMI adds anything over the level the augmentation already knows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from imlib._checks import check_choice, check_labels

__all__ = [
    "SPREADS",
    "hard",
    "im_eps",
    "smoothed",
    "information_matching",
    "level_matching",
    "soft_targets",
    "soft_cross_entropy",
]

SPREADS = ("others", "all")


def _check_eps(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")


def _check_per_sample(values: Tensor, n: int, name: str, validate_args: bool) -> Tensor:
    if not isinstance(values, Tensor) or values.shape != (n,):
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"{name} must be a tensor of shape ({n},), got {shape}")
    if validate_args and values.numel():
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{name} contains NaN or inf")
        lo, hi = float(values.min()), float(values.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return values.float()


def _onehot(labels: Tensor, num_classes: int) -> Tensor:
    """float one-hot rows; a comparison, not ``F.one_hot``, which syncs with the GPU to check
    its input."""
    return (labels[:, None] == torch.arange(num_classes, device=labels.device)).to(torch.float32)


def soft_targets(labels: Tensor, num_classes: int, eps: Tensor, spread: str = "others") -> Tensor:
    """Targets with per-sample smoothing ``eps`` (N,): the building block of every policy.

    ``spread="others"``: true class ``1 - eps``, each other class ``eps / (K - 1)``.
    ``spread="all"``: ``(1 - eps) onehot + eps / K`` (true class ``1 - eps + eps / K``).
    """
    check_choice(spread, SPREADS, "spread")
    k = num_classes
    eps = eps.to(torch.float32).view(-1, 1)
    onehot = _onehot(labels, k)
    if spread == "others":
        return onehot * (1 - eps) + (1 - onehot) * eps / (k - 1)
    return onehot * (1 - eps) + eps / k


def hard(labels: Tensor, num_classes: int, validate_args: bool = True) -> Tensor:
    """One-hot targets.

    >>> hard(torch.tensor([1]), 3)
    tensor([[0., 1., 0.]])
    """
    check_labels(labels, num_classes, values=validate_args)
    return _onehot(labels, num_classes)


def smoothed(labels: Tensor, num_classes: int, eps: float = 0.1,
             validate_args: bool = True) -> Tensor:
    """Fixed label smoothing ``(1 - eps) onehot + eps / K`` (the paper's LS uses eps = 0.1).

    >>> smoothed(torch.tensor([0]), 2, eps=0.2)
    tensor([[0.9000, 0.1000]])
    """
    check_labels(labels, num_classes, values=validate_args)
    _check_eps(eps, "eps")
    eps_per_sample = torch.full(labels.shape, eps, device=labels.device)
    return soft_targets(labels, num_classes, eps_per_sample, "all")


def im_eps(nmi: Tensor, max_eps: float = 0.9) -> Tensor:
    """IM's smoothing per sample, ``clamp(1 - nmi, 0, max_eps)``: the one place of the formula.

    >>> im_eps(torch.tensor([1.0, 0.6, 0.0]))
    tensor([0.0000, 0.4000, 0.9000])
    """
    return (1 - nmi).clamp(0, max_eps)


def information_matching(labels: Tensor, num_classes: int, nmi: Tensor, max_eps: float = 0.9,
                         spread: str = "others", validate_args: bool = True) -> Tensor:
    """IM targets: ``eps = clamp(1 - nmi, 0, max_eps)`` per sample.

    >>> information_matching(torch.tensor([0]), 3, torch.tensor([0.6]))
    tensor([[0.6000, 0.2000, 0.2000]])
    """
    check_labels(labels, num_classes, values=validate_args)
    _check_eps(max_eps, "max_eps")
    nmi = _check_per_sample(nmi, labels.shape[0], "nmi", validate_args)
    return soft_targets(labels, num_classes, im_eps(nmi, max_eps), spread)


def level_matching(labels: Tensor, num_classes: int, level: Tensor, max_eps: float = 0.9,
                   spread: str = "others", validate_args: bool = True) -> Tensor:
    """Control targets: ``eps = clamp(level, 0, max_eps)``, the degradation level itself.

    >>> level_matching(torch.tensor([2]), 3, torch.tensor([0.5]))
    tensor([[0.2500, 0.2500, 0.5000]])
    """
    check_labels(labels, num_classes, values=validate_args)
    _check_eps(max_eps, "max_eps")
    level = _check_per_sample(level, labels.shape[0], "level", validate_args)
    return soft_targets(labels, num_classes, level.clamp(0, max_eps), spread)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over the batch of ``-sum_k targets_k log softmax(logits)_k``.

    Its minimiser over the logits is ``softmax(logits) = targets``: trained on IM targets, a
    model learns to report confidence ``1 - eps`` on a degraded input.

    >>> soft_cross_entropy(torch.zeros(1, 2), torch.tensor([[0.5, 0.5]]))
    tensor(0.6931)
    """
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError("logits must be a tensor of shape (N, K)")
    if not isinstance(targets, Tensor) or targets.shape != logits.shape:
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets must have the shape of logits {tuple(logits.shape)}, "
                         f"got {shape}")
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(targets * log_p).sum(dim=1).mean()
