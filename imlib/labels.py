"""Soft targets, IM's formula, and the one loss that trains every variant.

Every target is a float tensor (N, K) whose rows sum to 1, made by ``soft_targets`` from a
smoothing eps per sample (each variant's eps is its spec in :mod:`imlib.variants`):

- ``hard``: one-hot (the baseline).
- ``smoothed``: ``(1 - eps) onehot + eps / K``, fixed eps (torch's ``label_smoothing``).
- ``information_matching``: IM's targets, ``eps = im_eps(NMI) = clamp(1 - NMI, 0, max_eps)``
  per sample; the true class gets ``true_class_target(eps)``: ``1 - eps``, every other class
  ``eps / (K - 1)`` (the paper's formula), or with ``spread="all"`` the public code's
  ``(1 - eps) onehot + eps / K``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from imlib._checks import check_choice, check_fraction, check_labels, check_unit_values

__all__ = [
    "SPREADS",
    "hard",
    "im_eps",
    "true_class_target",
    "smoothed",
    "information_matching",
    "soft_targets",
    "soft_cross_entropy",
    "target_entropy",
]

SPREADS = ("others", "all")


def _check_per_sample(values: Tensor, n: int, name: str, validate_args: bool) -> Tensor:
    """``values`` (n,) in [0, 1] as float32; the value checks sync, so ``validate_args`` gates
    them."""
    if not isinstance(values, Tensor) or values.shape != (n,):
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"{name} must be a tensor of shape ({n},), got {shape}")
    if validate_args:
        check_unit_values(values, name)
    return values.float()


def _onehot(labels: Tensor, num_classes: int) -> Tensor:
    """float one-hot rows; a comparison, not ``F.one_hot``, which syncs with the GPU to check
    its input."""
    return (labels[:, None] == torch.arange(num_classes, device=labels.device)).to(torch.float32)


def soft_targets(labels: Tensor, num_classes: int, eps: Tensor, spread: str = "others",
                 validate_args: bool = True) -> Tensor:
    """Targets with per-sample smoothing ``eps`` (N,) in [0, 1]: the building block of every
    policy.

    ``spread="others"``: true class ``1 - eps``, each other class ``eps / (K - 1)``.
    ``spread="all"``: ``(1 - eps) onehot + eps / K`` (true class ``1 - eps + eps / K``).

    ``validate_args=False`` keeps the shape checks but skips the value checks (label range,
    finite eps in [0, 1]), which read back to the host: the training step turns them off.

    >>> soft_targets(torch.tensor([0]), 3, torch.tensor([0.4]))
    tensor([[0.6000, 0.2000, 0.2000]])
    """
    check_choice(spread, SPREADS, "spread")
    check_labels(labels, num_classes, values=validate_args)
    eps = _check_per_sample(eps, labels.shape[0], "eps", validate_args).view(-1, 1)
    k = num_classes
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
    check_fraction(eps, "eps")
    eps_per_sample = torch.full(labels.shape, eps, device=labels.device)
    return soft_targets(labels, num_classes, eps_per_sample, "all", validate_args=False)


def im_eps(nmi, max_eps: float = 0.9):
    """IM's smoothing per sample, ``clamp(1 - nmi, 0, max_eps)``: the one place of the formula
    (``nmi`` a tensor, or a pandas column for the readings of saved results).

    >>> im_eps(torch.tensor([1.0, 0.6, 0.0]))
    tensor([0.0000, 0.4000, 0.9000])
    """
    return (1 - nmi).clip(0, max_eps)


def true_class_target(eps, num_classes: int, spread: str = "others"):
    """The target mass on the true class for smoothing ``eps`` (a number, tensor or column):
    ``1 - eps``, plus ``eps / K`` with the public code's ``spread="all"`` (as ``soft_targets``).
    IM's loss is minimised where the model's true-class confidence equals it.

    >>> true_class_target(0.4, 10), round(true_class_target(0.4, 10, "all"), 2)
    (0.6, 0.64)
    """
    check_choice(spread, SPREADS, "spread")
    return 1 - eps + (eps / num_classes if spread == "all" else 0)


def information_matching(labels: Tensor, num_classes: int, nmi: Tensor, max_eps: float = 0.9,
                         spread: str = "others", validate_args: bool = True) -> Tensor:
    """IM targets: ``eps = clamp(1 - nmi, 0, max_eps)`` per sample.

    >>> information_matching(torch.tensor([0]), 3, torch.tensor([0.6]))
    tensor([[0.6000, 0.2000, 0.2000]])
    """
    check_labels(labels, num_classes, values=validate_args)
    check_fraction(max_eps, "max_eps")
    nmi = _check_per_sample(nmi, labels.shape[0], "nmi", validate_args)
    return soft_targets(labels, num_classes, im_eps(nmi, max_eps), spread, validate_args=False)


def soft_cross_entropy(logits: Tensor, targets: Tensor, validate_args: bool = True,
                       reduction: str = "mean") -> Tensor:
    """Mean over the batch of ``-sum_k targets_k log softmax(logits)_k`` (``reduction="none"``:
    the per-sample losses (N,), to look at one batch).

    Its minimiser over the logits is ``softmax(logits) = targets``: trained on IM targets, a
    model learns to report confidence ``1 - eps`` on a degraded input.

    Shapes, dtypes and devices are always checked; ``validate_args`` adds the value checks
    (finite targets in [0, 1], rows summing to 1), which read back to the host: the training
    step turns them off.

    >>> soft_cross_entropy(torch.zeros(1, 2), torch.tensor([[0.5, 0.5]]))
    tensor(0.6931)
    """
    if not isinstance(logits, Tensor) or logits.ndim != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a float tensor of shape (N, K), got {shape}")
    if logits.shape[0] == 0:
        raise ValueError("logits must hold at least one sample, got an empty batch")
    if not isinstance(targets, Tensor) or targets.shape != logits.shape:
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets must have the shape of logits {tuple(logits.shape)}, "
                         f"got {shape}")
    if not targets.is_floating_point():
        raise ValueError(f"targets must be a float tensor of class probabilities, got dtype "
                         f"{targets.dtype}; build them with imlib.labels (e.g. hard(labels, K))")
    if targets.device != logits.device:
        raise ValueError(f"targets must be on the device of logits ({logits.device}), got "
                         f"{targets.device}")
    check_choice(reduction, ("mean", "none"), "reduction")
    if validate_args:
        check_unit_values(targets, "targets")
        if float((targets.sum(1) - 1).abs().max()) > 1e-3:
            raise ValueError("targets rows must sum to 1; build them with imlib.labels")
    per_sample = -(targets * torch.log_softmax(logits.float(), dim=1)).sum(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample


def target_entropy(targets: Tensor) -> Tensor:
    """The entropy ``-sum_k t_k log t_k`` (nats) of each row of ``targets`` (N, K): the lowest
    value ``soft_cross_entropy`` can reach against that target, reached when the prediction
    equals it (0 for a one-hot target, ``ln K`` for the uniform one).

    >>> target_entropy(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    tensor([0.0000, 0.6931])
    """
    if not isinstance(targets, Tensor) or targets.ndim != 2 or not targets.is_floating_point():
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets must be a float tensor of shape (N, K), got {shape}")
    return 0.0 - torch.special.xlogy(targets, targets).sum(dim=1)  # 0.0 - x: never -0.0
