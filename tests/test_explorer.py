"""imlib.explorer: ``probe`` against computations written out here, the views built headless.

The references: scikit-learn's NMI on numpy bin codes (per channel, averaged), eps and the soft
target from the paper's formula, ``degrade`` called directly with the same seed, and the model's
softmax on the degraded image normalised by hand.
"""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.metrics import normalized_mutual_info_score

import imlib.explorer
from imlib.degradations import KINDS, degrade
from imlib.explorer import Probe, explorer, probe, probe_figure, static_view

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
K = 5
CLASSES = tuple(f"class {k}" for k in range(K))


def nmi_sklearn(x: torch.Tensor, y: torch.Tensor, bins: int) -> float:
    """Channel mean of scikit-learn's NMI on the codes floor(v (bins - 1)) of (C, H, W) images."""
    scores = []
    for a, b in zip(x.numpy(), y.numpy(), strict=True):
        code_a = np.floor(a.astype(np.float32) * np.float32(bins - 1)).astype(int).ravel()
        code_b = np.floor(b.astype(np.float32) * np.float32(bins - 1)).astype(int).ravel()
        scores.append(normalized_mutual_info_score(code_a, code_b, average_method="arithmetic"))
    return float(np.mean(scores))


def linear_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, K)).eval()


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {"baseline": linear_model(0), "im": linear_model(1)}


@pytest.fixture
def image(photographs) -> torch.Tensor:
    return photographs((32, 32))[1]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("level", "bins"), [(0.3, 64), (0.7, 16)])
def test_probe_matches_references(image, models, kind, level, bins):
    result = probe(image, kind, level, bins, models=models, mean=MEAN, std=STD, label=2,
                   num_classes=K, max_eps=0.9, seed=3)

    expected = degrade(image[None], kind, level, torch.Generator().manual_seed(3))[0]
    assert torch.equal(result.degraded, expected)
    assert result.nmi == pytest.approx(nmi_sklearn(image, expected, bins), abs=1e-5)
    eps = min(max(1 - result.nmi, 0.0), 0.9)
    assert result.eps == pytest.approx(eps, abs=1e-6)
    target = torch.full((K,), eps / (K - 1))
    target[2] = 1 - eps
    torch.testing.assert_close(result.target, target)

    normalised = (expected - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    for name, model in models.items():
        with torch.no_grad():
            probs = torch.softmax(model(normalised[None]), dim=1)[0]
        torch.testing.assert_close(result.predictions[name], probs, atol=1e-5, rtol=1e-5)


def test_probe_spread_all_cap_and_clean(image):
    # Mosaic at d = 1 keeps one colour per channel: NMI 0, so eps hits the cap.
    capped = probe(image, "mosaic", 1.0, label=0, num_classes=K, max_eps=0.6, spread="all")
    assert capped.nmi == 0 and capped.eps == pytest.approx(0.6)
    torch.testing.assert_close(capped.target, torch.tensor([0.4 + 0.6 / K] + [0.6 / K] * 4))
    # Level 0 leaves the image as it is: NMI 1, no smoothing, a one-hot target.
    clean = probe((image * 255).round().to(torch.uint8), "blur", 0.0, label=4, num_classes=K)
    assert clean.nmi == pytest.approx(1.0) and clean.eps == pytest.approx(0.0)
    torch.testing.assert_close(clean.target, torch.eye(K)[4])
    assert clean.predictions == {}


def test_probe_is_reproducible_per_seed(image):
    first, again = (probe(image, "diffusion", 0.4, seed=1) for _ in range(2))
    other = probe(image, "diffusion", 0.4, seed=2)
    assert torch.equal(first.degraded, again.degraded) and first.nmi == again.nmi
    assert not torch.equal(first.degraded, other.degraded)
    assert first.target is None


@pytest.mark.parametrize(("change", "message"), [
    (dict(kind="fog"), "kind must be one of"),
    (dict(level=1.5), "level must lie in"),
    (dict(bins=1), "bins must be an int >= 2"),
    (dict(image=torch.rand(1, 3, 32, 32)), "image must be a tensor"),
    (dict(label=1), "num_classes is required"),
    (dict(label=K, num_classes=K), "label must be an int"),
    (dict(models={"im": linear_model()}), "mean and std are required"),
    (dict(models={"im": linear_model()}, mean=MEAN, std=STD, num_classes=K + 1), "predicts 5"),
    (dict(max_eps=1.0), "max_eps"),
    (dict(spread="some"), "spread must be one of"),
])
def test_probe_refuses_bad_arguments(image, change, message):
    arguments = dict(image=image, kind="blur", level=0.5, bins=64) | change
    with pytest.raises(ValueError, match=message):
        probe(**arguments)


def _split(photographs):
    images = (photographs((32, 32)) * 255).round().to(torch.uint8)
    return images, torch.tensor([0, 3, 1])


def test_static_view_has_three_panels_per_setting(photographs, models):
    images, labels = _split(photographs)
    settings = [(0, "blur", 0.2, 64), (2, "dropout", 0.5, 32)]
    fig = static_view(images, labels, CLASSES, models, MEAN, STD, settings=settings)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * len(settings)
    assert "NMI" in fig.axes[4].get_title()  # the second row's degraded image
    with pytest.raises(ValueError, match="image index"):
        static_view(images, labels, CLASSES, settings=[(3, "blur", 0.2, 64)])
    with pytest.raises(ValueError, match="settings"):
        static_view(images, labels, CLASSES, settings=[(0, "blur")])


def test_probe_figure_shows_top_k_of_many_classes(image, models):
    many = tuple(f"c{k}" for k in range(20))
    wide = {"im": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 20))}
    result = probe(image, "mosaic", 0.3, models=wide, mean=MEAN, std=STD, label=7,
                   num_classes=20)
    fig = probe_figure(result, many)
    ticks = [t.get_text() for t in fig.axes[2].get_xticklabels()]
    top = set(result.predictions["im"].topk(5).indices.tolist()) | {7}
    assert "c7" in ticks and sorted(ticks) == sorted(f"c{k}" for k in top)
    no_target = probe(image, "blur", 0.3)
    assert isinstance(no_target, Probe) and len(probe_figure(no_target, many).axes) == 2


def test_explorer_builds_widgets_without_a_frontend(photographs, models, monkeypatch):
    drawn = []
    monkeypatch.setattr(imlib.explorer, "probe_figure", lambda result, names: drawn.append(result))
    images, labels = _split(photographs)
    box = explorer(images, labels, CLASSES, models, MEAN, STD)
    assert isinstance(box, ipywidgets.VBox)
    controls = {c.description: c for c in box.children[0].children}
    assert set(controls) == {"image", "kind", "level d", "bins"}
    assert controls["image"].max == len(images) - 1
    controls["image"].value = 1
    controls["kind"].value = "mosaic"
    controls["bins"].value = 16
    last = drawn[-1]  # every change redraws the probe of the sliders' current setting
    assert (last.kind, last.level, last.bins, last.label) == ("mosaic", 0.5, 16, int(labels[1]))
    assert torch.equal(last.image, images[1].float() / 255)
    assert set(last.predictions) == set(models)
    with pytest.raises(ValueError, match="labels must have length 3"):
        explorer(images, labels[:2], CLASSES)
