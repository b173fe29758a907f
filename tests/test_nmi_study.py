"""imlib.nmi_study against independent computations: scikit-learn on numpy bin codes, nmi and
degrade called directly, and the clamp of the IM formula written out."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from imlib.data import synthetic
from imlib.degradations import KINDS, LEVELS, degrade
from imlib import nmi_study
from imlib.nmi import nmi
from imlib.nmi_study import (
    BINS,
    degradation_grid,
    eps_distribution,
    loop_vs_batched_throughput,
    nmi_by_level,
    photograph,
    sample_images,
    sklearn_agreement,
    sklearn_nmi,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Eight synthetic data-set images (8, 3, 32, 32) in [0, 1]."""
    return sample_images(synthetic(4, num_classes=4), 8, seed=0)


def _sklearn_by_hand(a: torch.Tensor, b: torch.Tensor, bins: int) -> list[float]:
    """scikit-learn per channel on codes binned in numpy, independently of imlib.bin_codes."""
    out = []
    for c in range(a.shape[0]):
        ca = np.floor(a[c].numpy().astype(np.float32) * np.float32(bins - 1)).astype(int).ravel()
        cb = np.floor(b[c].numpy().astype(np.float32) * np.float32(bins - 1)).astype(int).ravel()
        out.append(normalized_mutual_info_score(ca, cb, average_method="arithmetic"))
    return out


@pytest.mark.parametrize("bins", (16, 64))
def test_sklearn_agreement_matches_sklearn_called_directly(images, generator, bins):
    y = degrade(images, "diffusion", torch.linspace(0.01, 0.3, 8), generator=generator)
    table = sklearn_agreement(images, y, bins=bins)
    assert list(table.columns) == ["pair", "imlib", "sklearn_raw", "sklearn", "both_constant",
                                   "abs_diff"]
    for i in (0, 5):
        expected = _sklearn_by_hand(images[i], y[i], bins)
        np.testing.assert_allclose(sklearn_nmi(images[i:i + 1], y[i:i + 1], bins)[0], expected)
        assert table["sklearn_raw"][i] == pytest.approx(np.mean(expected), abs=1e-12)
    np.testing.assert_allclose(table["imlib"], nmi(images, y, bins=bins).numpy(), atol=1e-7)
    assert table["abs_diff"].max() < 1e-6
    assert (table["both_constant"] == 0).all()


def test_sklearn_agreement_applies_the_constant_channel_convention(images):
    x = torch.full((2, 3, 8, 8), 0.5)
    y = torch.cat([torch.full((1, 3, 8, 8), 0.9), images[:1, :, :8, :8]])
    y[1, 0] = 0.5  # pair 1: channel 0 constant in both, channels 1-2 constant in x only
    table = sklearn_agreement(x, y, bins=64)
    assert table["sklearn_raw"].tolist() == pytest.approx([1.0, 1 / 3])
    assert table["sklearn"].tolist() == [0.0, 0.0]
    assert table["imlib"].tolist() == [0.0, 0.0]
    assert table["both_constant"].tolist() == [3, 1]


def test_nmi_by_level_rows_identity_and_deterministic_kinds(images):
    levels = (0.0, 0.3, 1.0)
    table = nmi_by_level(images, KINDS, levels, bins=(16, 64), seed=0)
    assert isinstance(table, pd.DataFrame) and len(table) == len(KINDS) * len(levels) * 2
    assert list(table.columns) == ["kind", "level", "bins", "mean", "std", "q10", "q90", "n"]
    assert (table["n"] == len(images)).all()
    at_zero = table[table["level"] == 0.0]
    np.testing.assert_allclose(at_zero["mean"], 1.0, atol=1e-6)
    np.testing.assert_allclose(at_zero["std"], 0.0, atol=1e-6)
    assert (table["q10"] <= table["mean"] + 1e-9).all()
    assert (table["mean"] <= table["q90"] + 1e-9).all()
    # blur is deterministic: the row equals nmi on degrade called directly
    direct = nmi(images, degrade(images, "blur", 0.3), bins=64).double()
    row = table[(table["kind"] == "blur") & (table["level"] == 0.3) & (table["bins"] == 64)]
    assert row["mean"].item() == pytest.approx(direct.mean().item(), abs=1e-6)
    assert row["std"].item() == pytest.approx(direct.std().item(), abs=1e-6)
    assert row["q90"].item() == pytest.approx(np.quantile(direct.numpy(), 0.9), abs=1e-6)
    # a mosaic at level 1 is constant per channel: 0
    mosaic_end = table[(table["kind"] == "mosaic") & (table["level"] == 1.0)]
    np.testing.assert_allclose(mosaic_end["mean"], 0.0, atol=1e-6)


def test_nmi_by_level_defaults_and_validation(images):
    table = nmi_by_level(images[:2], kinds=["dropout"], seed=1)
    assert table["level"].tolist() == list(LEVELS) and (table["bins"] == 64).all()
    assert BINS == (16, 32, 64, 128, 256)
    with pytest.raises(ValueError, match="kinds"):
        nmi_by_level(images, kinds=["jpeg"])
    with pytest.raises(ValueError, match="levels"):
        nmi_by_level(images, levels=[])
    with pytest.raises(ValueError, match="levels"):
        nmi_by_level(images, levels=[1.5])
    with pytest.raises(ValueError, match="bins"):
        nmi_by_level(images, levels=[0.5], bins=1)


def test_eps_distribution_is_the_clamped_im_formula(images):
    table = eps_distribution(images, n_draws=20, bins=64, max_eps=0.9, seed=3)
    assert len(table) == 20
    assert table["image"].tolist() == [i % 8 for i in range(20)]
    assert set(table["kind"]) <= set(KINDS)
    assert table["level"].between(0, 1).all()
    np.testing.assert_allclose(table["eps"], np.clip(1 - table["nmi"], 0, 0.9), atol=1e-6)
    assert (table["clamped"] == (1 - table["nmi"] >= 0.9)).all()
    # one row recomputed from its kind and level (blur and mosaic are deterministic)
    row = table[table["kind"].isin(["blur", "mosaic"])].iloc[0]
    x = images[int(row["image"])][None]
    y = degrade(x, row["kind"], torch.tensor([row["level"]], dtype=torch.float32))
    assert row["nmi"] == pytest.approx(nmi(x, y).item(), abs=1e-6)
    pd.testing.assert_frame_equal(table, eps_distribution(images, 20, seed=3))
    with pytest.raises(ValueError, match="n_draws"):
        eps_distribution(images, n_draws=0)
    with pytest.raises(ValueError, match="max_eps"):
        eps_distribution(images, n_draws=4, max_eps=1.0)


def test_loop_vs_batched_throughput_times_each_method_on_a_known_clock(images, monkeypatch):
    """Every nmi call takes 0.25 s on a fake clock: the batched method (one call for 8 images)
    must report 0.25 s and 32 images/s, the loop (3 calls for 3 images) 0.75 s and 4 images/s;
    the warm-up call and the other repeats must not be counted."""
    clock = SimpleNamespace(now=0.0)

    def slow_nmi(x, y, bins):
        clock.now += 0.25
        return nmi(x, y, bins=bins)

    monkeypatch.setattr(nmi_study, "nmi", slow_nmi)
    monkeypatch.setattr(nmi_study, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    table = loop_vs_batched_throughput(images, images.flip(0), bins=16, repeats=2, loop_images=3)
    assert table["method"].tolist() == ["batched", "loop"]
    assert table["images"].tolist() == [8, 3]
    assert table["seconds"].tolist() == [0.25, 0.75]
    assert table["images_per_s"].tolist() == [32.0, 4.0]
    with pytest.raises(ValueError, match="same shape"):
        loop_vs_batched_throughput(images, images[:2])


def test_degradation_grid_shapes_identity_column_and_scores(images):
    levels = (0.0, 0.5, 1.0)
    tiles, scores = degradation_grid(images[:1], KINDS, levels, bins=64, seed=0)
    assert tiles.shape == (4, 3, 3, 32, 32) and scores.shape == (4, 3)
    assert torch.equal(tiles[:, 0], images[:1].expand(4, -1, -1, -1))
    torch.testing.assert_close(scores[:, 0], torch.ones(4))
    assert torch.equal(tiles[KINDS.index("blur"), 1], degrade(images[:1], "blur", 0.5)[0])
    torch.testing.assert_close(scores[:, 1], nmi(images[:1].expand(4, -1, -1, -1), tiles[:, 1]))
    with pytest.raises(ValueError, match="one image"):
        degradation_grid(images[:2])


def test_sample_images_and_photograph():
    data = synthetic(3, num_classes=2)
    x = sample_images(data, 4, seed=0)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, sample_images(data, 4, seed=0))
    assert len(sample_images(data, 100)) == len(data.x_train)  # capped at what exists
    assert torch.equal(sample_images(data, 6, split="test").sort(0).values,
                       (data.x_test.float() / 255).sort(0).values)
    pytest.importorskip("skimage")
    photo = photograph("chelsea", size=24)  # a non-square photograph, centre-cropped
    assert photo.shape == (1, 3, 24, 24) and 0 <= photo.min() and photo.max() <= 1
    with pytest.raises(ValueError, match="name"):
        photograph("camera")


def test_training_draws_are_what_the_run_trains_on(tmp_path):
    from imlib.runs import TrainConfig

    base = dict(dataset="synthetic", synthetic_per_class=20, synthetic_classes=4,
                model="small_cnn", device="cpu", out_dir=str(tmp_path))
    im = TrainConfig(variant="im", im_max_eps=0.8, **base)
    draws = nmi_study.training_draws(im, n_images=50)
    assert len(draws) == 50 and set(draws["kind"]) <= set(KINDS)
    assert ((draws["level"] > 0) & (draws["level"] < 1)).all()
    np.testing.assert_allclose(draws["eps"], np.clip(1 - draws["nmi"], 0, 0.8), atol=1e-6)
    np.testing.assert_allclose(draws["target"], 1 - draws["eps"], atol=1e-6)  # spread others
    pd.testing.assert_frame_equal(draws, nmi_study.training_draws(im, n_images=50))  # seeded
    baseline = nmi_study.training_draws(TrainConfig(variant="baseline", **base), n_images=8)
    assert (baseline["eps"] == 0).all() and (baseline["target"] == 1).all()
    assert baseline["nmi"].between(0, 1).all()  # measured for every variant
