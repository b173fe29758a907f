"""Tests of imlib.calibration: the temperature fit against an independent minimisation of the NLL
(scipy's bounded scalar search on scikit-learn's log_loss), on logits whose optimum is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import softmax
from sklearn.metrics import log_loss

from imlib.calibration import TEMPERATURE_RANGE, apply_temperature, fit_temperature


def _calibrated(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits): calibrated by construction (T = 1)."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=g).squeeze(1)
    return logits, labels


def _nll_at(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    return log_loss(labels, softmax(logits / temperature, axis=1),
                    labels=np.arange(logits.shape[1]))


def _scipy_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    z, y = logits.double().numpy(), labels.numpy()
    found = minimize_scalar(lambda u: _nll_at(z, y, math.exp(u)), method="bounded",
                            bounds=tuple(math.log(t) for t in TEMPERATURE_RANGE),
                            options={"xatol": 1e-10})
    return math.exp(found.x)


@pytest.mark.parametrize(("scale", "seed"), [(3.0, 0), (1.0, 1), (0.5, 2), (1.7, 3)])
def test_fit_matches_an_independent_minimisation_of_the_nll(scale: float, seed: int) -> None:
    logits, labels = _calibrated(4000, 10, seed)
    fitted = fit_temperature(scale * logits, labels)
    assert fitted == pytest.approx(_scipy_temperature(scale * logits, labels), rel=1e-5)


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_over_and_under_confident_logits_give_back_their_scale(scale: float) -> None:
    """Calibrated logits multiplied by ``scale`` are best divided by about ``scale``."""
    logits, labels = _calibrated(20000, 10, 4)
    assert fit_temperature((scale * logits).float(), labels) == pytest.approx(scale, rel=0.05)


def test_the_fitted_temperature_lowers_the_nll_and_keeps_the_ranking() -> None:
    logits, labels = _calibrated(3000, 5, 5)
    logits = 3 * logits
    fitted = fit_temperature(logits, labels)
    z, y = logits.numpy(), labels.numpy()
    best = _nll_at(z, y, fitted)
    for other in (1.0, 0.98 * fitted, 1.02 * fitted):
        assert best < _nll_at(z, y, other)
    scaled = apply_temperature(logits, fitted)
    assert torch.equal(scaled.argmax(1), logits.argmax(1))
    np.testing.assert_allclose(torch.softmax(scaled, 1).numpy(), softmax(z / fitted, axis=1))


def test_fit_is_deterministic_and_ignores_the_order_of_samples() -> None:
    logits, labels = _calibrated(2000, 10, 6)
    first = fit_temperature(2 * logits, labels)
    assert fit_temperature(2 * logits, labels) == first
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    assert fit_temperature(2 * logits[order], labels[order]) == pytest.approx(first, rel=1e-9)


def test_an_optimum_outside_the_range_returns_its_end() -> None:
    ranked = torch.tensor([[3.0, 0.0], [0.0, 3.0]])  # all right: sharper is always better
    assert fit_temperature(ranked, torch.tensor([0, 1])) == TEMPERATURE_RANGE[0]
    wrong = torch.tensor([[3.0, 0.0], [0.0, 3.0]])  # all wrong: flatter is always better
    assert fit_temperature(wrong, torch.tensor([1, 0])) == TEMPERATURE_RANGE[1]
    assert fit_temperature(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])) == 1.0


@pytest.mark.parametrize(
    ("logits", "labels", "name"),
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), "logits"),
        (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), "logits"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "logits"),
        (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), "logits"),
        (torch.tensor([[0.0, float("nan")]]), torch.zeros(1, dtype=torch.long), "logits"),
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), "labels"),
        (torch.zeros(4, 3), torch.zeros(4), "labels"),
        (torch.zeros(2, 3), torch.tensor([0, 3]), "labels"),
    ],
)
def test_fit_validates(logits, labels, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        fit_temperature(logits, labels)


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_apply_validates_the_temperature(temperature) -> None:
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(torch.zeros(2, 3), temperature)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_agrees_with_the_cpu() -> None:
    logits, labels = _calibrated(4000, 10, 7)
    assert fit_temperature(2 * logits.cuda(), labels.cuda()) == pytest.approx(
        fit_temperature(2 * logits, labels), rel=1e-9)
