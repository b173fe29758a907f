"""imlib.metrics against torchmetrics, torch's nll_loss and per-sample numpy loops, plus the
property that separates the standard ECE from the paper script's estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
)

from imlib.metrics import (
    brier,
    classification_metrics,
    ece,
    ece_paper_script,
    nll,
    reliability_bins,
    topk_accuracy,
)

# (N, K, logit scale): small and large sets, few and many classes, flat and sharp predictions.
SETS = [(50, 3, 0.5), (400, 10, 2.0), (1000, 100, 4.0), (3000, 7, 3.0), (257, 2, 1.0)]
SET_IDS = [f"n{n}-k{k}-s{s}" for n, k, s in SETS]


def random_set(n: int, k: int, scale: float, seed: int = 0):
    """Softmax of scaled Gaussian logits and labels that agree with the argmax ~half the time."""
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, k, generator=g)
    probs = torch.softmax(logits, dim=1)
    labels = torch.where(torch.rand(n, generator=g) < 0.5, logits.argmax(1),
                         torch.randint(k, (n,), generator=g))
    # torchmetrics gives confidence exactly 1 a bin of its own; keep clear of that case here.
    assert float(probs.max()) < 1
    return probs, labels


# --- against torchmetrics / torch -----------------------------------------------------------


@pytest.mark.parametrize("n_bins", [5, 10, 15])
@pytest.mark.parametrize(("n", "k", "scale"), SETS, ids=SET_IDS)
def test_ece_equals_torchmetrics_calibration_error(n, k, scale, n_bins):
    probs, labels = random_set(n, k, scale)
    expected = multiclass_calibration_error(probs, labels, num_classes=k, n_bins=n_bins,
                                            norm="l1")
    torch.testing.assert_close(ece(probs, labels, n_bins=n_bins), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("n", "k", "scale"), SETS, ids=SET_IDS)
def test_topk_accuracy_equals_torchmetrics(n, k, scale):
    probs, labels = random_set(n, k, scale, seed=1)
    for top_k in sorted({1, min(2, k), min(5, k), k}):
        expected = multiclass_accuracy(probs, labels, num_classes=k, top_k=top_k,
                                       average="micro")
        torch.testing.assert_close(topk_accuracy(probs, labels, top_k), expected,
                                   rtol=0, atol=1e-6)
    assert float(topk_accuracy(probs, labels, k)) == 1.0


@pytest.mark.parametrize(("n", "k", "scale"), SETS, ids=SET_IDS)
def test_nll_equals_torch_nll_loss_on_log_probs(n, k, scale):
    probs, labels = random_set(n, k, scale, seed=2)
    expected = torch.nn.functional.nll_loss(probs.log(), labels)
    torch.testing.assert_close(nll(probs, labels), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("n", "k", "scale"), SETS, ids=SET_IDS)
def test_brier_equals_a_per_sample_loop(n, k, scale):
    probs, labels = random_set(n, k, scale, seed=3)
    p, y = probs.double().numpy(), labels.numpy()
    total = 0.0
    for i in range(n):
        onehot = np.zeros(k)
        onehot[y[i]] = 1
        total += float(np.sum((p[i] - onehot) ** 2))
    assert float(brier(probs, labels)) == pytest.approx(total / n, abs=1e-6)


# --- reliability bins -----------------------------------------------------------------------


@pytest.mark.parametrize("n_bins", [1, 10, 15])
@pytest.mark.parametrize(("n", "k", "scale"), SETS[:3], ids=SET_IDS[:3])
def test_reliability_bins_match_a_per_sample_loop(n, k, scale, n_bins):
    probs, labels = random_set(n, k, scale, seed=4)
    p, y = probs.double().numpy(), labels.numpy()
    count, conf, acc = np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins)
    for i in range(n):
        c = p[i].max()
        b = next(j for j in range(n_bins) if j / n_bins <= c < (j + 1) / n_bins)  # [lo, hi)
        count[b] += 1
        conf[b] += c
        acc[b] += float(p[i].argmax() == y[i])
    got = reliability_bins(probs, labels, n_bins)
    assert float(got["count"].sum()) == n
    np.testing.assert_array_equal(got["count"].numpy(), count)
    nonempty = count > 0
    np.testing.assert_allclose(got["confidence"].numpy()[nonempty],
                               conf[nonempty] / count[nonempty], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["accuracy"].numpy()[nonempty],
                               acc[nonempty] / count[nonempty], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["lower"].numpy(), np.arange(n_bins) / n_bins, atol=1e-7)
    np.testing.assert_allclose(got["upper"].numpy(), np.arange(1, n_bins + 1) / n_bins,
                               atol=1e-7)


def test_confidence_one_falls_in_the_last_bin():
    probs = torch.tensor([[1.0, 0.0], [0.95, 0.05], [0.5, 0.5]])
    labels = torch.tensor([0, 1, 0])
    bins = reliability_bins(probs, labels, n_bins=10)
    assert bins["count"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert float(bins["confidence"][9]) == pytest.approx(0.975)
    assert float(bins["accuracy"][9]) == pytest.approx(0.5)


# --- the paper script's estimator -----------------------------------------------------------


def paper_script_cells(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10,
                       batch_size: int = 100) -> list[list[float]]:
    """Per batch of ``batch_size`` (in order), |acc - conf| of every bin (lo, hi] that holds a
    sample, bins cut at torch.linspace(0, 1, n_bins + 1) as in the authors' evaluate.py."""
    edges = torch.linspace(0, 1, n_bins + 1).double().tolist()
    p, y = probs.double().numpy(), labels.numpy()
    batches = []
    for start in range(0, len(y), batch_size):
        conf = p[start : start + batch_size].max(1)
        correct = p[start : start + batch_size].argmax(1) == y[start : start + batch_size]
        gaps = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            inside = [i for i in range(len(conf)) if lo < conf[i] <= hi]
            if inside:
                acc = sum(float(correct[i]) for i in inside) / len(inside)
                mean_conf = sum(float(conf[i]) for i in inside) / len(inside)
                gaps.append(abs(acc - mean_conf))
        batches.append(gaps)
    return batches


def ece_paper_reference(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10,
                        batch_size: int = 100) -> float:
    """The authors' estimate: one unweighted mean over the cells of all batches."""
    cells = [gap for batch in paper_script_cells(probs, labels, n_bins, batch_size)
             for gap in batch]
    return sum(cells) / len(cells)


def ece_mean_of_batch_means(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The wrong pooling (the mean over batches of each batch's mean), to tell them apart."""
    batches = paper_script_cells(probs, labels)
    return sum(sum(gaps) / len(gaps) for gaps in batches) / len(batches)


@pytest.mark.parametrize(("n", "k", "scale"), [(250, 10, 2.0), (1001, 100, 4.0), (1001, 2, 1.0),
                                               (250, 3, 0.5), (37, 5, 1.0)])
def test_ece_paper_script_equals_one_mean_over_all_cells(n, k, scale):
    """N = 250 and 1001 end on a short batch (50 and 1 samples), N = 37 is a single short batch.
    With several batches the short one has fewer non-empty cells, so pooling the cells differs
    from averaging per-batch means: the test would fail on that variant."""
    probs, labels = random_set(n, k, scale, seed=5)
    expected = ece_paper_reference(probs, labels)
    got = float(ece_paper_script(probs, labels))
    assert got == pytest.approx(expected, abs=1e-6)
    if n > 100:
        assert abs(ece_mean_of_batch_means(probs, labels) - expected) > 1e-4


@pytest.mark.parametrize(("n_bins", "batch_size"), [(1, 100), (15, 64), (10, 1000)])
def test_ece_paper_script_follows_its_bins_and_batch_size(n_bins, batch_size):
    probs, labels = random_set(777, 10, 2.0, seed=7)
    expected = ece_paper_reference(probs, labels, n_bins, batch_size)
    got = float(ece_paper_script(probs, labels, n_bins=n_bins, batch_size=batch_size))
    assert got == pytest.approx(expected, abs=1e-6)


def test_ece_paper_script_bins_are_closed_on_the_right():
    """Confidence 0.5 sits on an edge: in (0.4, 0.5] with the 0.45 miss, not in [0.5, 0.6)
    with the 0.55 hit. Bins: {0.45 wrong, 0.5 right} gap |0.5 - 0.475|, {0.55 right} gap 0.45."""
    probs = torch.tensor([[0.45, 0.35, 0.2], [0.5, 0.3, 0.2], [0.55, 0.25, 0.2]])
    labels = torch.tensor([1, 0, 0])
    expected = (0.025 + 0.45) / 2
    assert ece_paper_reference(probs, labels) == pytest.approx(expected)
    assert float(ece_paper_script(probs, labels)) == pytest.approx(expected, abs=1e-6)


def test_calibrated_model_has_small_ece_but_large_paper_script_ece():
    """Labels drawn from the predicted distribution: calibrated by construction. The standard
    ECE sees that; the paper script's unweighted per-batch mean does not."""
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2.0 * torch.randn(20000, 10, generator=g), dim=1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    assert float(ece(probs, labels)) < 0.02
    assert float(ece_paper_script(probs, labels)) > 0.05


def test_overconfident_model_has_large_ece():
    """Sharp predictions, labels independent of them: accuracy ~1/K at confidence ~1."""
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(10.0 * torch.randn(5000, 10, generator=g), dim=1)
    labels = torch.randint(10, (5000,), generator=g)
    assert float(ece(probs, labels)) > 0.7
    assert float(ece_paper_script(probs, labels)) > 0.5


@pytest.mark.parametrize(("n", "k", "scale"), [(500, 10, 2.0), (300, 100, 4.0)])
def test_classification_metrics_match_torchmetrics_and_written_out_formulas(n, k, scale):
    probs, labels = random_set(n, k, scale, seed=6)
    scaled, _ = random_set(n, k, scale / 2, seed=7)  # other predictions, as if rescaled
    got = classification_metrics(probs, labels, scaled)
    assert math.isnan(classification_metrics(probs, labels)["ece_temperature"])
    expected = {
        "top1": multiclass_accuracy(probs, labels, num_classes=k, top_k=1, average="micro"),
        "top5": multiclass_accuracy(probs, labels, num_classes=k, top_k=5, average="micro"),
        "ece": multiclass_calibration_error(probs, labels, num_classes=k, n_bins=15,
                                            norm="l1"),
        "nll": -sum(math.log(float(probs[i, labels[i]])) for i in range(n)) / n,
        "brier": sum(float(((probs[i] - torch.eye(k)[labels[i]]) ** 2).sum())
                     for i in range(n)) / n,
        "ece_paper_script": ece_paper_reference(probs, labels),
        "ece_temperature": multiclass_calibration_error(scaled, labels, num_classes=k,
                                                        n_bins=15, norm="l1"),
    }
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(float(value), abs=1e-5), name
    assert got["top1"] < got["top5"] < 1


@pytest.mark.parametrize("k", [2, 3, 5])
def test_classification_metrics_top5_covers_every_class_when_k_is_at_most_5(k):
    """top-5 is computed with k = min(5, K): the true class is always among the K classes."""
    probs, labels = random_set(200, k, 1.0, seed=8)
    assert classification_metrics(probs, labels)["top5"] == 1.0


# --- argument validation --------------------------------------------------------------------

P, Y = random_set(6, 4, 1.0)


def _nan_probs() -> torch.Tensor:
    bad = P.clone()
    bad[0, 0] = float("nan")
    return bad


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: ece(P[0], Y[:1]), r"probs must be a float tensor of shape \(N, K\)",
                     id="probs_1d"),
        pytest.param(lambda: nll(_nan_probs(), Y), r"probs contains NaN", id="probs_nan"),
        pytest.param(lambda: brier(torch.randn(6, 4) * 3, Y),
                     r"probs must lie in \[0, 1\].*softmax", id="probs_logits"),
        pytest.param(lambda: ece(P * 0.5, Y), r"probs rows must sum to 1", id="rows_not_one"),
        pytest.param(lambda: topk_accuracy(P, Y + 4), r"labels must lie in \[0, 4\)",
                     id="labels_out_of_range"),
        pytest.param(lambda: ece(P, Y[:5]), r"labels must have length 6",
                     id="labels_length"),
        pytest.param(lambda: nll(P, Y.float()), r"labels must be an integer", id="labels_float"),
        pytest.param(lambda: ece(P, Y, n_bins=0), r"n_bins must be an int >= 1", id="n_bins_0"),
        pytest.param(lambda: reliability_bins(P, Y, n_bins=2.5), r"n_bins must be an int",
                     id="n_bins_float"),
        pytest.param(lambda: ece_paper_script(P, Y, n_bins=0), r"n_bins must be", id="paper_bins"),
        pytest.param(lambda: ece_paper_script(P, Y, batch_size=0), r"batch_size must be",
                     id="batch_size_0"),
        pytest.param(lambda: topk_accuracy(P, Y, k=0), r"k must be an int in \[1, 4\]", id="k_0"),
        pytest.param(lambda: topk_accuracy(P, Y, k=5), r"k must be an int in \[1, 4\]", id="k_5"),
        pytest.param(lambda: ece_paper_script(P[:0], Y[:0]), r"probs must hold at least one",
                     id="empty"),
        pytest.param(lambda: ece(P[:0], Y[:0]), r"probs must hold at least one",
                     id="ece_empty"),
        pytest.param(lambda: topk_accuracy(P[:0], Y[:0]), r"probs must hold at least one",
                     id="topk_empty"),
        pytest.param(lambda: classification_metrics(P[:0], Y[:0]),
                     r"probs must hold at least one", id="metrics_empty"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
