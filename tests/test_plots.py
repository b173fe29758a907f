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

from imlib import plots, style, thumbnails  # noqa: E402
from imlib.degradations import KINDS  # noqa: E402
from imlib.evaluate import reliability_table  # noqa: E402
from imlib.metrics import ece  # noqa: E402
from imlib.style import VARIANT_COLORS, VARIANT_LABELS  # noqa: E402
from imlib.results import (  # noqa: E402
    CLEAN_COLUMNS,
    METRICS,
    ORDERS,
    RELIABILITY_COLUMNS,
    SWEEP_COLUMNS,
)
from imlib.train import VARIANTS as ALL_VARIANTS  # noqa: E402

VARIANTS = ("im", "baseline", "ls")  # out of order on purpose: figures use imlib.train.VARIANTS
ORDERED = ["baseline", "ls", "im"]
SEEDS = (0, 1)
LEVELS = (0.0, 0.5, 1.0)
K = 20


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
    rows = [{"variant": v, "seed": s, **{m: rng.random() for m in METRICS}, "n": 1000}
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
    fig = plots.training_curves(h)
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
    assert "mean of 2 seeds, thin: each seed" in fig.get_suptitle()


def test_clean_metrics_bars_mark_the_papers_table1(clean):
    fig = plots.clean_metrics_bars(clean, num_classes=100)
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
    ece_panel = fig.axes[3]
    np.testing.assert_allclose(
        [b.get_height() for b in ece_panel.patches],
        [clean[clean.variant == v]["ece_paper_script"].mean() for v in ORDERED])
    assert "± sd over 2 seeds" in fig.get_suptitle()


def test_clean_metrics_bars_drop_top5_for_ten_classes_and_sd_for_one_seed():
    fig = plots.clean_metrics_bars(make_clean(seeds=(0,)), num_classes=10, show_paper=False)
    assert [ax.get_title() for ax in fig.axes] == [
        "Top-1 accuracy", "Cross-entropy loss", "ECE (paper's script)"]
    assert "±" not in all_text(fig) and "sd" not in all_text(fig)
    for ax in fig.axes:
        assert not ax.get_lines()  # no error bars, no paper marks
        assert not ax.containers[0].errorbar


# --- confidence and accuracy under degradation --------------------------------------------------


def test_confidence_vs_level(sweeps):
    fig = plots.confidence_vs_level(sweeps, kind="mosaic", subset="class", class_name="apple",
                                    num_classes=K)
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
    assert "apple" in ax.get_title() and "Mosaic" in ax.get_title()
    assert ax.get_ylabel() == "Mean true-class confidence (%)"


def test_confidence_vs_level_follows_each_image_above_the_mean_as_the_paper(sweeps):
    images = [f"image {i}" for i in (3, 8)]
    per_image = [sweeps[sweeps.subset == "class"].assign(subset=image, n=1,
                                                          confidence=c)
                 for image, c in zip(images, (0.2, 0.7), strict=True)]
    fig = plots.confidence_vs_level(pd.concat([sweeps, *per_image]), kind="mosaic",
                                    subset="class", num_classes=K)
    first, second, mean = fig.axes
    assert [first.get_title(), second.get_title()] == ["Image 1 (test #3)", "Image 2 (test #8)"]
    for ax, confidence in ((first, 20), (second, 70)):
        assert [ln.get_label() for ln in labelled(ax)][:len(ORDERED)] == [
            VARIANT_LABELS[v] for v in ORDERED]
        (im,) = [ln for ln in ax.get_lines() if ln.get_label() == "IM"]
        np.testing.assert_allclose(im.get_ydata(), confidence)
    assert "apple" in mean.get_title()
    (single,) = plots.confidence_vs_level(pd.concat([sweeps, *per_image]), kind="mosaic",
                                          subset="all", num_classes=K).axes
    assert "all test images" in single.get_title()


def test_the_y_axis_is_fitted_to_the_data_and_the_chance_line():
    narrow = make_sweeps(low=0.30, high=0.40)
    fig = plots.confidence_vs_level(narrow, kind="blur", subset="all", num_classes=K)
    low, high = fig.axes[0].get_ylim()
    assert 0 <= low <= 100 / K and 40 <= high < 50  # not 0-100 %: the data spans 30-40 %
    full = plots.confidence_vs_level(make_sweeps(low=0.0, high=1.0), "blur", "all",
                                     num_classes=K)
    low, high = full.axes[0].get_ylim()
    assert -1 <= low <= 0.5 and 99.5 <= high <= 101  # never past 0-100 %


def test_one_seed_has_no_spread_in_any_label():
    one = make_sweeps(seeds=(0,))
    figures = [plots.confidence_vs_level(one, num_classes=K),
               plots.confidence_per_kind(one, num_classes=K),
               plots.confidence_heatmap(one),
               plots.confidence_vs_nmi(one, num_classes=K),
               plots.accuracy_vs_level(one, num_classes=K)]
    for fig in figures:
        assert "±" not in all_text(fig) and " sd" not in all_text(fig)
        assert not any(ln.get_label().startswith("_seed") for ax in fig.axes
                       for ln in ax.get_lines())


def test_confidence_heatmap_in_percent(sweeps):
    fig = plots.confidence_heatmap(sweeps, kind="blur", class_name="apple")
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
    fig = plots.confidence_per_kind(sweeps, subset="all", num_classes=K)
    assert len(fig.axes) == len(KINDS)
    assert [ax.get_title() for ax in fig.axes] == [style.KIND_LABELS[k] for k in KINDS]
    for ax in fig.axes:
        assert_one_line_per_variant(ax)
        assert_chance_line(ax)
    assert fig.axes[0].get_ylabel() == "Mean true-class confidence (%)"


def test_confidence_kinds_overlaid_is_the_papers_view_of_one_variant(sweeps):
    fig = plots.confidence_kinds_overlaid(sweeps, "im", subset="class", num_classes=K)
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
    assert ax.get_title().startswith("IM:") and ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(ValueError, match="variant must be one of"):
        plots.confidence_kinds_overlaid(sweeps, "level", num_classes=K)


@pytest.mark.parametrize("spread", ["others", "all"])
def test_confidence_vs_nmi_draws_ims_target_line(sweeps, spread):
    max_eps = 0.8
    fig = plots.confidence_vs_nmi(sweeps, num_classes=K, max_eps=max_eps, spread=spread)
    assert [ax.get_title() for ax in fig.axes] == [VARIANT_LABELS[v] for v in ORDERED]
    for ax in fig.axes:
        (target,) = [ln for ln in ax.get_lines() if ln.get_label() == style.TARGET_LABEL]
        nmi = np.asarray(target.get_xdata())
        assert nmi.min() == 0 and nmi.max() == 1
        eps = np.clip(1 - nmi, 0, max_eps)  # IM's eps, written out
        true_class = 1 - eps + (eps / K if spread == "all" else 0)
        np.testing.assert_allclose(target.get_ydata(), 100 * true_class)
        assert_chance_line(ax)
        assert ax.get_xlabel() == "Mean NMI(clean, degraded)"
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
    fig = plots.accuracy_vs_level(sweeps, num_classes=K, order=order)
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
    fig = plots.reliability_diagram(table, condition="clean")
    assert len(fig.axes) == 2 * len(ORDERED)
    tops, bottoms = fig.axes[:len(ORDERED)], fig.axes[len(ORDERED):]
    for top, bottom, variant in zip(tops, bottoms, ORDERED, strict=True):
        assert top.get_title() == f"{VARIANT_LABELS[variant]} (ECE {eces[variant]:.4f})"
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
    mosaic = plots.reliability_diagram(table, "mosaic_0.5")
    assert "mosaic at d = 0.5" in mosaic.get_suptitle()


def test_nmi_vs_level(sweeps):
    fig = plots.nmi_vs_level(sweeps)
    (ax,) = fig.axes  # the right-hand eps scale is a secondary axis of it
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
    fig = thumbnails.training_batch_grid(clean, degraded, kinds, levels, nmi, eps, mass, n=4)
    top, bottom = fig.axes[:4], fig.axes[4:]
    assert len(fig.axes) == 8
    assert top[0].get_ylabel() == "clean" and bottom[0].get_ylabel() == "degraded"
    for i, ax in enumerate(bottom):
        assert ax.get_title() == f"{KINDS[int(kinds[i])]}, d = {float(levels[i]):.2f}"
        assert ax.get_xlabel() == (f"NMI {float(nmi[i]):.2f}, ε {float(eps[i]):.2f}\n"
                                   f"target {100 * float(mass[i]):.0f} % true")
        np.testing.assert_allclose(ax.images[0].get_array(), degraded[i].permute(1, 2, 0).numpy())
        np.testing.assert_allclose(top[i].images[0].get_array(), clean[i].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="kinds must hold int indices"):
        thumbnails.training_batch_grid(clean, degraded, kinds + 1, levels, nmi, eps, mass)
    with pytest.raises(ValueError, match="eps must be a tensor of shape"):
        thumbnails.training_batch_grid(clean, degraded, kinds, levels, nmi, eps[:3], mass)


def test_save_figure_writes_a_png(clean, tmp_path):
    fig = plots.clean_metrics_bars(clean, num_classes=K)
    path = style.save_figure(fig, tmp_path / "new" / "fig2.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_a_figure_ending_a_notebook_cell_is_shown_as_a_png(sweeps, tmp_path):
    # The figures bypass pyplot, so Jupyter's inline backend only shows them once imlib.plots
    # has loaded it; a fresh kernel (as papermill starts one) would otherwise print
    # "<Figure size ...>". The kernel is the python3 kernel of this environment.
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    sweeps.to_csv(tmp_path / "sweeps.csv", index=False)
    code = ("import pandas as pd\nfrom imlib import plots\n"
            f"plots.nmi_vs_level(pd.read_csv({str(tmp_path / 'sweeps.csv')!r}))")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=120).execute()
    outputs = notebook.cells[0].outputs
    assert any("image/png" in out.get("data", {}) for out in outputs), outputs


# --- argument checks -----------------------------------------------------------------------------


def test_bad_arguments_raise_naming_the_argument(sweeps, clean, reliability):
    with pytest.raises(ValueError, match="sweeps lacks"):
        plots.confidence_vs_level(sweeps.drop(columns="confidence"), num_classes=K)
    with pytest.raises(ValueError, match="kind must be one of"):
        plots.confidence_heatmap(sweeps, kind="noise")
    with pytest.raises(ValueError, match="subset must be one of"):
        plots.confidence_per_kind(sweeps, subset="apple", num_classes=K)
    with pytest.raises(ValueError, match="order must be one of"):
        plots.accuracy_vs_level(sweeps, num_classes=K, order="sideways")
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        plots.confidence_per_kind(sweeps, num_classes=1)
    with pytest.raises(ValueError, match="spread must be one of"):
        plots.confidence_vs_nmi(sweeps, num_classes=K, spread="some")
    with pytest.raises(ValueError, match="max_eps must be a float"):
        plots.confidence_vs_nmi(sweeps, num_classes=K, max_eps=1.0)
    with pytest.raises(ValueError, match="condition must be one of"):
        plots.reliability_diagram(reliability[0], condition="blur_0.5")
    with pytest.raises(ValueError, match="clean holds unknown variant"):
        plots.clean_metrics_bars(clean.replace({"variant": {"ls": "mixup"}}), num_classes=K)
    with pytest.raises(ValueError, match="histories is empty"):
        plots.training_curves(make_histories().iloc[:0])
    with pytest.raises(ValueError, match="fig must be"):
        style.save_figure(None, "x.png")
