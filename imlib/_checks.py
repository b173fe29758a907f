"""Argument checks shared by the public functions: each raises ValueError naming the argument."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torch import Tensor


def check_images(x: Tensor, name: str = "x", values: bool = True) -> None:
    """``x`` must be a float tensor (N, C, H, W); with ``values``, finite and inside [0, 1].

    The value checks read the tensor back to the host (a device sync), so the training hot path
    passes ``values=False`` for tensors it made itself.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {x.ndim} dimensions "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype}; "
            "convert uint8 images with x.float() / 255"
        )
    if values:
        check_unit_values(x, name, hint="; uint8 images must be converted with x.float() / 255")


def check_unit_values(values: Tensor, name: str, hint: str = "") -> None:
    """``values`` must be finite and inside [0, 1]; ``hint`` is appended to the range message.

    Reads the tensor back to the host (a device sync): callers skip it on the hot path.
    """
    if not values.numel():
        return
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} contains NaN or inf")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]{hint}")


def check_same_shape(x: Tensor, y: Tensor, names: tuple[str, str] = ("x", "y")) -> None:
    """``x`` and ``y`` must have the same shape (a pair compared element by element)."""
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )


def as_levels(level: float | Tensor, n: int, device: torch.device, values: bool = True) -> Tensor:
    """``level`` (a float or a tensor of shape (n,)) as a float tensor (n,) on ``device``."""
    if isinstance(level, Tensor):
        if level.ndim == 0:
            level = level.expand(n)
        if level.shape != (n,):
            raise ValueError(f"level must be a float or a tensor of shape ({n},), "
                             f"got shape {tuple(level.shape)}")
        level = level.to(device=device, dtype=torch.float32)
    elif isinstance(level, (int, float)) and not isinstance(level, bool):
        level = torch.full((n,), float(level), device=device)
    else:
        raise ValueError(f"level must be a float or a tensor of shape ({n},), "
                         f"got {type(level).__name__}")
    if values:
        check_unit_values(level, "level")
    return level


def check_int(value: object, name: str, minimum: int) -> None:
    """``value`` must be an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_names(values: object, allowed: Sequence[str], name: str) -> tuple[str, ...]:
    """``values`` must be a non-empty sequence of distinct names drawn from ``allowed``.

    A bare string is refused (it would otherwise be read as a sequence of letters). Returns the
    names as a tuple, in the given order.
    """
    allowed = tuple(allowed)
    if isinstance(values, str):
        raise ValueError(f"{name} must be a list of names from {allowed}, got the bare string "
                         f"{values!r}; write a single name as [{values!r}]")
    if not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a list of names from {allowed}, got {values!r}")
    names = tuple(values)
    if not names:
        raise ValueError(f"{name} must name at least one of {allowed}, got an empty list")
    unknown = [value for value in names if not isinstance(value, str) or value not in allowed]
    if unknown:
        raise ValueError(f"{name} must be drawn from {allowed}, got unknown {unknown}")
    repeated = sorted({value for value in names if names.count(value) > 1})
    if repeated:
        raise ValueError(f"{name} must not repeat names, got {repeated} more than once")
    return names


def check_fraction(value: object, name: str) -> None:
    """``value`` must be a real number (not a bool) in [0, 1), like a smoothing eps."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")


def check_choice(value: str, allowed: Sequence[str], name: str) -> None:
    """``value`` must be one of ``allowed`` (a single name; lists use ``check_names``)."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


def check_class_names(class_names: object) -> None:
    """``class_names`` must be a list of at least two names, such as ``data.classes``."""
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or len(
            class_names) < 2:
        raise ValueError(f"class_names must be a list of at least 2 names (e.g. data.classes), "
                         f"got {class_names!r}")


def check_labels(labels: Tensor, num_classes: int, n: int | None = None,
                 values: bool = True) -> None:
    """``labels`` must be an integer tensor (N,) with values in [0, num_classes)."""
    check_int(num_classes, "num_classes", 2)
    if not isinstance(labels, Tensor) or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D integer tensor (N,), got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if n is not None and labels.shape[0] != n:
        raise ValueError(f"labels must have length {n}, got {labels.shape[0]}")
    if values and labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), got values in [{lo}, {hi}]")
