"""imlib.explorer: ``probe`` against computations written out here, the views built headless.

The references: scikit-learn's NMI on numpy bin codes (per channel, averaged), eps and the soft
target from the paper's formula, ``degrade`` called directly with the same seed, and the model's
softmax on the degraded image normalised by hand.
"""

from __future__ import annotations

import inspect

import ipywidgets
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.metrics import normalized_mutual_info_score

import imlib.explorer
from imlib.degradations import KINDS, degrade
from imlib.explorer import (DESCRIPTION_WIDTH, Probe, explorer, probe, probe_figure, probe_grid,
                            static_view, what_to_notice)

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
K = 5
CLASSES = tuple(f"class {k}" for k in range(K))
RUN = dict(bins=64, max_eps=0.9, spread="others")  # a run's settings, passed as a notebook does
READOUT = 80  # the most a slider's value readout takes (ipywidgets 8)


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
    result = probe(image, kind, level, bins=bins, max_eps=0.9, spread="others", models=models,
                   mean=MEAN, std=STD, label=2, num_classes=K, seed=3)

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
    capped = probe(image, "mosaic", 1.0, bins=64, max_eps=0.6, spread="all", label=0,
                   num_classes=K)
    assert capped.nmi == 0 and capped.eps == pytest.approx(0.6)
    torch.testing.assert_close(capped.target, torch.tensor([0.4 + 0.6 / K] + [0.6 / K] * 4))
    # Level 0 leaves the image as it is: NMI 1, no smoothing, a one-hot target.
    clean = probe((image * 255).round().to(torch.uint8), "blur", 0.0, **RUN, label=4,
                  num_classes=K)
    assert clean.nmi == pytest.approx(1.0) and clean.eps == pytest.approx(0.0)
    torch.testing.assert_close(clean.target, torch.eye(K)[4])
    assert clean.predictions == {}


def test_probe_is_reproducible_per_seed(image):
    first, again = (probe(image, "diffusion", 0.4, **RUN, seed=1) for _ in range(2))
    other = probe(image, "diffusion", 0.4, **RUN, seed=2)
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
    arguments = dict(image=image, kind="blur", level=0.5, **RUN) | change
    with pytest.raises(ValueError, match=message):
        probe(**arguments)


def test_the_runs_settings_have_no_default():
    for name in ("bins", "max_eps", "spread"):
        for function in (probe, probe_grid, explorer):
            parameter = inspect.signature(function).parameters[name]
            assert parameter.default is inspect.Parameter.empty, (function.__name__, name)


def _split(photographs):
    images = (photographs((32, 32)) * 255).round().to(torch.uint8)
    return images, torch.tensor([0, 3, 0])


def test_probe_grid_covers_every_kind_at_a_low_and_a_high_level(photographs, models):
    images, labels = _split(photographs)
    probes = probe_grid(images, labels, CLASSES, 1, **RUN, models=models, mean=MEAN, std=STD)
    assert [(p.kind, p.level) for p in probes] == [(k, d) for k in KINDS for d in (0.2, 0.8)]
    for p in probes:  # each is the probe of that setting, on image 1 and its label
        alone = probe(images[1], p.kind, p.level, **RUN, models=models, mean=MEAN, std=STD,
                      label=3, num_classes=K)
        assert p.label == 3 and p.nmi == alone.nmi and torch.equal(p.degraded, alone.degraded)

    fig = static_view(probes, CLASSES, dataset="cifar100", protocol="paper")
    assert isinstance(fig, Figure) and fig.get_suptitle().endswith("CIFAR-100, paper protocol")
    assert len(fig.axes) == 2 + 2 * len(probes)  # clean and legend, then image and bars each
    titles = [ax.get_title() for ax in fig.axes]
    assert titles.count("Clean: class 3") == 1
    blur_high = probes[KINDS.index("blur") * 2 + 1]
    assert sum(title.startswith("Gaussian blur\nd = 0.80") and f"NMI {blur_high.nmi:.2f}" in title
               for title in titles) == 1
    with_legend = [ax for ax in fig.axes if ax.get_legend()]  # a panel of its own, no data
    assert len(with_legend) == 1 and not with_legend[0].axison and not with_legend[0].patches
    assert [t.get_text() for t in with_legend[0].get_legend().get_texts()][:2] == \
        ["chance (1/K)", "IM target"]

    text = what_to_notice(probes, CLASSES)
    assert "**class 3**" in text
    for kind in KINDS:  # each kind's NMI and IM's target, from its low to its high level
        low, high = probes[KINDS.index(kind) * 2], probes[KINDS.index(kind) * 2 + 1]
        assert (f"NMI {low.nmi:.2f} → {high.nmi:.2f}, so IM's target "
                f"{100 * float(low.target[3]):.0f} % → {100 * float(high.target[3]):.0f} %"
                in text)
    gaps = {name: np.mean([abs(100 * float(p.predictions[name][3] - p.target[3]))
                           for p in probes]) for name in models}
    closest = min(gaps, key=gaps.get)
    assert f"{ {'baseline': 'Baseline', 'im': 'IM'}[closest]} {gaps[closest]:.0f}" in text
    with pytest.raises(ValueError, match="image index"):
        probe_grid(images, labels, CLASSES, 3, **RUN)
    with pytest.raises(ValueError, match="probes must cover"):
        static_view(probes[:3], CLASSES, dataset="cifar100", protocol="paper")


def test_probe_figure_shows_top_k_of_many_classes(image, models):
    many = tuple(f"c{k}" for k in range(20))
    wide = {"im": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 20))}
    result = probe(image, "mosaic", 0.3, **RUN, models=wide, mean=MEAN, std=STD, label=7,
                   num_classes=20)
    fig = probe_figure(result, many)
    ticks = [t.get_text() for t in fig.axes[2].get_xticklabels()]
    top = set(result.predictions["im"].topk(5).indices.tolist()) | {7}
    assert "c7" in ticks and sorted(ticks) == sorted(f"c{k}" for k in top)
    assert fig.axes[2].get_ylim() == pytest.approx((-2, 102))  # a fixed 0-100 % axis
    assert fig.axes[2].get_legend() is None and fig.legends
    no_target = probe(image, "blur", 0.3, **RUN)
    assert isinstance(no_target, Probe) and len(probe_figure(no_target, many).axes) == 2


def _controls(box: ipywidgets.VBox) -> dict:
    rows, output = box.children[:-1], box.children[-1]
    assert isinstance(output, ipywidgets.Output)
    return {c.description: c for row in rows for c in row.children}


def test_explorer_lays_out_named_controls_starting_on_the_given_case(photographs, models,
                                                                      monkeypatch):
    drawn = []
    monkeypatch.setattr(imlib.explorer, "probe_figure",
                        lambda result, names, **options: drawn.append(result))
    images, labels = _split(photographs)
    box = explorer(images, labels, CLASSES, models, MEAN, STD, bins=32, max_eps=0.8,
                   spread="all", index=2)
    assert isinstance(box, ipywidgets.VBox)
    controls = _controls(box)
    assert set(controls) == {"class", "image of class", "kind", "level d", "IM spread",
                             "NMI bins", "noise seed", "IM clamp max ε"}
    # The class is chosen by name; image 2 is the second image of class 0.
    assert controls["class"].options == (("class 0", 0), ("class 3", 3))
    assert (controls["class"].value, controls["image of class"].value) == (0, 1)
    # The informative start: blur at a middle level, with the run's settings.
    assert (controls["kind"].value, controls["level d"].value) == ("blur", 0.5)
    assert (controls["NMI bins"].value, controls["IM clamp max ε"].value,
            controls["IM spread"].value) == (32, 0.8, "all")
    first = drawn[-1]
    assert (first.kind, first.level, first.bins, first.label) == ("blur", 0.5, 32, 0)
    assert torch.equal(first.image, images[2].float() / 255)
    # Each slider keeps at least 300 px of track beside its description and readout, and no
    # row holds more than one: every slider is long enough to aim with at a 1280 px window.
    for row in box.children[:-1]:
        sliders = [c for c in row.children
                   if isinstance(c, (ipywidgets.IntSlider, ipywidgets.FloatSlider))]
        assert len(sliders) <= 1
        widths = [int(c.layout.width.removesuffix("px")) for c in row.children]
        assert sum(widths) <= 1280 - 300  # the side bar and margins of JupyterLab
        for slider in sliders:
            description = int(slider.style.description_width.removesuffix("px"))
            assert description == DESCRIPTION_WIDTH
            assert widths[row.children.index(slider)] - description - READOUT >= 300

    controls["class"].value = 3  # another class starts on its first image
    assert controls["image of class"].max == 0 and drawn[-1].label == 3
    assert torch.equal(drawn[-1].image, images[1].float() / 255)
    controls["kind"].value = "mosaic"
    controls["IM clamp max ε"].value = 0.5
    controls["IM spread"].value = "others"
    controls["noise seed"].value = 7
    last = drawn[-1]  # every change redraws the probe of the controls' current setting
    expected = probe(images[1], "mosaic", 0.5, bins=32, max_eps=0.5, spread="others", seed=7,
                     label=3, num_classes=K)
    assert (last.kind, last.eps) == ("mosaic", expected.eps)
    torch.testing.assert_close(last.target, expected.target)
    assert set(last.predictions) == set(models)
    with pytest.raises(ValueError, match="labels must have length 3"):
        explorer(images, labels[:2], CLASSES, **RUN)


def _rendered(fig: Figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def _collisions(fig: Figure, gap: float = 6.0) -> list[tuple[str, str]]:
    """Every panel title whose rendered box, widened by ``gap`` pixels on each side, overlaps
    another panel (its area, title, axis labels or tick labels): text that runs into a
    neighbour's, or reads on with it ("ε 0.89" then the tick label "100": "ε 0.89100")."""
    from matplotlib.transforms import Bbox

    renderer = _rendered(fig)
    found = []
    for ax in fig.axes:
        if not ax.get_title():
            continue
        x0, y0, x1, y1 = ax.title.get_window_extent(renderer).extents
        box = Bbox.from_extents(x0 - gap, y0, x1 + gap, y1)
        for other in fig.axes:
            if other is ax:
                continue
            if box.overlaps(other.get_window_extent(renderer)):
                found.append((ax.get_title(), "its neighbour's panel"))
            texts = [other.title] + ([other.xaxis.label, other.yaxis.label,
                                      *other.get_xticklabels(), *other.get_yticklabels()]
                                     if other.axison else [])
            found += [(ax.get_title(), t.get_text()) for t in texts
                      if t.get_text() and t.get_visible()
                      and box.overlaps(t.get_window_extent(renderer))]
    return found


def test_the_static_grid_titles_never_run_into_a_neighbouring_panel(photographs, models):
    images, labels = _split(photographs)
    many = {**models, "ls": linear_model(2), "level": linear_model(3)}
    probes = probe_grid(images, labels, CLASSES, 1, **RUN, models=many, mean=MEAN, std=STD,
                        levels=(0.2, 0.8))
    fig = static_view(probes, CLASSES, dataset="cifar100", protocol="reference-code")
    assert any("ε 0.9" in ax.get_title() for ax in fig.axes)  # the clamped, widest titles
    assert _collisions(fig) == []


def test_the_static_grid_fits_a_narrow_jupyterlab_with_legible_text(photographs, models):
    """The explorer's 560 px (JupyterLab's output area at 1024 x 768 with the file browser
    open), the whole drawing included, and every text at least 10 px tall (points at
    INLINE_DPI), so nothing is shrunk to fit."""
    from matplotlib.text import Text

    from imlib.style import INLINE_DPI

    images, labels = _split(photographs)
    probes = probe_grid(images, labels, CLASSES, 1, **RUN, models=models, mean=MEAN, std=STD)
    fig = static_view(probes, CLASSES, dataset="cifar100", protocol="reference-code")
    drawn = fig.get_tightbbox(_rendered(fig))  # inches: what a notebook shows, cropped
    assert fig.get_size_inches()[0] * INLINE_DPI == imlib.explorer.EXPLORER_WIDTH
    assert drawn.width * INLINE_DPI <= imlib.explorer.EXPLORER_WIDTH
    texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert min(t.get_fontsize() for t in texts) >= 10
    with pytest.raises(ValueError, match="width must be an int >= 300"):
        static_view(probes, CLASSES, dataset="cifar100", protocol="paper", width=100)


def test_the_explorer_figure_fits_a_narrow_jupyterlab_with_legible_text(image, models):
    """At 1024 x 768 with the file browser open the output area is about 570 px: the figure is
    drawn at that width (nothing shrinks it), the image pair above the bars, every text at
    least 10 px tall (points at INLINE_DPI), no title running into a neighbour."""
    from matplotlib.text import Text

    from imlib.style import INLINE_DPI

    result = probe(image, "diffusion", 0.8, **RUN, models=models, mean=MEAN, std=STD, label=2,
                   num_classes=K)
    fig = probe_figure(result, CLASSES)
    assert fig.get_size_inches()[0] * INLINE_DPI == imlib.explorer.EXPLORER_WIDTH <= 570
    clean, degraded, bars = fig.axes
    renderer = _rendered(fig)
    assert degraded.get_window_extent(renderer).y0 > bars.get_window_extent(renderer).y1
    texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert min(t.get_fontsize() for t in texts) >= 10
    assert _collisions(fig) == []
    wide = probe_figure(result, CLASSES, width=1100)  # a wide window: side by side
    assert wide.axes[1].get_window_extent(_rendered(wide)).x1 < \
        wide.axes[2].get_window_extent(_rendered(wide)).x0
    with pytest.raises(ValueError, match="width must be an int >= 300"):
        probe_figure(result, CLASSES, width=100)
