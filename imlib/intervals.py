"""How sure a difference between two training recipes is: a 95 % interval that counts both the
seed-to-seed variation of training and the sampling of the test set.

The data: for each recipe (a variant), one row of per-image values per trained seed, on the same
test images in the same order (``(n_seeds, N)``, or ``(n_seeds, N, 2)`` for the ECE). A metric
maps those rows, with a weight per image, to one number per seed; the difference compared is the
variant's mean over its seeds minus the other's, on the whole test set.

The interval (:func:`difference_interval`) is ``difference +- t * sqrt(V)`` with

- ``V = s_a^2 / n_a + s_b^2 / n_b + image term``: ``s^2`` is a variant's sample variance of the
  metric over its ``n`` seeds (ddof 1); the image term is the variance of the seed-averaged
  difference over a **paired bootstrap of the test images** (the same resampled images for
  every model: they were all tested on the same images), less the part of it that the seed
  variances already hold (how each seed's value moves around its variant's mean from one image
  resample to the next, ``sum_s var / (n (n - 1))`` per variant; without it the image-by-image
  seed noise would be counted twice);
- ``t``, Student's quantile with the Welch-Satterthwaite degrees of freedom of ``V``, the image
  term counted as known (it comes from thousands of images, the seed terms from ``n - 1``),
  capped at ``n_a + n_b - 2``, the degrees of freedom of the two seed variances pooled. Counting
  the image term as known lets the formula exceed that (up to infinity when the image term
  dominates), which would claim more certainty about the seed terms than ``n_a + n_b`` runs
  can give; the cap keeps ``t`` at the pooled seeds' value or above (3 seeds each: df 2 to 4,
  t 2.78 to 4.30).

Why not two standard errors or a bootstrap over seeds: with 3 seeds a variance has 2 degrees of
freedom, and a normal quantile (2 instead of t's 2.8-4.3) or resampling 3 seeds (10 distinct
resamples, variance shrunk by (n - 1) / n) gives intervals that miss the truth far more often
than 5 % of the time. The tests check the coverage of this one on simulated studies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from imlib._checks import check_int

__all__ = ["Interval", "mean", "calibration_error", "t_quantile", "resample_weights",
           "difference_interval"]

Metric = Callable[[Tensor, Tensor], Tensor]


def mean(values: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean over images: ``values`` (m, N), ``weights`` (B, N) -> (m, B)."""
    return torch.einsum("bn,mn->mb", weights, values) / weights.sum(1)


def calibration_error(values: Tensor, weights: Tensor, n_bins: int = 15) -> Tensor:
    """The ECE of :func:`imlib.metrics.ece` on weighted images: ``values`` (m, N, 2) holds each
    image's top-1 confidence and correctness (0 or 1), ``weights`` (B, N) -> (m, B).

    ``sum_b (n_b / N) |acc_b - conf_b|`` is ``sum_b |sum_(i in b) (correct_i - conf_i)| / N``:
    one product of the weights with the per-bin gaps, for every resample at once.
    """
    confidence, correct = (v.contiguous() for v in values.unbind(-1))
    edges = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, n_bins - 1)
    in_bin = torch.nn.functional.one_hot(index, n_bins).to(values.dtype)  # (m, N, bins)
    gaps = in_bin * (correct - confidence)[..., None]
    return torch.einsum("bn,mnk->mbk", weights, gaps).abs().sum(-1) / weights.sum(1)


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile at probability ``p`` in (0.5, 1) for ``df`` >= 1 degrees of freedom
    (``inf``: the normal's), from its density integrated on a fine grid (no SciPy here)."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must lie in (0.5, 1), got {p}")
    if not df >= 1:
        raise ValueError(f"df must be >= 1, got {df}")
    nu = min(df, 1e7)  # beyond, t and the normal agree to 1e-7
    x = np.linspace(0.0, 64.0, 16_001)  # the quantile to 1e-5
    log_norm = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    density = np.exp(log_norm - (nu + 1) / 2 * np.log1p(x * x / nu))
    trapezoids = (density[1:] + density[:-1]) / 2 * (x[1] - x[0])
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum(trapezoids)])
    return float(np.interp(p, cdf, x))


def resample_weights(n_images: int, resamples: int, generator: torch.Generator) -> Tensor:
    """``resamples`` bootstrap resamples of ``n_images`` images as weights (resamples, N): how
    often each image was drawn (N draws with replacement), float64."""
    drawn = torch.randint(n_images, (resamples, n_images), generator=generator)
    return torch.zeros(resamples, n_images, dtype=torch.float64).scatter_add_(
        1, drawn, torch.ones(drawn.shape, dtype=torch.float64))


@dataclass(frozen=True)
class Interval:
    """A difference of a metric between two variants (means over seeds) and its interval.

    ``low`` and ``high`` are NaN when a variant has a single seed (no seed variance to
    estimate); ``seeds`` is the fewer of the two variants' seed counts; ``df`` the degrees of
    freedom of the t quantile (NaN with a single seed).
    """

    difference: float
    low: float
    high: float
    variant_mean: float
    other_mean: float
    seeds: int
    df: float = math.nan


def _check_values(values: Tensor, name: str) -> None:
    if not isinstance(values, Tensor) or values.ndim < 2 or not values.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (n_seeds, N, ...) of per-image values")
    if values.shape[0] < 1 or values.shape[1] < 2:
        raise ValueError(f"{name} must hold at least one seed of at least two images, got "
                         f"shape {tuple(values.shape)}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} contains NaN or inf")


def difference_interval(a: Tensor, b: Tensor, metric: Metric = mean, level: float = 0.95,
                        resamples: int = 1000, seed: int = 0) -> Interval:
    """The difference ``metric(a) - metric(b)`` (each the mean over its seeds) and its ``level``
    interval over seeds and test images, as the module docstring says.

    ``a`` (n_a, N, ...) and ``b`` (n_b, N, ...): per-image values of each seed of two variants on
    the same N test images, in the same order. ``metric``: :func:`mean` or
    :func:`calibration_error` (or any function of values and image weights alike). The
    bootstrap draws ``resamples`` image resamples from a generator seeded by ``seed``: the
    result repeats exactly.
    """
    _check_values(a, "a")
    _check_values(b, "b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"a and b must hold the same images, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    check_int(resamples, "resamples", 2)
    n_a, n_b, n_images = a.shape[0], b.shape[0], a.shape[1]
    values = torch.cat([a, b]).double()
    per_seed = metric(values, torch.ones(1, n_images, dtype=torch.float64))[:, 0]
    variant, other = per_seed[:n_a], per_seed[n_a:]
    difference = float(variant.mean() - other.mean())
    seeds = min(n_a, n_b)
    if seeds < 2:
        return Interval(difference, math.nan, math.nan, float(variant.mean()),
                        float(other.mean()), seeds)

    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, 2_000_000 // n_images)  # bounds the weights' memory on large test sets
    boot = torch.cat([metric(values, resample_weights(n_images, min(chunk, resamples - i),
                                                      generator))
                      for i in range(0, resamples, chunk)], dim=1)  # (n_a + n_b, resamples)
    boot_a, boot_b = boot[:n_a], boot[n_a:]
    image_var = float((boot_a.mean(0) - boot_b.mean(0)).var())
    counted = sum(float((x - x.mean(0)).var(dim=1).sum()) / (len(x) * (len(x) - 1))
                  for x in (boot_a, boot_b))
    seed_terms = [float(variant.var()) / n_a, float(other.var()) / n_b]
    var = sum(seed_terms) + max(image_var - counted, 0.0)
    denominator = seed_terms[0] ** 2 / (n_a - 1) + seed_terms[1] ** 2 / (n_b - 1)
    welch = var ** 2 / denominator if denominator > 0 else math.inf
    df = min(max(welch, 1.0), n_a + n_b - 2)
    half = t_quantile((1 + level) / 2, df) * math.sqrt(var)
    return Interval(difference, difference - half, difference + half, float(variant.mean()),
                    float(other.mean()), seeds, df)
