"""imlib.corruptions: CIFAR-100-C read from small files in the release's layout built here
(rows = 5 severities x M images, HWC), its damaged copies named, and its metrics against
computations done by hand (CPU, tiny models)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from imlib import metrics
from imlib.corruptions import (
    CIFAR100C_CORRUPTIONS,
    CIFAR100C_EXTRA,
    CIFAR100C_SEVERITIES,
    CORRUPTION_COLUMNS,
    CORRUPTION_SUMMARY_COLUMNS,
    corruption_metrics,
    corruption_summary,
    evaluate_corruptions,
    iter_cifar100c,
)
from imlib.data import normalize, synthetic
from imlib.metrics import ece, topk_accuracy
from imlib.models import small_cnn
from imlib.runs import IncompleteRunError, load_model
from imlib.study import load_params
from imlib.train import train

C_IMAGES = 4  # images per severity
C_NAMES = ("gaussian_noise", "fog")


def _c_pixel(corruption: int, row: int, h: int, w: int, c: int) -> np.ndarray:
    """A value that tells corruption, row (severity and image), height, width, channel apart."""
    return (101 * corruption + 7 * row + 50 * c + 3 * h + w) % 256


def _write_c(folder: Path, names: Sequence[str] = C_NAMES, rows: int = 5 * C_IMAGES,
             classes: int = 100) -> None:
    folder.mkdir(exist_ok=True)
    for k, name in enumerate(names):
        grid = np.meshgrid(np.arange(rows), np.arange(32), np.arange(32), np.arange(3),
                           indexing="ij")
        np.save(folder / f"{name}.npy", _c_pixel(k, *grid).astype(np.uint8))
    np.save(folder / "labels.npy", (np.arange(rows) * 13) % classes)


@pytest.fixture
def small_c(tmp_path: Path) -> Path:
    _write_c(tmp_path / "CIFAR-100-C")
    return tmp_path / "CIFAR-100-C"


# --- reading -------------------------------------------------------------------------------------


def test_the_benchmark_is_the_15_corruptions_and_the_extras_are_readable(tmp_path: Path) -> None:
    """A folder holding the whole release (19 files): by default the 15 benchmark corruptions
    are read in the published order (noise, blur, weather, digital), each at severities 1-5;
    the 4 extra files are read only when named."""
    release = [*CIFAR100C_CORRUPTIONS, *CIFAR100C_EXTRA]
    _write_c(tmp_path / "c", release, rows=5)
    sets = list(iter_cifar100c(tmp_path / "c"))
    names = list(dict.fromkeys(s.corruption for s in sets))
    assert names[:3] == ["gaussian_noise", "shot_noise", "impulse_noise"]
    assert names[-1] == "jpeg_compression" and len(names) == 15
    assert not set(names) & {"speckle_noise", "gaussian_blur", "spatter", "saturate"}
    assert [s.severity for s in sets[:5]] == [1, 2, 3, 4, 5] and len(sets) == 75
    extra = list(iter_cifar100c(tmp_path / "c", ["saturate"], severities=(5,)))
    assert extra[0].x[0, 0, 0, 0] == _c_pixel(release.index("saturate"), 4, 0, 0, 0)


def test_iter_cifar100c_slices_severities_and_puts_channels_first(small_c: Path) -> None:
    sets = list(iter_cifar100c(small_c, C_NAMES))
    assert [(s.corruption, s.severity) for s in sets] == [
        (name, severity) for name in C_NAMES for severity in CIFAR100C_SEVERITIES]
    labels = np.load(small_c / "labels.npy")
    for s in sets:
        rows = np.arange((s.severity - 1) * C_IMAGES, s.severity * C_IMAGES)
        assert s.x.shape == (C_IMAGES, 3, 32, 32) and s.x.dtype == torch.uint8
        assert s.y.dtype == torch.int64 and s.y.tolist() == labels[rows].tolist()
        k = C_NAMES.index(s.corruption)
        i, c, h, w = torch.meshgrid(*(torch.arange(n) for n in s.x.shape), indexing="ij")
        assert torch.equal(s.x, _c_pixel(k, i + int(rows[0]), h, w, c).to(torch.uint8))
    fog_3 = sets[len(CIFAR100C_SEVERITIES) + 2]  # fog, severity 3: rows 8-11
    assert fog_3.x[1, 2, 5, 9] == _c_pixel(1, 9, 5, 9, 2)  # image 1, blue, row 5, column 9


def test_iter_cifar100c_reads_only_the_severities_asked(small_c: Path) -> None:
    name, severity, x, y = next(iter_cifar100c(small_c, ["fog"], severities=(4,)))
    assert (name, severity) == ("fog", 4)
    assert x[0, 0, 0, 0] == _c_pixel(1, 3 * C_IMAGES, 0, 0, 0)


@pytest.mark.parametrize(("breakage", "error", "match"), [
    ("no folder", FileNotFoundError, "CIFAR-100-C folder .* does not exist"),
    ("no fog.npy", FileNotFoundError, "fog.npy is missing"),
    ("no labels.npy", FileNotFoundError, "labels.npy is missing"),
    ("empty fog.npy", ValueError, r"CIFAR-100-C file .*fog.npy is damaged"),
    ("truncated fog.npy", ValueError, r"CIFAR-100-C file .*fog.npy is damaged"),
    ("truncated labels.npy", ValueError, r"CIFAR-100-C file .*labels.npy is damaged"),
    ("fog.npy of 64x64 images", ValueError, "fog.npy holds 64x64 images; CIFAR-100-C's are 32x32"),
    ("fog.npy in CHW", ValueError, r"fog.npy must be uint8 images \(N, H, W, 3\)"),
    ("fog.npy as float", ValueError, "fog.npy must be uint8"),
    ("short labels", ValueError, "gaussian_noise.npy has 20 images but labels.npy has 19"),
    ("21 rows", ValueError, "multiple of 5 rows, got 21"),
])
def test_iter_cifar100c_names_what_is_wrong_before_yielding(small_c: Path, breakage: str,
                                                            error: type, match: str) -> None:
    fog = small_c / "fog.npy"
    if breakage == "no folder":
        small_c = small_c / "nowhere"
    elif breakage == "no fog.npy":
        fog.unlink()
    elif breakage == "no labels.npy":
        (small_c / "labels.npy").unlink()
    elif breakage == "empty fog.npy":
        fog.write_bytes(b"")
    elif breakage.startswith("truncated"):
        path = small_c / breakage.split()[1]
        path.write_bytes(path.read_bytes()[: path.stat().st_size - 100])  # an interrupted copy
    elif breakage == "fog.npy of 64x64 images":
        np.save(fog, np.zeros((20, 64, 64, 3), np.uint8))
    elif breakage == "fog.npy in CHW":
        np.save(fog, np.zeros((20, 3, 32, 32), np.uint8))
    elif breakage == "fog.npy as float":
        np.save(fog, np.zeros((20, 32, 32, 3), np.float32))
    elif breakage == "short labels":
        np.save(small_c / "labels.npy", np.zeros(19, np.int64))
    else:
        _write_c(small_c, rows=21)
    with pytest.raises(error, match=match):
        iter_cifar100c(small_c, C_NAMES)  # raised by the call itself, not the first next()


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"corruptions": ("fog", "rain")}, "corruptions"),
    ({"corruptions": ()}, "corruptions"),
    ({"corruptions": ("fog", "fog")}, "corruptions"),
    ({"corruptions": "fog"}, "corruptions"),
    ({"severities": (0, 1)}, "severities"),
    ({"severities": (True,)}, "severities"),
    ({"directory": None}, "directory"),
])
def test_iter_cifar100c_validates_names_and_severities(small_c: Path, kwargs: dict,
                                                       name: str) -> None:
    with pytest.raises(ValueError, match=name):
        iter_cifar100c(**{"directory": small_c, **kwargs})


# --- metrics -------------------------------------------------------------------------------------

M_NAMES = ("gaussian_noise", "fog", "saturate")  # two of the benchmark's 15, one extra


class FixedLogits(nn.Module):
    """Ignores its input: every image gets the same logits (metrics known in closed form)."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


@pytest.fixture(scope="module")
def data():
    return synthetic(8, num_classes=3, test_per_class=6)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return small_cnn(3).eval()


@pytest.fixture(scope="module")
def three_class_c(tmp_path_factory) -> Path:
    """Three corruption files whose labels are those of a 3-class model."""
    folder = tmp_path_factory.mktemp("CIFAR-100-C")
    _write_c(folder, M_NAMES, classes=3)
    return folder


def by_hand(model, x_float, data):
    with torch.no_grad():
        return torch.softmax(model.eval()(normalize(x_float, data.mean, data.std)), dim=1)


def test_corruption_metrics_are_imlib_metrics_of_the_predictions(cnn, data, three_class_c):
    df = corruption_metrics(cnn, three_class_c, data.mean, data.std, M_NAMES, batch_size=3)
    assert list(df.columns) == list(CORRUPTION_COLUMNS)
    assert list(zip(df.corruption, df.severity, strict=True)) == [
        (c, s) for c in M_NAMES for s in CIFAR100C_SEVERITIES]
    labels = torch.from_numpy(np.load(three_class_c / "labels.npy"))
    for row in df[df.corruption == "fog"].itertuples():
        rows = slice((row.severity - 1) * C_IMAGES, row.severity * C_IMAGES)
        x = torch.from_numpy(np.load(three_class_c / "fog.npy")[rows]).permute(0, 3, 1, 2)
        probs = by_hand(cnn, x.float() / 255, data)
        y = labels[rows]
        assert row.n == C_IMAGES
        assert row.accuracy == pytest.approx(float(topk_accuracy(probs, y)), abs=1e-6)
        assert row.nll == pytest.approx(float(metrics.nll(probs, y)), abs=1e-5)
        assert row.ece == pytest.approx(float(ece(probs, y, n_bins=15)), abs=1e-6)


def test_corruption_metrics_of_a_fixed_prediction(data, three_class_c):
    df = corruption_metrics(FixedLogits([2.0, 0.0, 1.0]), three_class_c, data.mean, data.std,
                            ("fog",), severities=(2,))
    y = np.load(three_class_c / "labels.npy")[C_IMAGES:2 * C_IMAGES]
    p = np.exp([2.0, 0.0, 1.0]) / np.exp([2.0, 0.0, 1.0]).sum()
    row = df.iloc[0]
    assert row.accuracy == pytest.approx((y == 0).mean())
    assert row.nll == pytest.approx(-np.log(p[y]).mean(), abs=1e-5)
    assert row.ece == pytest.approx(abs((y == 0).mean() - p[0]), abs=1e-6)  # one bin


def test_corruption_metrics_refuse_a_model_with_too_few_classes(data, three_class_c):
    with pytest.raises(ValueError, match="CIFAR-100 model"):
        corruption_metrics(FixedLogits([0.0, 1.0]), three_class_c, data.mean, data.std, ("fog",))


def corruption_table(accuracy: dict[str, list[float]], **keys) -> pd.DataFrame:
    return pd.DataFrame([{**keys, "corruption": c, "severity": s + 1, "accuracy": a,
                          "nll": 2 * a, "ece": a / 10, "n": 4}
                         for c, values in accuracy.items() for s, a in enumerate(values)])


def test_corruption_summary_means_and_mce():
    df = corruption_table({"saturate": [0.9, 0.9], "fog": [0.5, 0.3], "gaussian_noise": [0.2, 0.4]})
    out = corruption_summary(df)
    assert list(out.columns) == list(CORRUPTION_SUMMARY_COLUMNS)
    assert list(out.corruption) == ["gaussian_noise", "fog", "saturate", "mean"]
    np.testing.assert_allclose(out.accuracy, [0.3, 0.4, 0.9, 0.35])  # mean: the 15's only
    np.testing.assert_allclose(out.mce, [70, 60, 10, 65])
    np.testing.assert_allclose(out.nll, 2 * out.accuracy)
    np.testing.assert_allclose(out.ece, out.accuracy / 10)
    assert list(out.n_sets) == [2, 2, 2, 4]


def test_corruption_summary_per_model():
    df = pd.concat([corruption_table({"fog": [0.5, 0.7], "snow": [0.1, 0.1]}, variant=v, seed=0)
                    for v in ("im", "baseline")], ignore_index=True)
    df.loc[df.variant == "im", "accuracy"] += 0.1
    out = corruption_summary(df, by=("variant", "seed"))
    assert list(out.columns) == ["variant", "seed", *CORRUPTION_SUMMARY_COLUMNS]
    assert list(out.variant) == ["baseline"] * 3 + ["im"] * 3
    means = out[out.corruption == "mean"].set_index("variant")
    assert means.accuracy.to_dict() == pytest.approx({"baseline": 0.35, "im": 0.45})
    assert means.mce.to_dict() == pytest.approx({"baseline": 65.0, "im": 55.0})


@pytest.mark.parametrize(("df", "match"), [
    (corruption_table({"saturate": [0.5]}), "none of the benchmark corruptions"),
    (corruption_table({"fog": [0.5, 0.5]}).assign(severity=1), "several rows"),
    (corruption_table({"fog": [0.5]}).drop(columns="ece"), "lacks"),
    (pd.DataFrame(), "empty"),
])
def test_corruption_summary_validates(df, match):
    with pytest.raises(ValueError, match=match):
        corruption_summary(df)


def test_evaluate_corruptions_covers_every_run(tmp_path, data, three_class_c):
    params = load_params("smoke", {"runs_dir": str(tmp_path / "runs"), "protocols": ["paper"],
                                   "variants": ["baseline", "im"], "ablations": [],
                                   "seeds": [0], "epochs": 1,
                                   "synthetic_per_class": 8, "synthetic_classes": 3,
                                   "device": "cpu"})
    with pytest.raises(IncompleteRunError, match="not trained yet"):
        evaluate_corruptions(params, "paper", data, three_class_c)
    for run in params.runs():
        train(run.config)
    df = evaluate_corruptions(params, "paper", data, three_class_c, corruptions=("fog",),
                              severities=(1, 5))
    assert list(df.columns) == ["variant", "seed", *CORRUPTION_COLUMNS]
    assert list(zip(df.variant, df.severity, strict=True)) == [
        ("baseline", 1), ("baseline", 5), ("im", 1), ("im", 5)]
    model, _ = load_model(params.train_dir("paper", "im", 0) / "best.pt", "cpu")
    expected = corruption_metrics(model, three_class_c, data.mean, data.std, ("fog",), (1, 5))
    pd.testing.assert_frame_equal(df[df.variant == "im"].drop(columns=["variant", "seed"])
                                  .reset_index(drop=True), expected)
    with pytest.raises(FileNotFoundError, match="snow.npy is missing"):
        evaluate_corruptions(params, "paper", data, three_class_c, corruptions=("snow",))
