"""imlib.plots: every figure from small tables in the exact layout imlib.evaluate writes: its
axes, one line or bar per variant in the variant's colour, and the values it shows."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import same_color  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from imlib import plots  # noqa: E402
from imlib.degradations import KINDS  # noqa: E402
from imlib.evaluate import (  # noqa: E402
    CLEAN_COLUMNS,
    ORDERS,
    METRICS,
    RELIABILITY_COLUMNS,
    SWEEP_COLUMNS,
    reliability_table,
)
from imlib.metrics import ece  # noqa: E402
from imlib.plots import VARIANT_COLORS, VARIANT_LABELS  # noqa: E402

VARIANTS = ("im", "baseline", "ls")  # out of order on purpose: figures use VARIANT_ORDER
ORDERED = ["baseline", "ls", "im"]
SEEDS = (0, 1)
LEVELS = (0.0, 0.5, 1.0)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def sweeps() -> pd.DataFrame:
    rng = _rng(1)
    rows = [{"variant": v, "seed": s, "kind": k, "level": d, "subset": sub, "order": order,
             "accuracy": rng.random(), "confidence": rng.random(), "nmi": 1 - d,
             "n": 100 if sub == "class" else 1000}
            for v in VARIANTS for s in SEEDS for k in KINDS for d in LEVELS
            for sub in ("all", "class") for order in ORDERS]
    return pd.DataFrame(rows)[list(SWEEP_COLUMNS)]


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    rng = _rng(2)
    rows = [{"variant": v, "seed": s, **{m: rng.random() for m in METRICS}, "n": 1000}
            for v in VARIANTS for s in SEEDS]
    return pd.DataFrame(rows)[list(CLEAN_COLUMNS)]


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


def assert_one_line_per_variant(ax, variants=ORDERED):
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == [VARIANT_LABELS[v] for v in variants]
    for line, variant in zip(lines, variants, strict=True):
        assert same_color(line.get_color(), VARIANT_COLORS[variant])


# --- the palette ---------------------------------------------------------------------------------


def test_every_variant_has_one_distinct_colour_and_label():
    assert plots.VARIANT_ORDER == ("baseline", "ls", "im", "level")
    assert set(VARIANT_COLORS) == set(VARIANT_LABELS) == set(plots.VARIANT_ORDER)
    colours = [matplotlib.colors.to_hex(c) for c in VARIANT_COLORS.values()]
    kinds = [matplotlib.colors.to_hex(c) for c in plots.KIND_COLORS.values()]
    assert len(set(colours + kinds)) == len(colours) + len(kinds)


# --- the figures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("holdout", [True, False])
def test_training_curves(holdout):
    fig = plots.training_curves(make_histories(holdout))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    split = "holdout" if holdout else "test"
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 2 * len(ORDERED)  # train dashed, held-out solid, per variant
        for variant in ORDERED:
            mine = [ln for ln in lines if ln.get_label().startswith(VARIANT_LABELS[variant] + " ")]
            assert sorted(ln.get_linestyle() for ln in mine) == ["-", "--"]
            assert all(same_color(ln.get_color(), VARIANT_COLORS[variant]) for ln in mine)
            solid = next(ln for ln in mine if ln.get_linestyle() == "-")
            assert solid.get_label().endswith(f"({split})")
    for ax in fig.axes:  # epochs are whole numbers, even on a two-epoch run
        fig.canvas.draw()
        assert all(float(t).is_integer() for t in ax.get_xticks())
    accuracy = fig.axes[1]
    im_solid = next(ln for ln in accuracy.get_lines() if ln.get_label() == f"IM ({split})")
    h = make_histories(holdout)
    expected = 100 * h[h.variant == "im"].groupby("epoch")[f"{split}_acc"].mean()
    np.testing.assert_allclose(im_solid.get_ydata(), expected.to_numpy())


def test_clean_metrics_bars(clean):
    fig = plots.clean_metrics_bars(clean)
    assert len(fig.axes) == 4
    top1 = fig.axes[0]
    bars = top1.patches
    assert len(bars) == len(ORDERED)
    for bar, variant in zip(bars, ORDERED, strict=True):
        assert same_color(bar.get_facecolor(), VARIANT_COLORS[variant])
    expected = 100 * clean.groupby("variant")["top1"].mean()[ORDERED]
    np.testing.assert_allclose([b.get_height() for b in bars], expected)
    assert [t.get_text() for t in top1.texts] == [f"{v:.2f}" for v in expected]
    assert [t.get_text() for t in top1.get_xticklabels()] == ["Baseline", "LS", "IM"]
    assert all(len(ax.patches) == len(ORDERED) for ax in fig.axes)


def test_confidence_vs_level(sweeps):
    fig = plots.confidence_vs_level(sweeps, kind="mosaic", subset="class", class_name="apple")
    (ax,) = fig.axes
    assert_one_line_per_variant(ax)
    shown = sweeps[sweeps.order == "degrade_first"]  # figures show training's order only
    rows = shown[(shown.kind == "mosaic") & (shown.subset == "class") & (shown.variant == "ls")]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(),
                               rows.groupby("level")["confidence"].mean().to_numpy())
    assert "apple" in ax.get_title() and "Mosaic" in ax.get_title()


def test_confidence_heatmap(sweeps):
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
    expected = rows.groupby("level")["confidence"].mean().to_numpy()
    assert [t.get_text() for t in ax.texts[-len(LEVELS):]] == [f"{v:.2f}" for v in expected]


def test_confidence_per_kind(sweeps):
    fig = plots.confidence_per_kind(sweeps, subset="all")
    assert len(fig.axes) == len(KINDS)
    assert [ax.get_title() for ax in fig.axes] == [plots.KIND_LABELS[k] for k in KINDS]
    for ax in fig.axes:
        assert_one_line_per_variant(ax)
        assert ax.get_ylim() == (0, 1)


def test_reliability_diagram(reliability):
    table, eces = reliability
    fig = plots.reliability_diagram(table, condition="clean")
    assert len(fig.axes) == len(ORDERED)
    for ax, variant in zip(fig.axes, ORDERED, strict=True):
        assert ax.get_title() == f"{VARIANT_LABELS[variant]} (ECE {eces[variant]:.4f})"
        non_empty = int((table[(table.variant == variant) & (table.condition == "clean")]
                         ["count"] > 0).sum())
        filled = [p for p in ax.patches if p.get_fill()]
        assert len(filled) == non_empty
        assert all(same_color(p.get_facecolor(), VARIANT_COLORS[variant]) for p in filled)
    mosaic = plots.reliability_diagram(table, "mosaic_0.5")
    assert "mosaic at d = 0.5" in mosaic.get_suptitle()


def test_nmi_vs_level(sweeps):
    fig = plots.nmi_vs_level(sweeps)
    (ax,) = fig.axes  # the right-hand eps scale is a secondary axis of it
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == [plots.KIND_LABELS[k] for k in KINDS]
    for line, kind in zip(lines, KINDS, strict=True):
        assert same_color(line.get_color(), plots.KIND_COLORS[kind])
        np.testing.assert_allclose(line.get_ydata(), [1 - d for d in LEVELS])


def test_save_figure_writes_a_png(clean, tmp_path):
    path = plots.save_figure(plots.clean_metrics_bars(clean), tmp_path / "new" / "fig2.png")
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


def test_bad_tables_raise_naming_the_argument(sweeps, clean, reliability):
    with pytest.raises(ValueError, match="sweeps lacks"):
        plots.confidence_vs_level(sweeps.drop(columns="confidence"))
    with pytest.raises(ValueError, match="kind must be one of"):
        plots.confidence_heatmap(sweeps, kind="noise")
    with pytest.raises(ValueError, match="subset must be one of"):
        plots.confidence_per_kind(sweeps, subset="apple")
    with pytest.raises(ValueError, match="condition must be one of"):
        plots.reliability_diagram(reliability[0], condition="blur_0.5")
    with pytest.raises(ValueError, match="clean holds unknown variant"):
        plots.clean_metrics_bars(clean.replace({"variant": {"ls": "mixup"}}))
    with pytest.raises(ValueError, match="histories is empty"):
        plots.training_curves(make_histories().iloc[:0])
    with pytest.raises(ValueError, match="fig must be"):
        plots.save_figure(None, "x.png")
