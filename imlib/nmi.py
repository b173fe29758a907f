"""Normalized mutual information between an image and its degraded copy, batched.

For each image pair and channel the values are hard-binned, ``code = floor(v * (bins - 1))``,
the joint histogram is counted with integers (one ``bincount`` for the whole batch), and

    NMI_c = 2 I(X_c; Y_c) / (H(X_c) + H(Y_c)),        NMI = mean over channels,

which is scikit-learn's ``normalized_mutual_info_score(average_method="arithmetic")`` on the
bin codes. One convention differs from scikit-learn on purpose: a channel whose two entropies
are both 0 (both constant) contributes 0, not 1, so a degraded image that kept no structure
never counts as fully informative.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from imlib._checks import check_images, check_int, check_same_shape

__all__ = ["nmi", "bin_codes"]


def bin_codes(x: Tensor, bins: int) -> Tensor:
    """Integer bin of each value, ``floor(v * (bins - 1))`` in ``[0, bins - 1]`` (int64)."""
    return _float_codes(x, bins).long()


def _float_codes(x: Tensor, bins: int) -> Tensor:
    """``bin_codes`` as float integers, to combine two codes before one integer conversion;
    float32 at least (half precision cannot hold them), float64 where ``bins**2 > 2**24``."""
    dtype = torch.promote_types(x.dtype, torch.float64 if bins > 4096 else torch.float32)
    return (x.to(dtype) * (bins - 1)).clamp_(0, bins - 1).floor_()


def _entropy_from_counts(counts: Tensor, pixels: int) -> Tensor:
    """Shannon entropy (nats) of histograms ``counts`` (..., bins) that each sum to ``pixels``."""
    counts = counts.double()
    return math.log(pixels) - torch.special.xlogy(counts, counts).sum(-1) / pixels


def nmi(x: Tensor, y: Tensor, bins: int = 64, validate_args: bool = True) -> Tensor:
    """Channel-averaged normalized mutual information of each pair ``(x[i], y[i])``.

    Args:
        x, y: float images (N, C, H, W) in [0, 1], same shape, any device.
        bins: histogram bins per channel (the paper uses 64).
        validate_args: check values (NaN, range); this reads back to the host, so the
            training loop turns it off for tensors it made itself.

    Returns:
        float32 tensor (N,) in [0, 1].

    >>> x = torch.rand(2, 3, 32, 32)
    >>> nmi(x, x)
    tensor([1., 1.])
    """
    check_images(x, "x", values=validate_args)
    check_images(y, "y", values=validate_args)
    check_same_shape(x, y)
    check_int(bins, "bins", 2)
    n, c, h, w = x.shape
    rows, pixels = n * c, h * w
    if rows * pixels == 0:
        raise ValueError(f"x and y must hold at least one image with one channel and one pixel, "
                         f"got shape {tuple(x.shape)}: NMI of an empty image is undefined")

    # Joint bin of every pixel, offset so that each (sample, channel) owns bins*bins counters:
    # one integer scatter counts the whole batch (no float histograms, no loop over samples).
    # The codes are combined as floats, exact for integers below 2**24 (float32).
    code = (_float_codes(x, bins) * bins).add_(_float_codes(y, bins))
    code = code.reshape(rows, pixels).long()
    code += torch.arange(0, rows * bins * bins, bins * bins, device=x.device).view(rows, 1)
    code = code.view(-1)
    # On the CPU, int16 counters where no count can overflow (a CIFAR image has 1,024 pixels):
    # half the memory to clear and scatter into. GPUs keep int32, whose atomics are native.
    small = pixels < 2**15 and x.device.type == "cpu"
    counter = torch.int16 if small else torch.int32
    joint = torch.zeros(rows * bins * bins, dtype=counter, device=x.device)
    joint.scatter_add_(0, code, torch.ones(1, dtype=counter, device=x.device).expand_as(code))

    # H(X,Y) = log P - (1/P) sum_v c_v log c_v = log P - mean over pixels of log c(pixel's bin):
    # gathering at the pixels touches P values per channel instead of all bins*bins counters.
    # float64: MI is a small difference of entropies, float32 logs would cost 1e-5 of NMI.
    log_counts = joint.take(code).view(rows, pixels).double().log_()
    h_xy = math.log(pixels) - log_counts.mean(1)
    joint = joint.view(rows, bins, bins)
    h_x = _entropy_from_counts(joint.sum(2, dtype=torch.int32), pixels)
    h_y = _entropy_from_counts(joint.sum(1, dtype=torch.int32), pixels)

    mi = (h_x + h_y - h_xy).clamp(min=0)
    denom = h_x + h_y
    per_channel = torch.where(denom > 0, 2 * mi / denom.clamp(min=1e-300), torch.zeros_like(denom))
    return per_channel.clamp(max=1).view(n, c).mean(dim=1).float()
