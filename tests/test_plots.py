"""imlib.plots: every figure from small tables in the exact layout imlib.results writes: its
axes, one line or bar per variant in the variant's colour, the values it shows, and its
reference lines (chance at 1/K, IM's target 1 - eps(NMI)) against formulas written out here."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import same_color, to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from imlib import information_plots, plots, style, thumbnails  # noqa: E402
from imlib.degradations import KINDS, PAPER_EVAL, degrade  # noqa: E402
from imlib.evaluate import reliability_table  # noqa: E402
from imlib.metrics import METRICS, ece  # noqa: E402
from imlib.class_information import class_information  # noqa: E402
from imlib.style import VARIANT_COLORS, VARIANT_LABELS  # noqa: E402
from imlib.results import (  # noqa: E402
    CLEAN_COLUMNS,
    ORDERS,
    RELIABILITY_COLUMNS,
    SWEEP_COLUMNS,
    EvalSettings,
)
from imlib.variants import VARIANTS as ALL_VARIANTS  # noqa: E402

VARIANTS = ("im", "baseline", "ls")  # out of order on purpose: figures use imlib.variants.VARIANTS
ORDERED = ["baseline", "ls", "im"]
SEEDS = (0, 1)
LEVELS = (0.0, 0.5, 1.0)
K = 20
SOURCE = dict(dataset="synthetic", protocol="paper")  # what a notebook passes: the runs' own


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def make_sweeps(seeds=SEEDS, low: float = 0.0, high: float = 1.0) -> pd.DataFrame:
    """Random accuracies and confidences in [low, high]; NMI 1 - d for the training order."""
    rng = _rng(1)
    rows = [{"variant": v, "seed": s, "kind": k, "level": d, "subset": sub, "order": order,
             "accuracy": rng.uniform(low, high), "confidence": rng.uniform(low, high),
             "nmi": 1 - d if order == "degrade_first" else rng.random(),
             "n": 100 if sub == "class" else 1000}
            for v in VARIANTS for s in seeds for k in KINDS for d in LEVELS
            for sub in ("all", "class") for order in ORDERS]
    return pd.DataFrame(rows)[list(SWEEP_COLUMNS)]


@pytest.fixture(scope="module")
def sweeps() -> pd.DataFrame:
    return make_sweeps()


def make_clean(seeds=SEEDS) -> pd.DataFrame:
    rng = _rng(2)
    rows = [{"variant": v, "seed": s, **{m: rng.random() for m in METRICS}, "temperature": 1.5,
             "n": 1000}
            for v in VARIANTS for s in seeds]
    return pd.DataFrame(rows)[list(CLEAN_COLUMNS)]


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return make_clean()


def make_histories(holdout: bool = True) -> pd.DataFrame:
    rng = _rng(3)
    rows = [{"variant": v, "seed": s, "epoch": e, "train_loss": rng.random(),
             "train_acc": rng.random(), "holdout_loss": rng.random() if holdout else None,
             "holdout_acc": rng.random() if holdout else None, "test_loss": rng.random(),
             "test_acc": rng.random(), "mean_eps": 0.3, "lr": 1e-3, "seconds": 1.0}
            for v in VARIANTS for s in SEEDS for e in (1, 2, 3)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def reliability() -> tuple[pd.DataFrame, dict[str, float]]:
    """A reliability table per variant (seed 0 only) and the ECE of each one's predictions."""
    tables, eces = [], {}
    for i, variant in enumerate(VARIANTS):
        g = torch.Generator().manual_seed(i)
        probs = torch.softmax(3 * torch.randn(200, 5, generator=g), dim=1)
        labels = torch.randint(5, (200,), generator=g)
        eces[variant] = float(ece(probs, labels))
        for condition in ("clean", "mosaic_0.5"):
            tables.append(reliability_table(probs, labels)
                          .assign(variant=variant, seed=0, condition=condition))
    return pd.concat(tables, ignore_index=True)[list(RELIABILITY_COLUMNS)], eces


def labelled(ax) -> list:
    """The lines a legend shows (matplotlib hides labels starting with "_": the seed lines)."""
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def assert_one_line_per_variant(ax, variants=ORDERED):
    lines = [ln for ln in labelled(ax) if ln.get_label() != style.CHANCE_LABEL]
    assert [line.get_label() for line in lines] == [VARIANT_LABELS[v] for v in variants]
    for line, variant in zip(lines, variants, strict=True):
        assert same_color(line.get_color(), VARIANT_COLORS[variant])


def assert_chance_line(ax, num_classes=K):
    (chance,) = [ln for ln in ax.get_lines() if ln.get_label() == style.CHANCE_LABEL]
    np.testing.assert_allclose(chance.get_ydata(), [100 / num_classes] * 2)
    assert chance.get_linestyle() == "--"


def mean_over_seeds(rows: pd.DataFrame, column: str, by: str = "level") -> np.ndarray:
    """Per ``by`` value: the mean over seeds of each seed's mean (a loop, not a groupby chain)."""
    out = []
    for value in sorted(set(rows[by])):
        at = rows[rows[by] == value]
        out.append(np.mean([at[at.seed == s][column].mean() for s in sorted(set(at.seed))]))
    return np.array(out)


def all_text(fig: Figure) -> str:
    texts = [fig.get_suptitle()]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        texts += [t.get_text() for t in ax.texts]
        legend = ax.get_legend()
        texts += [t.get_text() for t in legend.get_texts()] if legend else []
    return "\n".join(texts)


# --- the palette ---------------------------------------------------------------------------------


def test_variant_and_kind_palettes_share_no_colour():
    assert set(VARIANT_COLORS) == set(VARIANT_LABELS) == set(ALL_VARIANTS)
    assert set(style.KIND_COLORS) == set(style.KIND_LABELS) == set(style.KIND_MARKERS) == set(KINDS)
    variants = [np.array(to_rgb(c)) for c in VARIANT_COLORS.values()]
    kinds = [np.array(to_rgb(c)) for c in style.KIND_COLORS.values()]
    gap = np.array(to_rgb(style.GAP_COLOR))

    def closest(colours, others):  # Euclidean distance in RGB, channels in [0, 1]
        return min(np.linalg.norm(a - b) for a in colours for b in others)

    assert closest(variants, kinds) > 0.25  # never mistaken for one another
    assert closest([gap], variants + kinds) > 0.25  # the calibration gap is neither
    for palette in (variants, kinds):  # distinct within each palette too
        assert min(np.linalg.norm(a - b) for i, a in enumerate(palette)
                   for b in palette[i + 1:]) > 0.25
    assert len(set(style.KIND_MARKERS.values())) == len(KINDS)


# --- training and the clean test set --------------------------------------------------------------


@pytest.mark.parametrize("holdout", [True, False])
def test_training_curves_show_the_test_curve_and_the_holdout_beside_it(holdout):
    h = make_histories(holdout)
    fig = plots.training_curves(h, **SOURCE)
    splits = ["train", "test", "holdout"] if holdout else ["train", "test"]
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * len(splits)
    loss_row, acc_row = fig.axes[:len(splits)], fig.axes[len(splits):]
    titles = [ax.get_title() for ax in loss_row]
    assert titles[1] == "Test set (clean)"
    assert ("Holdout split (clean)" in titles) == holdout
    assert loss_row[0].get_ylabel() == "Loss (nats)" and acc_row[0].get_ylabel().endswith("(%)")
    for ax in fig.axes:
        assert_one_line_per_variant(ax)
        assert len(ax.get_lines()) == len(ORDERED) * (1 + len(SEEDS))  # mean + thin per seed
        assert ax.get_xlabel() == "Epoch"
        fig.canvas.draw()  # epochs are whole numbers, even on a three-epoch run
        assert all(float(t).is_integer() for t in ax.get_xticks())
    for ax, split in zip(acc_row, splits, strict=True):
        (im,) = [ln for ln in ax.get_lines() if ln.get_label() == "IM"]
        expected = 100 * mean_over_seeds(h[h.variant == "im"], f"{split}_acc", by="epoch")
        np.testing.assert_allclose(im.get_ydata(), expected)
        assert ax.get_ylim() == (-2, 102)  # accuracy over the whole 0-100 %
    assert "mean of 2 seeds, thin: each seed" in fig.get_suptitle()


def test_clean_metrics_bars_mark_the_papers_table1_on_cifar100(clean):
    fig = plots.clean_metrics_bars(clean, num_classes=100, dataset="cifar100", protocol="paper")
    assert [ax.get_title() for ax in fig.axes] == [
        "Top-1 accuracy", "Top-5 accuracy", "Cross-entropy loss", "ECE (paper's script)"]
    top1 = fig.axes[0]
    bars = top1.patches
    assert len(bars) == len(ORDERED)
    for bar, variant in zip(bars, ORDERED, strict=True):
        assert same_color(bar.get_facecolor(), VARIANT_COLORS[variant])
    expected = [100 * clean[clean.variant == v]["top1"].mean() for v in ORDERED]
    np.testing.assert_allclose([b.get_height() for b in bars], expected)
    assert [t.get_text() for t in top1.texts] == [f"{v:.1f}" for v in expected]
    assert [t.get_text() for t in top1.get_xticklabels()] == ["Baseline", "LS", "IM"]
    # The paper's printed Table 1, in the panels' units, over the bars of the same variant.
    printed = {"top1": [55.43, 55.94, 63.24], "top5": [82.35, 82.07, 85.14],
               "nll": [1.8251, 1.7069, 1.5724], "ece_paper_script": [0.1738, 0.1121, 0.1366]}
    for ax, values in zip(fig.axes, printed.values(), strict=True):
        (paper,) = [ln for ln in ax.get_lines() if ln.get_label() == "paper (CIFAR-100)"]
        np.testing.assert_allclose(paper.get_xdata(), [0, 1, 2])
        np.testing.assert_allclose(paper.get_ydata(), values)
        assert ax.get_ylim()[1] > max(values)  # the marks are inside the axes
    assert [ax.get_ylim() for ax in fig.axes[:2]] == [(-2, 102)] * 2  # accuracies: 0-100 %
    ece_panel = fig.axes[3]
    np.testing.assert_allclose(
        [b.get_height() for b in ece_panel.patches],
        [clean[clean.variant == v]["ece_paper_script"].mean() for v in ORDERED])
    assert "± sd over 2 seeds" in fig.get_suptitle()


def test_clean_metrics_bars_drop_top5_for_ten_classes_and_sd_for_one_seed():
    fig = plots.clean_metrics_bars(make_clean(seeds=(0,)), num_classes=10, **SOURCE)
    assert [ax.get_title() for ax in fig.axes] == [
        "Top-1 accuracy", "Cross-entropy loss", "ECE (paper's script)"]
    assert "±" not in all_text(fig) and "sd" not in all_text(fig)
    assert "paper" not in " ".join(t.get_text() for leg in fig.legends for t in leg.get_texts())
    for ax in fig.axes:
        assert not ax.get_lines()  # no error bars, and no paper marks off CIFAR-100
        assert not ax.containers[0].errorbar


def test_variant_targets_show_each_target_and_its_entropy():
    k, label = 5, 3
    eps = 0.4
    targets = {"level": torch.full((k,), 0.15).index_fill(0, torch.tensor([label]), 0.4),
               "baseline": torch.eye(k)[label],
               "ls": torch.full((k,), 0.02).index_fill(0, torch.tensor([label]), 0.92),
               "im": torch.full((k,), eps / (k - 1)).index_fill(0, torch.tensor([label]),
                                                                1 - eps)}
    names = ["cat", "dog", "car", "apple", "tree"]
    fig = plots.variant_targets(targets, names, label, **SOURCE)
    assert len(fig.axes) == 4
    for ax, variant in zip(fig.axes, ["baseline", "ls", "im", "level"], strict=True):
        row = targets[variant].double().numpy()
        entropy = 0.0 - sum(p * np.log(p) for p in row if p > 0)  # H(t), written out
        assert ax.get_title() == (f"{VARIANT_LABELS[variant]}: {100 * row[label]:.0f} % true\n"
                                  f"H(t) = {entropy:.2f} nats")
        np.testing.assert_allclose([b.get_height() for b in ax.containers[0]], 100 * row,
                                   rtol=1e-6)
        assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert f"ln K = {np.log(k):.2f} nats" in fig.get_suptitle() and "'apple'" in fig.get_suptitle()
    many = plots.variant_targets({"baseline": torch.eye(20)[7]}, [f"c{i}" for i in range(20)], 7,
                                 **SOURCE)
    assert [t.get_text() for t in many.axes[0].get_xticklabels()] == ["c7"]
    with pytest.raises(ValueError, match="targets holds unknown variant"):
        plots.variant_targets({"mixup": torch.eye(k)[0]}, names, 0, **SOURCE)
    with pytest.raises(ValueError, match="must be a tensor of shape"):
        plots.variant_targets({"im": torch.eye(k + 1)[0]}, names, 0, **SOURCE)


# --- confidence and accuracy under degradation --------------------------------------------------


def test_confidence_vs_level(sweeps):
    fig = plots.confidence_vs_level(sweeps, kind="mosaic", subset="class", class_name="apple",
                                    num_classes=K, **SOURCE)
    (ax,) = fig.axes
    assert_one_line_per_variant(ax)
    assert_chance_line(ax)
    shown = sweeps[sweeps.order == "degrade_first"]  # figures show training's order by default
    rows = shown[(shown.kind == "mosaic") & (shown.subset == "class") & (shown.variant == "ls")]
    (ls,) = [ln for ln in ax.get_lines() if ln.get_label() == "LS"]
    np.testing.assert_allclose(ls.get_ydata(), 100 * mean_over_seeds(rows, "confidence"))
    thin = [ln for ln in ax.get_lines() if ln.get_label().startswith("_seed")]
    assert len(thin) == len(ORDERED) * len(SEEDS)
    assert all(ln.get_linewidth() < ls.get_linewidth() for ln in thin)
    assert "apple" in fig.get_suptitle() and "Mosaic" in fig.get_suptitle()
    assert ax.get_ylabel() == "Mean true-class confidence (%)"


def test_confidence_vs_level_is_the_papers_composite(sweeps):
    # Three followed images (test #3, #8, #1): their own panels, their mean ± sd band, the
    # class's mean beside it, and a strip of the first one degraded at a few levels.
    images, confidences = ["image 3", "image 8", "image 1"], (0.2, 0.7, 0.6)
    per_image = [sweeps[sweeps.subset == "class"].assign(
        subset=image, n=1, confidence=sweeps[sweeps.subset == "class"]["confidence"] * c)
        for image, c in zip(images, confidences, strict=True)]
    table = pd.concat([sweeps, *per_image])
    test_images = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fig = plots.confidence_vs_level(table, kind="mosaic", subset="class", num_classes=K,
                                    test_images=test_images, degradation=PAPER_EVAL, **SOURCE)
    panels, (band, mean), strip = fig.axes[:3], fig.axes[3:5], fig.axes[5:]
    assert [ax.get_title() for ax in panels] == ["Image 1 (test #3)", "Image 2 (test #8)",
                                                 "Image 3 (test #1)"]
    shown = table[(table.order == "degrade_first") & (table.kind == "mosaic")]
    for ax, image in zip(panels, images, strict=True):
        assert_one_line_per_variant(ax)
        (im,) = [ln for ln in ax.get_lines() if ln.get_label() == "IM"]
        rows = shown[(shown.subset == image) & (shown.variant == "im")]
        np.testing.assert_allclose(im.get_ydata(), 100 * mean_over_seeds(rows, "confidence"))
    # The band: per level, the mean and sd (n - 1) over the images of each image's seed mean.
    assert_one_line_per_variant(band)
    for variant, polygon in zip(ORDERED, band.collections, strict=True):
        per_image = np.array([mean_over_seeds(shown[(shown.subset == i)
                                                    & (shown.variant == variant)], "confidence")
                              for i in images])  # (images, levels)
        centre, sd = per_image.mean(axis=0), per_image.std(axis=0, ddof=1)
        (line,) = [ln for ln in band.get_lines() if ln.get_label() == VARIANT_LABELS[variant]]
        np.testing.assert_allclose(line.get_ydata(), 100 * centre)
        outline = polygon.get_paths()[0].vertices
        np.testing.assert_allclose(outline[:, 1].max(), 100 * (centre + sd).max())
        np.testing.assert_allclose(outline[:, 1].min(), 100 * (centre - sd).min())
        assert same_color(polygon.get_facecolor()[0][:3], VARIANT_COLORS[variant])
    assert "band: ± 1 sd" in band.get_title() and "apple" in mean.get_title()
    rows = shown[(shown.subset == "class") & (shown.variant == "ls")]
    (ls,) = [ln for ln in mean.get_lines() if ln.get_label() == "LS"]
    np.testing.assert_allclose(ls.get_ydata(), 100 * mean_over_seeds(rows, "confidence"))
    # The strip: the first followed image (test #3) under mosaic at the strip's levels.
    assert [ax.get_title() for ax in strip] == [f"d = {d:.1f}" for d in plots._STRIP_LEVELS]
    for ax, level in zip(strip, plots._STRIP_LEVELS, strict=True):
        expected = degrade(test_images[3:4], "mosaic", level, config=PAPER_EVAL)[0]
        np.testing.assert_allclose(ax.images[0].get_array(), expected.permute(1, 2, 0).numpy())
    assert all(ax.get_legend() is None for ax in fig.axes) and fig.legends
    with pytest.raises(ValueError, match="degradation is required"):
        plots.confidence_vs_level(table, "mosaic", "class", num_classes=K,
                                  test_images=test_images, **SOURCE)

    (single,) = plots.confidence_vs_level(table, kind="mosaic", subset="all", num_classes=K,
                                          **SOURCE).axes
    assert "all test images" in single.figure.get_suptitle()


def test_every_figure_names_its_source_and_keeps_legends_and_percent_axes_in_place(
        sweeps, clean, reliability):
    figures = {
        "training_curves": plots.training_curves(make_histories(), **SOURCE),
        "clean_metrics_bars": plots.clean_metrics_bars(clean, num_classes=K, **SOURCE),
        "confidence_vs_level": plots.confidence_vs_level(sweeps, num_classes=K, **SOURCE),
        "confidence_heatmap": plots.confidence_heatmap(sweeps, **SOURCE),
        "confidence_per_kind": plots.confidence_per_kind(sweeps, num_classes=K, **SOURCE),
        "confidence_kinds_overlaid": plots.confidence_kinds_overlaid(sweeps, num_classes=K,
                                                                     **SOURCE),
        "confidence_vs_nmi": information_plots.confidence_vs_nmi(
            sweeps, EvalSettings(), num_classes=K, **SOURCE),
        "accuracy_vs_level": plots.accuracy_vs_level(sweeps, num_classes=K, **SOURCE),
        "reliability_diagram": plots.reliability_diagram(reliability[0], **SOURCE),
        "variant_targets": plots.variant_targets({"im": torch.full((4,), 0.25)}, list("abcd"), 0,
                                                 **SOURCE),
        "class_information_vs_nmi": information_plots.class_information_vs_nmi(
            class_information(sweeps, K), EvalSettings(), **SOURCE),
        "training_draws_figure": information_plots.training_draws_figure(
            pd.DataFrame({"kind": list(KINDS), "level": [0.2, 0.4, 0.6, 0.8],
                          "eps": [0.1, 0.3, 0.5, 0.9]}), 0.9, **SOURCE),
    }
    every = set(plots.__all__) | set(information_plots.__all__)
    assert set(figures) | {"nmi_vs_level"} == every  # every figure of the two modules
    for name, fig in figures.items():
        assert fig.get_suptitle().endswith("\nsynthetic set, paper protocol"), name
        assert all(ax.get_legend() is None for ax in fig.axes), name  # legends outside the data
    # no protocol: no model
    cifar = information_plots.nmi_vs_level(sweeps, EvalSettings(), dataset="cifar100")
    assert cifar.get_suptitle().endswith("\nCIFAR-100") and cifar.legends
    percent = {"confidence_vs_level": [0], "confidence_per_kind": range(len(KINDS)),
               "confidence_kinds_overlaid": [0], "confidence_vs_nmi": range(len(ORDERED)),
               "accuracy_vs_level": range(len(KINDS)), "variant_targets": [0]}
    for name, axes in percent.items():  # confidence and accuracy always span 0-100 %
        for i in axes:
            assert figures[name].axes[i].get_ylim() == (-2, 102), name
    narrow = plots.confidence_vs_level(make_sweeps(low=0.3, high=0.4), "blur", "all",
                                       num_classes=K, **SOURCE)
    assert narrow.axes[0].get_ylim() == (-2, 102)  # even when the data span 30-40 %


def test_one_seed_has_no_spread_in_any_label():
    one = make_sweeps(seeds=(0,))
    figures = [plots.confidence_vs_level(one, num_classes=K, **SOURCE),
               plots.confidence_per_kind(one, num_classes=K, **SOURCE),
               plots.confidence_heatmap(one, **SOURCE),
               information_plots.confidence_vs_nmi(one, EvalSettings(), num_classes=K, **SOURCE),
               plots.accuracy_vs_level(one, num_classes=K, **SOURCE)]
    for fig in figures:
        assert "±" not in all_text(fig) and " sd" not in all_text(fig)
        assert not any(ln.get_label().startswith("_seed") for ax in fig.axes
                       for ln in ax.get_lines())


def test_confidence_heatmap_in_percent(sweeps):
    fig = plots.confidence_heatmap(sweeps, kind="blur", class_name="apple", **SOURCE)
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    ax = fig.axes[0]
    assert len(ax.texts) == len(ORDERED) * len(LEVELS)  # one annotated cell each
    labels = ax.get_yticklabels()
    assert [t.get_text() for t in labels] == ["Baseline", "LS", "IM"]
    for label, variant in zip(labels, ORDERED, strict=True):
        assert same_color(label.get_color(), VARIANT_COLORS[variant])
    shown = sweeps[sweeps.order == "degrade_first"]
    rows = shown[(shown.kind == "blur") & (shown.subset == "class") & (shown.variant == "im")]
    expected = 100 * mean_over_seeds(rows, "confidence")
    assert [t.get_text() for t in ax.texts[-len(LEVELS):]] == [f"{v:.0f}" for v in expected]
    assert "(%)" in fig.axes[1].get_ylabel()


def test_confidence_per_kind(sweeps):
    fig = plots.confidence_per_kind(sweeps, subset="all", num_classes=K, **SOURCE)
    assert len(fig.axes) == len(KINDS)
    assert [ax.get_title() for ax in fig.axes] == [style.KIND_LABELS[k] for k in KINDS]
    for ax in fig.axes:
        assert_one_line_per_variant(ax)
        assert_chance_line(ax)
    assert fig.axes[0].get_ylabel() == "Mean true-class confidence (%)"


def test_confidence_kinds_overlaid_is_the_papers_view_of_one_variant(sweeps):
    fig = plots.confidence_kinds_overlaid(sweeps, "im", subset="class", num_classes=K, **SOURCE)
    (ax,) = fig.axes
    lines = [ln for ln in labelled(ax) if ln.get_label() != style.CHANCE_LABEL]
    assert [ln.get_label() for ln in lines] == [style.KIND_LABELS[k] for k in KINDS]
    shown = sweeps[(sweeps.order == "degrade_first") & (sweeps.subset == "class")
                   & (sweeps.variant == "im")]
    for line, kind in zip(lines, KINDS, strict=True):
        assert same_color(line.get_color(), style.KIND_COLORS[kind])
        assert line.get_marker() == style.KIND_MARKERS[kind]
        np.testing.assert_allclose(line.get_ydata(),
                                   100 * mean_over_seeds(shown[shown.kind == kind], "confidence"))
    assert_chance_line(ax)
    assert fig.get_suptitle().startswith("IM:") and ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(ValueError, match="variant must be one of"):
        plots.confidence_kinds_overlaid(sweeps, "level", num_classes=K, **SOURCE)


@pytest.mark.parametrize("spread", ["others", "all"])
def test_confidence_vs_nmi_draws_ims_target_line(sweeps, spread):
    max_eps = 0.8
    settings = EvalSettings(max_eps=max_eps, spread=spread, nmi_bins=32)
    fig = information_plots.confidence_vs_nmi(sweeps, settings, num_classes=K, **SOURCE)
    assert [ax.get_title() for ax in fig.axes] == [VARIANT_LABELS[v] for v in ORDERED]
    assert all(ax.get_xlabel().endswith(", 32 bins") for ax in fig.axes)
    for ax in fig.axes:
        (target,) = [ln for ln in ax.get_lines() if ln.get_label() == style.TARGET_LABEL]
        nmi = np.asarray(target.get_xdata())
        assert nmi.min() == 0 and nmi.max() == 1
        eps = np.clip(1 - nmi, 0, max_eps)  # IM's eps, written out
        true_class = 1 - eps + (eps / K if spread == "all" else 0)
        np.testing.assert_allclose(target.get_ydata(), 100 * true_class)
        assert_chance_line(ax)
    im_panel = fig.axes[ORDERED.index("im")]
    (mosaic,) = [ln for ln in im_panel.get_lines() if ln.get_label() == "Mosaic"]
    rows = sweeps[(sweeps.order == "degrade_first") & (sweeps.subset == "all")
                  & (sweeps.variant == "im") & (sweeps.kind == "mosaic")]
    np.testing.assert_allclose(mosaic.get_xdata(), mean_over_seeds(rows, "nmi"))
    np.testing.assert_allclose(mosaic.get_ydata(), 100 * mean_over_seeds(rows, "confidence"))
    assert same_color(mosaic.get_color(), VARIANT_COLORS["im"])
    assert mosaic.get_marker() == style.KIND_MARKERS["mosaic"]
    assert fig.axes[0].get_ylabel() == "Mean true-class confidence (%)"


@pytest.mark.parametrize("order", ORDERS)
def test_accuracy_vs_level(sweeps, order):
    fig = plots.accuracy_vs_level(sweeps, num_classes=K, order=order, **SOURCE)
    assert [ax.get_title() for ax in fig.axes] == [style.KIND_LABELS[k] for k in KINDS]
    rows = sweeps[(sweeps.order == order) & (sweeps.subset == "all")]
    for ax, kind in zip(fig.axes, KINDS, strict=True):
        assert_one_line_per_variant(ax)
        assert_chance_line(ax)
        (baseline,) = [ln for ln in ax.get_lines() if ln.get_label() == "Baseline"]
        expected = mean_over_seeds(rows[(rows.kind == kind) & (rows.variant == "baseline")],
                                   "accuracy")
        np.testing.assert_allclose(baseline.get_ydata(), 100 * expected)
        assert ax.get_xlabel() == "Degradation level d"
    assert fig.axes[0].get_ylabel() == "Top-1 accuracy (%)"
    assert order in fig.get_suptitle()


# --- calibration and information ----------------------------------------------------------------


def test_reliability_diagram_shows_each_bins_count(reliability):
    table, eces = reliability
    fig = plots.reliability_diagram(table, condition="clean", **SOURCE)
    assert len(fig.axes) == 2 * len(ORDERED)
    tops, bottoms = fig.axes[:len(ORDERED)], fig.axes[len(ORDERED):]
    for top, bottom, variant in zip(tops, bottoms, ORDERED, strict=True):
        assert top.get_title() == f"{VARIANT_LABELS[variant]} (ECE {eces[variant]:.3f})"
        mine = table[(table.variant == variant) & (table.condition == "clean")]
        non_empty = mine[mine["count"] > 0]
        filled = [p for p in top.patches if p.get_fill()]
        assert len(filled) == len(non_empty)
        assert all(same_color(p.get_facecolor(), VARIANT_COLORS[variant]) for p in filled)
        np.testing.assert_allclose([p.get_height() for p in filled],
                                   100 * non_empty["accuracy"].to_numpy())
        hatched = [p for p in top.patches if not p.get_fill()]
        assert all(p.get_hatch() == "xx" and same_color(p.get_edgecolor(), style.GAP_COLOR)
                   for p in hatched)
        np.testing.assert_allclose([p.get_height() for p in bottom.patches],
                                   non_empty["count"].to_numpy())
        assert bottom.get_xlabel() == "Confidence (top-1, %)"
    assert tops[0].get_ylabel() == "Accuracy (%)" and bottoms[0].get_ylabel() == "Images"
    mosaic = plots.reliability_diagram(table, "mosaic_0.5", **SOURCE)
    assert "mosaic at d = 0.5" in mosaic.get_suptitle()


def test_nmi_vs_level(sweeps):
    fig = information_plots.nmi_vs_level(sweeps, EvalSettings(nmi_bins=32), dataset="synthetic")
    (ax,) = fig.axes  # the right-hand eps scale is a secondary axis of it
    assert "32 bins" in fig.get_suptitle()
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == [style.KIND_LABELS[k] for k in KINDS]
    for line, kind in zip(lines, KINDS, strict=True):
        assert same_color(line.get_color(), style.KIND_COLORS[kind])
        np.testing.assert_allclose(line.get_ydata(), [1 - d for d in LEVELS])


# --- images -------------------------------------------------------------------------------------


def test_plot_image_grid_draws_one_titled_axis_per_tile():
    tiles = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    scores = torch.tensor([[1.0, 0.5, 0.25], [0.125, 0.0, 0.999]])
    fig = thumbnails.plot_image_grid(tiles, scores, ["blur", "mosaic"], ["a", "b", "c"], title="t")
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes] == [f"NMI {s:.2f}" for s in scores.flatten()]
    assert fig.axes[0].get_ylabel() == "blur" and fig.axes[3].get_ylabel() == "mosaic"
    assert [ax.get_xlabel() for ax in fig.axes[3:]] == ["a", "b", "c"]
    np.testing.assert_allclose(fig.axes[4].images[0].get_array(),
                               tiles[1, 1].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="row_labels"):
        thumbnails.plot_image_grid(tiles, scores, ["blur"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="tiles must be"):
        thumbnails.plot_image_grid(tiles[0], scores, ["blur", "mosaic"], ["a", "b", "c"])


def test_training_batch_grid_labels_each_sample():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(5, 3, 8, 8, generator=g)
    degraded = torch.rand(5, 3, 8, 8, generator=g)
    kinds = torch.tensor([0, 1, 2, 3, 1])
    levels, nmi = torch.rand(5, generator=g), torch.rand(5, generator=g)
    eps = (1 - nmi).clamp(0, 0.9)
    mass = 1 - eps
    labels, names = torch.tensor([2, 0, 1, 2, 0]), ["cat", "dog", "apple"]
    fig = thumbnails.training_batch_grid(clean, degraded, kinds, levels, nmi, eps, mass,
                                         labels=labels, class_names=names, n=4)
    top, bottom = fig.axes[:4], fig.axes[4:]
    assert len(fig.axes) == 8
    assert top[0].get_ylabel() == "clean" and bottom[0].get_ylabel() == "degraded"
    assert [ax.get_title() for ax in top] == ["apple", "cat", "dog", "apple"]  # class names
    for i, ax in enumerate(bottom):
        assert ax.get_title() == f"{KINDS[int(kinds[i])]}, d = {float(levels[i]):.2f}"
        assert ax.get_xlabel() == (f"NMI {float(nmi[i]):.2f}, ε {float(eps[i]):.2f}\n"
                                   f"target {100 * float(mass[i]):.0f} % true")
        np.testing.assert_allclose(ax.images[0].get_array(), degraded[i].permute(1, 2, 0).numpy())
        np.testing.assert_allclose(top[i].images[0].get_array(), clean[i].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="kinds must hold int indices"):
        thumbnails.training_batch_grid(clean, degraded, kinds + 1, levels, nmi, eps, mass,
                                       labels=labels, class_names=names)
    with pytest.raises(ValueError, match="eps must be a tensor of shape"):
        thumbnails.training_batch_grid(clean, degraded, kinds, levels, nmi, eps[:3], mass,
                                       labels=labels, class_names=names)
    with pytest.raises(ValueError, match="labels must hold int indices into class_names"):
        thumbnails.training_batch_grid(clean, degraded, kinds, levels, nmi, eps, mass,
                                       labels=labels + 1, class_names=names)


def test_save_figure_writes_a_png(clean, tmp_path):
    fig = plots.clean_metrics_bars(clean, num_classes=K, **SOURCE)
    path = style.save_figure(fig, tmp_path / "new" / "fig2.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


# --- argument checks -----------------------------------------------------------------------------


def test_bad_arguments_raise_naming_the_argument(sweeps, clean, reliability):
    with pytest.raises(ValueError, match="sweeps lacks"):
        plots.confidence_vs_level(sweeps.drop(columns="confidence"), num_classes=K, **SOURCE)
    with pytest.raises(ValueError, match="kind must be one of"):
        plots.confidence_heatmap(sweeps, kind="noise", **SOURCE)
    with pytest.raises(ValueError, match="subset must be one of"):
        plots.confidence_per_kind(sweeps, subset="apple", num_classes=K, **SOURCE)
    with pytest.raises(ValueError, match="order must be one of"):
        plots.accuracy_vs_level(sweeps, num_classes=K, order="sideways", **SOURCE)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        plots.confidence_per_kind(sweeps, num_classes=1, **SOURCE)
    with pytest.raises(ValueError, match="settings must be the evaluation's"):
        information_plots.confidence_vs_nmi(sweeps, {"max_eps": 0.9}, num_classes=K, **SOURCE)
    with pytest.raises(ValueError, match="condition must be one of"):
        plots.reliability_diagram(reliability[0], condition="blur_0.5", **SOURCE)
    with pytest.raises(ValueError, match="clean holds unknown variant"):
        plots.clean_metrics_bars(clean.replace({"variant": {"ls": "mixup"}}), num_classes=K,
                                 **SOURCE)
    with pytest.raises(ValueError, match="histories is empty"):
        plots.training_curves(make_histories().iloc[:0], **SOURCE)
    with pytest.raises(ValueError, match="fig must be"):
        style.save_figure(None, "x.png")


# --- pixel information against class information ----------------------------------------------


@pytest.mark.parametrize("spread", ["others", "all"])
def test_class_information_vs_nmi_draws_one_line_per_kind_and_the_references(spread):
    rng = _rng(3)
    information = pd.DataFrame([
        {"kind": k, "level": d, "nmi": 1 - d * rng.uniform(0.5, 1),
         "best_accuracy": 0.5, "best_variant": "im", "clean_accuracy": 0.9, "chance": 1 / K,
         "class_information": rng.uniform(0, 1)}
        for k in ("mosaic", "blur") for d in (1.0, 0.0, 0.5)])  # levels out of order on purpose
    settings = EvalSettings(max_eps=0.8, spread=spread)
    fig = information_plots.class_information_vs_nmi(information, settings, **SOURCE)
    (ax,) = fig.axes
    assert ax.get_xlim() == (-0.02, 1.02) and ax.get_ylim() == (-0.02, 1.02)
    assert "NMI" in ax.get_xlabel() and "Class information" in ax.get_ylabel()
    assert "synthetic" in fig.get_suptitle().lower() and "paper protocol" in fig.get_suptitle()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert [k for k in lines if k in style.KIND_LABELS.values()] == ["Gaussian blur", "Mosaic"]
    for kind in ("blur", "mosaic"):
        line = lines[style.KIND_LABELS[kind]]
        rows = information[information.kind == kind].sort_values("level")
        np.testing.assert_allclose(line.get_xdata(), rows["nmi"])
        np.testing.assert_allclose(line.get_ydata(), rows["class_information"])
        assert same_color(line.get_color(), style.KIND_COLORS[kind])
        assert line.get_marker() == style.KIND_MARKERS[kind]
    diagonal = lines["NMI = class information"]
    np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())
    (target,) = [ln for label, ln in lines.items() if label.startswith(style.TARGET_LABEL)]
    nmi = np.asarray(target.get_xdata())
    eps = np.clip(1 - nmi, 0, 0.8)
    np.testing.assert_allclose(target.get_ydata(), 1 - eps + (eps / K if spread == "all" else 0))
    with pytest.raises(ValueError, match="class_information"):
        information_plots.class_information_vs_nmi(
            information.drop(columns="class_information"), settings, **SOURCE)


def test_training_draws_figure_stacks_the_draws_of_each_kind():
    rng = _rng(4)
    draws = pd.DataFrame({"kind": rng.choice(["blur", "dropout"], 300),
                          "level": rng.random(300), "eps": rng.uniform(0, 0.9, 300)})
    fig = information_plots.training_draws_figure(draws, 0.9, **SOURCE)
    level_ax, eps_ax = fig.axes
    for ax, column in ((level_ax, "level"), (eps_ax, "eps")):
        for kind in ("blur", "dropout"):  # each kind's bars, told apart by the kind's colour
            bars = sorted((p.get_x(), p.get_height()) for p in ax.patches
                          if same_color(to_rgb(p.get_facecolor()), style.KIND_COLORS[kind]))
            expected, _ = np.histogram(draws.loc[draws.kind == kind, column], bins=20,
                                       range=(0, 1))
            np.testing.assert_array_equal([h for _, h in bars], expected)
        assert ax.get_xlim() == (0, 1) and ax.get_ylabel() == "Training draws"
    assert [ln.get_xdata()[0] for ln in eps_ax.get_lines()] == [0.9]  # the clamp
    assert "300 draws" in fig.get_suptitle()


def test_class_gallery_shows_images_of_each_named_class():
    from imlib.data import synthetic

    data = synthetic(4, num_classes=3)
    fig = thumbnails.class_gallery(data, per_class=2, max_classes=10, seed=0)
    rows = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert rows == ["0: class_0", "1: class_1", "2: class_2"]
    for ax, c in zip(fig.axes[::2], range(3), strict=True):  # first column: one image per class
        shown = torch.from_numpy(np.asarray(ax.get_images()[0].get_array())).permute(2, 0, 1)
        members = data.x_train[data.y_train == c].float() / 255
        assert any(torch.allclose(shown.float(), m, atol=1e-6) for m in members)
    fig = thumbnails.class_gallery(synthetic(2, num_classes=30), per_class=1, max_classes=4)
    assert [ax.get_ylabel() for ax in fig.axes] == ["0: class_0", "10: class_10",
                                                    "19: class_19", "29: class_29"]
    with pytest.raises(ValueError, match="fewer than per_class"):
        thumbnails.class_gallery(data, per_class=5)
