"""Tests of imlib.data: CIFAR-100 reading and errors, the synthetic set and its cue settings,
splits, normalize and denormalize (CIFAR-100-C is tests/test_corruptions.py; the data sets by
name and the digits are tests/test_datasets.py)."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestCentroid
from torchvision.datasets import CIFAR100

from imlib.data import (
    CIFAR100_MD5,
    CIFAR100_MEAN,
    CIFAR100_STD,
    SYNTHETIC_CUES,
    ImageData,
    _read_cifar100_folder,
    data_root,
    denormalize,
    holdout_split,
    load_cifar100,
    normalize,
    synthetic,
    synthetic_cues,
)
from imlib.datasets import cue_separability
from imlib.degradations import degrade

# ---------------------------------------------------------------------------------------------
# CIFAR-100: a small copy in the official layout (python pickles inside cifar-100-python/)

FINE_NAMES = ["apple"] + [f"fine_{i}" for i in range(1, 100)]


def _pixel(i: int, c: int, r: int, w: int) -> int:
    """A value that tells image, channel, row and column apart."""
    return (37 * i + 80 * c + 3 * r + w) % 256


def _write_split(path: Path, n: int, offset: int) -> None:
    i, c, r, w = np.meshgrid(
        np.arange(offset, offset + n), np.arange(3), np.arange(32), np.arange(32), indexing="ij"
    )
    data = _pixel(i, c, r, w).astype(np.uint8).reshape(n, 3072)  # rows in CHW order
    entry = {
        "filenames": [f"img_{k}.png" for k in range(n)],
        "batch_label": "small copy",
        "fine_labels": [(offset + k) % 100 for k in range(n)],
        "coarse_labels": [(offset + k) % 20 for k in range(n)],
        "data": data,
    }
    path.write_bytes(pickle.dumps(entry, protocol=2))


@pytest.fixture
def small_cifar(tmp_path: Path) -> Path:
    """A root holding cifar-100-python/ (5 train, 3 test images) and its .tar.gz beside it."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _write_split(folder / "train", 5, offset=0)
    _write_split(folder / "test", 3, offset=5)
    meta = {"fine_label_names": FINE_NAMES, "coarse_label_names": [f"c{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-100-python")
    return tmp_path


def test_reader_puts_pixels_labels_and_names_in_place(small_cifar: Path) -> None:
    data = _read_cifar100_folder(small_cifar / "cifar-100-python")
    assert isinstance(data, ImageData) and data.name == "cifar100"
    assert data.x_train.shape == (5, 3, 32, 32) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (3, 3, 32, 32) and data.x_test.dtype == torch.uint8
    assert data.y_train.dtype == torch.int64 and data.y_train.tolist() == [0, 1, 2, 3, 4]
    assert data.y_test.tolist() == [5, 6, 7]
    i, c, r, w = torch.meshgrid(*(torch.arange(k) for k in (5, 3, 32, 32)), indexing="ij")
    assert torch.equal(data.x_train, _pixel(i, c, r, w).to(torch.uint8))
    assert data.x_test[2, 1, 4, 9] == _pixel(7, 1, 4, 9)
    assert data.classes[0] == "apple" and data.num_classes == 100
    assert (data.mean, data.std) == (CIFAR100_MEAN, CIFAR100_STD)


def test_torchvision_rejects_files_that_are_not_the_official_ones(small_cifar: Path) -> None:
    # Why the loader reads with its own reader only after torchvision's md5 check: the check
    # covers every file, so a small copy cannot pass through CIFAR100 at all.
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        CIFAR100(small_cifar, train=False, download=False)


def test_load_cifar100_refuses_an_unverified_copy(small_cifar: Path) -> None:
    (small_cifar / "cifar-100-python.tar.gz").unlink()  # the extracted folder alone
    with pytest.raises(RuntimeError, match="missing or corrupted") as info:
        load_cifar100(small_cifar, download=False)
    assert CIFAR100_MD5 in str(info.value) and str(small_cifar.resolve()) in str(info.value)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every urlopen raises URLError (and records its URL): fast, deterministic, offline."""
    urls: list[str] = []

    def refuse(request, *args, **kwargs):
        urls.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return urls


def test_failed_download_says_how_to_proceed_offline(tmp_path: Path,
                                                    no_network: list[str]) -> None:
    root = tmp_path / "empty"
    with pytest.raises(RuntimeError, match="could not reach the CIFAR-100 host") as info:
        load_cifar100(root, download=True)
    message = str(info.value)
    assert CIFAR100_MD5 in message and str(root.resolve()) in message
    assert "cifar-100-python.tar.gz" in message and "IMLIB_DATA" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert no_network and all("cifar-100-python.tar.gz" in url for url in no_network)


@pytest.mark.parametrize("download", [True, False])
def test_an_archive_with_a_wrong_md5_is_named_with_the_expected_md5(
    small_cifar: Path, no_network: list[str], download: bool
) -> None:
    """A local archive that is not the official one (the small copy) is the reason, not the
    network: the message names the file, its md5 and the official one."""
    archive = small_cifar / "cifar-100-python.tar.gz"
    found = hashlib.md5(archive.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match="not the official CIFAR-100 archive") as info:
        load_cifar100(small_cifar, download=download)
    message = str(info.value)
    assert str(archive.resolve()) in message
    assert f"its md5 is {found}, expected {CIFAR100_MD5}" in message
    assert CIFAR100_MD5 == "eb9058c3a382ffc7106e4002c42a8d85"


def _official_copy() -> Path | None:
    root = data_root()
    try:
        CIFAR100(root, train=False, download=False)
    except RuntimeError:
        return None
    return root


@pytest.mark.skipif(_official_copy() is None, reason="the official CIFAR-100 is not in data_root()")
def test_official_cifar100_matches_torchvision() -> None:
    data = load_cifar100(download=False)
    assert data.x_train.shape == (50000, 3, 32, 32) and data.x_test.shape == (10000, 3, 32, 32)
    assert data.classes[0] == "apple" and data.num_classes == 100
    reference = CIFAR100(data_root(), train=True, download=False)
    assert torch.equal(data.x_train, torch.from_numpy(reference.data).permute(0, 3, 1, 2))
    assert data.y_train.tolist() == reference.targets
    mean = (data.x_train.float() / 255).mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor(CIFAR100_MEAN), atol=1e-3)


def test_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMLIB_DATA", raising=False)
    assert data_root() == tmp_path.resolve() / "data"
    monkeypatch.setenv("IMLIB_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path.resolve() / "env"
    assert data_root(tmp_path / "arg") == tmp_path.resolve() / "arg"
    assert data_root("rel") == tmp_path.resolve() / "rel"
    with pytest.raises(ValueError, match="root"):
        data_root("")


def test_load_cifar100_validates_download() -> None:
    with pytest.raises(ValueError, match="download"):
        load_cifar100(download="yes")


# ---------------------------------------------------------------------------------------------
# Synthetic


@pytest.fixture(scope="module")
def small() -> ImageData:
    return synthetic(60, num_classes=10, seed=0)


def test_synthetic_shapes_dtypes_and_balance(small: ImageData) -> None:
    assert small.name == "synthetic" and small.num_classes == 10
    assert small.x_train.shape == (600, 3, 32, 32) and small.x_train.dtype == torch.uint8
    assert small.x_test.shape == (120, 3, 32, 32) and small.x_test.dtype == torch.uint8
    assert small.y_train.dtype == torch.int64 and small.y_test.dtype == torch.int64
    assert torch.bincount(small.y_train).tolist() == [60] * 10
    assert torch.bincount(small.y_test).tolist() == [12] * 10
    assert small.classes == tuple(f"class_{c}" for c in range(10))
    assert synthetic(3, num_classes=2, test_per_class=7).x_test.shape[0] == 14
    assert synthetic(3, num_classes=2).x_test.shape[0] == 2  # max(1, 3 // 5) per class


def test_synthetic_values_use_the_range_without_saturating(small: ImageData) -> None:
    x = small.x_train
    assert int(x.min()) < 40 and int(x.max()) > 215
    assert ((x == 0) | (x == 255)).float().mean() < 0.01


def test_synthetic_stats_are_those_of_its_training_images(small: ImageData) -> None:
    scaled = small.x_train.float() / 255
    assert torch.allclose(torch.tensor(small.mean), scaled.mean(dim=(0, 2, 3)))
    assert torch.allclose(torch.tensor(small.std), scaled.std(dim=(0, 2, 3)))


def test_synthetic_is_deterministic_per_seed(small: ImageData) -> None:
    again = synthetic(60, num_classes=10, seed=0)
    assert torch.equal(again.x_train, small.x_train) and torch.equal(again.x_test, small.x_test)
    other = synthetic(60, num_classes=10, seed=1)
    assert (other.x_train != small.x_train).float().mean() > 0.5


def test_synthetic_cues_are_what_the_images_show(small: ImageData) -> None:
    """Each class's images carry its listed cues: their mean colour is nearest the blend of the
    class's two edge colours, and their strongest fine frequency (the FFT peak away from the
    coarse edge) has the class's grating period and orientation (or its mirror image)."""
    cues = synthetic_cues(10)
    assert cues["class"] == list(small.classes)
    blend = torch.tensor([[(int(a[i:i + 2], 16) + int(b[i:i + 2], 16)) / 510 for i in (1, 3, 5)]
                          for a, b in zip(cues["colour_a"], cues["colour_b"], strict=True)])
    x = small.x_train.float() / 255
    means = torch.stack([x[small.y_train == c].mean(dim=(0, 2, 3)) for c in range(10)])
    assert torch.cdist(means, blend).argmin(1).tolist() == list(range(10))
    grey = x.mean(1) - x.mean(dim=(1, 2, 3))[:, None, None]
    freq = torch.fft.fftfreq(32) * 32  # cycles per image
    fy, fx = torch.meshgrid(freq, freq, indexing="ij")
    spectrum = torch.fft.fft2(grey).abs().flatten(1)
    spectrum[:, (fx.hypot(fy) < 5).flatten()] = 0  # the edge's low frequencies
    peak = spectrum.argmax(1)
    angle = torch.rad2deg(torch.atan2(fy.flatten()[peak], fx.flatten()[peak])) % 180
    period = 32 / fx.hypot(fy).flatten()[peak]
    for c in range(10):
        mine = small.y_train == c
        theta = cues["grating_orientation_deg"][c]
        off = torch.stack([(angle[mine] - t).abs() % 180 for t in (theta, 180 - theta)])
        off = torch.minimum(off, 180 - off).amin(0)  # the mirror flips the orientation
        assert (off < 15).float().mean() > 0.8, c
        assert period[mine].median() == pytest.approx(cues["grating_period_px"][c], rel=0.05)


def _nearest_class_mean(
    train: torch.Tensor,
    y_train: torch.Tensor,
    test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
) -> float:
    centres = torch.stack([train[y_train == c].mean(0) for c in range(num_classes)])
    return (torch.cdist(test, centres).argmin(1) == y_test).float().mean().item()


def _coarse(x: torch.Tensor) -> torch.Tensor:
    """8x8 average colours: the layout and colour cue only."""
    return F.avg_pool2d(x.float() / 255, 4).flatten(1)


def _colour(x: torch.Tensor) -> torch.Tensor:
    """Mean colour per image: what is left once blur or mosaic has flattened the image."""
    return (x.float() / 255).mean(dim=(2, 3))


def _fine(x: torch.Tensor) -> torch.Tensor:
    """Spectrum magnitude of the high-passed luminance: the grating cue, blind to its phase."""
    lum = x.float().mean(1, keepdim=True) / 255
    high = lum - F.avg_pool2d(lum, 5, stride=1, padding=2, count_include_pad=False)
    return torch.fft.fft2(high).abs().flatten(1)


@pytest.fixture(scope="module")
def cue_sets() -> tuple[ImageData, ImageData]:
    return synthetic(200, num_classes=10, seed=0), synthetic(
        1, num_classes=10, seed=1, test_per_class=100
    )


@pytest.mark.parametrize("features", [_coarse, _fine], ids=["coarse", "fine"])
def test_each_cue_alone_is_informative_but_not_decisive(cue_sets, features) -> None:
    train, test = cue_sets
    accuracy = _nearest_class_mean(
        features(train.x_train), train.y_train, features(test.x_test), test.y_test, 10
    )
    assert 0.3 < accuracy < 0.9  # chance is 0.1


def test_blur_removes_the_fine_cue_before_the_coarse_one(cue_sets) -> None:
    train, test = cue_sets
    blurred = (TF.gaussian_blur(test.x_test.float(), [9, 9], [2.0, 2.0])).round().to(torch.uint8)
    fine = _nearest_class_mean(_fine(train.x_train), train.y_train, _fine(blurred), test.y_test, 10)
    coarse = _nearest_class_mean(
        _coarse(train.x_train), train.y_train, _coarse(blurred), test.y_test, 10
    )
    assert fine < 0.2 and coarse > 0.3  # chance is 0.1


@pytest.mark.parametrize("features", [_coarse, _fine], ids=["coarse", "fine"])
def test_a_left_right_flip_keeps_images_in_the_distribution(cue_sets, features) -> None:
    """Training flips images; a class must not hinge on one of the two mirror images."""
    train, test = cue_sets
    centres_from = (features(train.x_train), train.y_train)
    plain = _nearest_class_mean(*centres_from, features(test.x_test), test.y_test, 10)
    flipped = _nearest_class_mean(*centres_from, features(test.x_test.flip(-1)), test.y_test, 10)
    assert abs(plain - flipped) < 0.05


@pytest.mark.parametrize("kind", ["blur", "mosaic"])
def test_the_class_hue_survives_blur_and_mosaic_at_every_level(cue_sets, kind: str) -> None:
    """At level 1 the fine cue is gone, but the mean colour still tells classes apart, so
    heavily degraded training images keep some class evidence."""
    train, test = cue_sets
    degraded = (degrade(test.x_test.float() / 255, kind, 1.0) * 255).round().to(torch.uint8)
    colour = _nearest_class_mean(
        _colour(train.x_train), train.y_train, _colour(degraded), test.y_test, 10
    )
    fine = _nearest_class_mean(
        _fine(train.x_train), train.y_train, _fine(degraded), test.y_test, 10
    )
    assert colour > 0.3 and fine < 0.2  # chance is 0.1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_per_class": 0}, "n_per_class"),
        ({"n_per_class": 2.5}, "n_per_class"),
        ({"n_per_class": 5, "num_classes": 1}, "num_classes"),
        ({"n_per_class": 5, "seed": -1}, "seed"),
        ({"n_per_class": 5, "test_per_class": 0}, "test_per_class"),
    ],
)
def test_synthetic_validates(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        synthetic(**kwargs)


def _digest(data: ImageData) -> str:
    digest = hashlib.sha256()
    for tensor in (data.x_train, data.y_train, data.x_test, data.y_test):
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def test_the_default_cue_is_the_generator_as_it_was_byte_for_byte() -> None:
    """sha256 of the bytes that synthetic() gave before the cue settings existed: the smoke
    profile's data, and every result made from it, stay as they were."""
    before = {((30, 10), ()): "3ef11308cbe4f5f9beebbe1291e2dfb00f5fb3546128c622f4cf3a56d55cad26",
              ((30, 10), (("seed", 3), ("test_per_class", 7))):
              "10530fc98661e4a5d8d46f53c4e64f4547e6dde885dc1235a1de85224301e3ca"}
    for (args, kwargs), expected in before.items():
        assert _digest(synthetic(*args, **dict(kwargs))) == expected
        assert _digest(synthetic(*args, **dict(kwargs), cue="both")) == expected


@pytest.fixture(scope="module")
def by_cue() -> dict[str, ImageData]:
    return {cue: synthetic(200, num_classes=10, seed=0, test_per_class=100, cue=cue)
            for cue in SYNTHETIC_CUES}


def _reference_accuracy(model, data: ImageData, features, degraded: torch.Tensor | None = None
                        ) -> float:
    """scikit-learn's ``model`` fitted on the training images' features, scored on the test
    images (or on ``degraded``, a degraded copy of them)."""
    test = data.x_test if degraded is None else degraded
    model.fit(features(data.x_train).numpy(), data.y_train.numpy())
    return model.score(features(test).numpy(), data.y_test.numpy())


def test_each_cue_setting_puts_the_class_where_it_says(by_cue) -> None:
    """An independent classifier (scikit-learn's logistic regression on the mean colour,
    nearest centroid on the 8x8 colours and on the fine spectrum) finds the class in the
    coarse cue only for "both" and "coarse", in the fine one only for "both" and "fine";
    chance is 0.1."""
    for cue, data in by_cue.items():
        colour = _reference_accuracy(LogisticRegression(max_iter=2000), data, _colour)
        layout = _reference_accuracy(NearestCentroid(), data, _coarse)
        fine = _reference_accuracy(NearestCentroid(), data, _fine)
        if cue == "fine":
            assert colour < 0.15 and layout < 0.15 and fine > 0.6, (cue, colour, layout, fine)
        else:
            assert colour > 0.3 and layout > 0.6, (cue, colour, layout)
        if cue == "coarse":
            assert fine < 0.15, (cue, fine)
        else:
            assert fine > 0.6, (cue, fine)


def test_cue_separability_is_a_nearest_centroid_per_cue(by_cue) -> None:
    """The card's numbers are scikit-learn's NearestCentroid on each cue's feature."""
    for data in by_cue.values():
        scores = cue_separability(data)
        assert scores["chance"] == pytest.approx(0.1)
        for name, features in (("mean_colour", _colour), ("colour_edge", _coarse),
                               ("grating", _fine)):
            reference = _reference_accuracy(NearestCentroid(), data, features)
            assert scores[name] == pytest.approx(reference, abs=0.002), name


@pytest.mark.parametrize("kind", ["blur", "mosaic"])
def test_blur_and_mosaic_leave_the_coarse_cue_and_destroy_the_fine_one(by_cue, kind) -> None:
    """At level 1 the "coarse" set's class still shows in the mean colour, while nothing of
    the "fine" set's class is left in any cue: the two settings bracket today's set."""
    accuracy = {}
    for cue in ("coarse", "fine"):
        data = by_cue[cue]
        degraded = (degrade(data.x_test.float() / 255, kind, 1.0) * 255).round().to(torch.uint8)
        accuracy[cue] = [_reference_accuracy(NearestCentroid(), data, features, degraded)
                         for features in (_colour, _coarse, _fine)]
    assert accuracy["coarse"][0] > 0.3, accuracy
    assert max(accuracy["fine"]) < 0.2, accuracy


def test_synthetic_cues_lists_only_the_cues_that_define_a_class() -> None:
    both = synthetic_cues(10)
    coarse, fine = synthetic_cues(10, cue="coarse"), synthetic_cues(10, cue="fine")
    assert set(coarse) == {"class", "colour_a", "colour_b", "edge_direction_deg"}
    assert set(fine) == {"class", "grating_orientation_deg", "grating_period_px"}
    assert {**coarse, **fine} == both


def test_synthetic_and_its_cues_refuse_an_unknown_cue() -> None:
    with pytest.raises(ValueError, match="cue must be one of"):
        synthetic(5, cue="colour")
    with pytest.raises(ValueError, match="cue must be one of"):
        synthetic_cues(10, cue="texture")


# ---------------------------------------------------------------------------------------------
# holdout_split


def test_holdout_split_is_a_stratified_partition() -> None:
    labels = torch.arange(7).repeat_interleave(torch.tensor([50, 40, 30, 20, 10, 3, 1]))
    train_idx, holdout_idx = holdout_split(labels[torch.randperm(len(labels))], fraction=0.2)
    assert train_idx.dtype == holdout_idx.dtype == torch.int64
    assert torch.equal(torch.cat([train_idx, holdout_idx]).sort().values, torch.arange(len(labels)))


def test_holdout_split_fraction_per_class() -> None:
    labels = torch.arange(5).repeat_interleave(torch.tensor([50, 40, 30, 20, 1]))[
        torch.randperm(141, generator=torch.Generator().manual_seed(3))
    ]
    _, holdout_idx = holdout_split(labels, fraction=0.2)
    assert torch.bincount(labels[holdout_idx], minlength=5).tolist() == [10, 8, 6, 4, 0]


def test_holdout_split_is_deterministic_per_seed() -> None:
    labels = torch.arange(10).repeat(30)
    first = holdout_split(labels, fraction=0.1, seed=0)
    assert all(
        torch.equal(a, b) for a, b in zip(first, holdout_split(labels, 0.1, seed=0), strict=True)
    )
    assert not torch.equal(first[1], holdout_split(labels, 0.1, seed=1)[1])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), True, "0.1"])
def test_holdout_split_rejects_bad_fraction(fraction) -> None:
    with pytest.raises(ValueError, match="fraction"):
        holdout_split(torch.arange(4).repeat(5), fraction=fraction)


@pytest.mark.parametrize(
    "labels", [torch.zeros(3, 2, dtype=torch.long), torch.rand(5), torch.tensor([0, -1, 1])]
)
def test_holdout_split_rejects_bad_labels(labels) -> None:
    with pytest.raises(ValueError, match="labels"):
        holdout_split(labels)


# ---------------------------------------------------------------------------------------------
# normalize


def test_normalize_matches_torchvision() -> None:
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = TF.normalize(x, CIFAR100_MEAN, CIFAR100_STD)
    assert torch.allclose(normalize(x, CIFAR100_MEAN, CIFAR100_STD), expected)
    channels_last = x.to(memory_format=torch.channels_last)
    assert torch.allclose(normalize(channels_last, CIFAR100_MEAN, CIFAR100_STD), expected)


@pytest.mark.parametrize(
    ("x", "mean", "std", "name"),
    [
        (torch.rand(3, 32, 32), CIFAR100_MEAN, CIFAR100_STD, "x"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), CIFAR100_MEAN, CIFAR100_STD, "x"),
        (torch.rand(1, 3, 4, 4), (0.5, 0.5), CIFAR100_STD, "mean"),
        (torch.rand(1, 3, 4, 4), CIFAR100_MEAN, (0.2, 0.0, 0.2), "std"),
        (torch.rand(1, 3, 4, 4), CIFAR100_MEAN, "abc", "std"),
    ],
)
def test_normalize_validates(x, mean, std, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        normalize(x, mean, std)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_normalize_on_cuda_stays_on_device() -> None:
    x = torch.rand(4, 3, 8, 8, device="cuda")
    out = normalize(x, CIFAR100_MEAN, CIFAR100_STD)
    assert out.device == x.device
    assert torch.allclose(out.cpu(), TF.normalize(x.cpu(), CIFAR100_MEAN, CIFAR100_STD))


# ---------------------------------------------------------------------------------------------
# denormalize


def test_denormalize_inverts_normalize_and_keeps_out_of_range_values() -> None:
    x = 3 * torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))  # any values
    back = denormalize(normalize(x, CIFAR100_MEAN, CIFAR100_STD), CIFAR100_MEAN, CIFAR100_STD)
    torch.testing.assert_close(back, x)
    mean, std = torch.tensor(CIFAR100_MEAN), torch.tensor(CIFAR100_STD)
    torch.testing.assert_close(denormalize(x, CIFAR100_MEAN, CIFAR100_STD),
                               x * std[:, None, None] + mean[:, None, None])
    with pytest.raises(ValueError, match="std"):
        denormalize(x, CIFAR100_MEAN, (0.2, 0.2))
