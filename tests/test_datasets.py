"""Tests of imlib.datasets: the handwritten digits against scikit-learn's own copy (pixels,
labels, split), the registry of data sets by name, and the data-set cards."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.datasets
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from imlib.data import ImageData, synthetic
from imlib.datasets import (
    DATASET_CARDS,
    DATASETS,
    cue_separability,
    dataset_classes,
    digits_split,
    load_dataset,
    load_digits,
)


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_digits()


@pytest.fixture(scope="module")
def reference() -> sklearn.utils.Bunch:
    return sklearn.datasets.load_digits()


def _bilinear_matrix(size: int = 8, scale: int = 4) -> np.ndarray:
    """(size * scale, size) weights of bilinear upscaling with pixel centres aligned: output
    pixel j sits at input coordinate (j + 0.5) / scale - 0.5, between two input pixels (the
    border one repeated outside)."""
    out = np.zeros((size * scale, size))
    for j in range(size * scale):
        position = min(max((j + 0.5) / scale - 0.5, 0.0), size - 1.0)
        left = int(np.floor(position))
        right = min(left + 1, size - 1)
        out[j, left] += 1 - (position - left)
        out[j, right] += position - left
    return out


def test_digits_are_scikit_learns_images_pixel_for_pixel(digits, reference) -> None:
    """Each 32x32 image is its 8x8 original upscaled bilinearly (weights written out here),
    scaled to 0-255, in all 3 channels; mapping it back to 8x8 (the least-squares inverse of
    the upscaling) and to 0-16 gives scikit-learn's values exactly."""
    up = _bilinear_matrix()
    back = np.linalg.pinv(up)
    train_idx, test_idx = digits_split()
    for x, y, idx in ((digits.x_train, digits.y_train, train_idx),
                      (digits.x_test, digits.y_test, test_idx)):
        assert x.dtype == torch.uint8 and x.shape == (len(idx), 3, 32, 32)
        assert torch.equal(x[:, :1].expand(-1, 3, -1, -1), x)  # grey in every channel
        original = reference.images[idx.numpy()]
        expected = np.rint(up @ original @ up.T * 255 / 16)
        assert np.abs(x[:, 0].numpy() - expected).max() <= 1  # rounding of halves only
        recovered = back @ x[:, 0].numpy().astype(np.float64) @ back.T * 16 / 255
        np.testing.assert_array_equal(np.rint(recovered), original)
        np.testing.assert_array_equal(y.numpy(), reference.target[idx.numpy()])
    assert int(digits.x_train.max()) == 255 and int(digits.x_train.min()) == 0


def test_the_split_is_stratified_disjoint_whole_and_fixed(digits, reference) -> None:
    train_idx, test_idx = digits_split()
    assert len(train_idx) == 1438 and len(test_idx) == 359
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert sorted(train_idx.tolist() + test_idx.tolist()) == list(range(1797))
    per_class = np.bincount(reference.target)
    held = np.bincount(reference.target[test_idx.numpy()], minlength=10)
    assert np.all(np.abs(held - 0.2 * per_class) <= 0.5)  # 20 % of every digit
    again = digits_split()
    assert torch.equal(again[0], train_idx) and torch.equal(again[1], test_idx)
    assert torch.equal(load_digits().x_test, digits.x_test)


def test_digits_stats_classes_and_learnable_labels(digits) -> None:
    scaled = digits.x_train.float() / 255
    assert torch.allclose(torch.tensor(digits.mean), scaled.mean(dim=(0, 2, 3)))
    assert torch.allclose(torch.tensor(digits.std), scaled.std(dim=(0, 2, 3)))
    assert digits.name == "digits" and digits.classes == tuple("0123456789")
    # Images and labels stay paired: a linear model on 8x8 averages reads the digits.
    small = lambda x: F.avg_pool2d(x[:, :1].float() / 255, 4).flatten(1).numpy()  # noqa: E731
    model = LogisticRegression(max_iter=3000).fit(small(digits.x_train), digits.y_train.numpy())
    assert model.score(small(digits.x_test), digits.y_test.numpy()) > 0.9


def test_load_dataset_dispatches_and_rejects_unknown_names(digits) -> None:
    data = load_dataset("synthetic", root="ignored", n_per_class=2, num_classes=3, cue="fine")
    assert torch.equal(data.x_train, synthetic(2, num_classes=3, cue="fine").x_train)
    assert torch.equal(load_dataset("digits", root="ignored").x_train, digits.x_train)
    with pytest.raises(ValueError, match="synthetic.*cifar100.*digits"):
        load_dataset("cifar10")
    assert DATASETS == ("synthetic", "cifar100", "digits")


def test_dataset_classes_is_k_of_the_loaded_set(digits) -> None:
    assert dataset_classes("digits") == digits.num_classes == 10
    assert dataset_classes("synthetic", 7) == synthetic(1, num_classes=7).num_classes
    assert dataset_classes("cifar100") == 100
    with pytest.raises(ValueError, match="name must be one of"):
        dataset_classes("mnist")
    with pytest.raises(ValueError, match="synthetic_classes"):
        dataset_classes("synthetic", 1)


def test_every_data_set_has_a_card_and_the_digits_card_matches_the_data(digits) -> None:
    assert set(DATASET_CARDS) == set(DATASETS)
    for card in DATASET_CARDS.values():
        assert set(card) == {"source", "images", "split", "scaling"}
    card = DATASET_CARDS["digits"]
    total = len(digits.y_train) + len(digits.y_test)
    assert f"{total:,}" in card["images"] and "8 x 8" in card["images"]
    assert f"{len(digits.y_train):,} training / {len(digits.y_test):,} test" in card["split"]
    counts = torch.bincount(torch.cat([digits.y_train, digits.y_test]))
    assert f"{int(counts.min())}-{int(counts.max())} each" in card["images"]


def test_cue_separability_on_the_digits_and_its_validation(digits) -> None:
    """On real digits the layout of the strokes tells the classes apart, their mean grey
    hardly (a flattened digit is nearly unrecognisable)."""
    scores = cue_separability(digits)
    assert scores["colour_edge"] > 0.8 and scores["mean_colour"] < 0.25
    with pytest.raises(ValueError, match="data must be an ImageData"):
        cue_separability(digits.x_test)
