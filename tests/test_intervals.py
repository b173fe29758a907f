"""The interval of a difference over seeds and test images (imlib.intervals), on simulated
studies whose true difference is known, and its pieces against independent references."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torchmetrics.functional.classification import multiclass_calibration_error

from imlib.intervals import (calibration_error, difference_interval, mean, resample_weights,
                             t_quantile)


@pytest.mark.parametrize("df", [1, 2, 2.7, 4, 30, 1000, math.inf])
def test_t_quantile_matches_scipy(df):
    expected = stats.norm.ppf(0.975) if df == math.inf else stats.t.ppf(0.975, df)
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-5)


def test_weights_are_draw_counts_and_the_metrics_read_them_as_a_resample():
    g = torch.Generator().manual_seed(0)
    weights = resample_weights(50, 4, g)
    assert weights.shape == (4, 50) and bool((weights.sum(1) == 50).all())
    # The same draws, redone here, and the resampled images averaged one by one.
    drawn = torch.randint(50, (4, 50), generator=torch.Generator().manual_seed(0))
    values = torch.rand(3, 50, dtype=torch.float64, generator=g)
    expected = torch.stack([values[:, row].mean(1) for row in drawn], dim=1)
    torch.testing.assert_close(mean(values, weights), expected)


def test_calibration_error_on_a_resample_equals_torchmetrics():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(2 * torch.randn(2, 400, 10, generator=g), dim=-1)
    labels = torch.randint(10, (400,), generator=g)
    confidence, prediction = probs.max(-1)
    values = torch.stack([confidence, (prediction == labels).float()], -1).double()
    drawn = torch.randint(400, (3, 400), generator=torch.Generator().manual_seed(2))
    weights = resample_weights(400, 3, torch.Generator().manual_seed(2))
    ours = calibration_error(values, weights)
    for m in range(2):
        for r, rows in enumerate(drawn):
            expected = multiclass_calibration_error(probs[m, rows], labels[rows], num_classes=10,
                                                    n_bins=15, norm="l1")
            assert float(ours[m, r]) == pytest.approx(float(expected), abs=1e-5)


def _study(g, seeds=3, images=200, difference=0.0, seed_sd=0.02, image_sd=0.05,
           interaction_sd=0.2):
    """Per-image values of two variants: a shared image effect, a per-variant image effect, a
    seed effect and seed-by-image noise; the variants' true means differ by ``difference``."""
    shared = 0.2 * torch.randn(images, generator=g)
    return [mu + seed_sd * torch.randn(seeds, 1, generator=g) + shared
            + image_sd * torch.randn(images, generator=g)
            + interaction_sd * torch.randn(seeds, images, generator=g)
            for mu in (difference, 0.0)]


@pytest.mark.parametrize(("seed_sd", "image_sd", "interaction_sd"),
                         [(0.02, 0.05, 0.2), (0.05, 0.01, 0.05)],
                         ids=["images and seeds", "seeds dominate"])
def test_the_interval_covers_the_true_difference_95_percent_of_the_time(seed_sd, image_sd,
                                                                       interaction_sd):
    g = torch.Generator().manual_seed(3)
    studies, covered, threads = 300, 0, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: waking a thread pool costs more than the work
    try:
        for k in range(studies):
            a, b = _study(g, difference=0.03, seed_sd=seed_sd, image_sd=image_sd,
                          interaction_sd=interaction_sd)
            interval = difference_interval(a, b, resamples=200, seed=k)
            covered += interval.low <= 0.03 <= interval.high
    finally:
        torch.set_num_threads(threads)
    # 300 studies: a 95 % interval covers 285 of them, binomial sd 3.8
    assert 0.92 <= covered / studies <= 0.985


def test_one_seed_gives_the_difference_without_an_interval_and_bad_input_is_named():
    a, b = torch.ones(1, 10), torch.zeros(2, 10)
    interval = difference_interval(a, b)
    assert interval.difference == 1 and math.isnan(interval.low) and interval.seeds == 1
    with pytest.raises(ValueError, match="same images"):
        difference_interval(torch.ones(3, 10), torch.ones(3, 11))
    with pytest.raises(ValueError, match="NaN"):
        difference_interval(torch.full((3, 10), math.nan), torch.ones(3, 10))


def test_degrees_of_freedom_follow_welch_on_seed_terms_and_never_exceed_the_pooled_seeds():
    g = torch.Generator().manual_seed(4)
    # No image noise at all: the image term vanishes and df is Welch-Satterthwaite's on the
    # two seed variances, computed here by hand.
    a = torch.tensor([0.50, 0.56, 0.49])[:, None].repeat(1, 50)
    b = torch.tensor([0.40, 0.41, 0.43, 0.39])[:, None].repeat(1, 50)
    va, vb = float(a[:, 0].var()) / 3, float(b[:, 0].var()) / 4
    welch = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    interval = difference_interval(a, b, resamples=100)
    assert interval.df == pytest.approx(welch, rel=1e-6) and welch < 5
    # Image noise far above the seed noise: Welch with the image term as known would exceed
    # n_a + n_b - 2 = 4; the cap holds it there.
    a, b = _study(g, seed_sd=1e-4, image_sd=0.3, interaction_sd=1e-3)
    assert difference_interval(a, b, resamples=200).df == 4
