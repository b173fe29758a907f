"""imlib.evaluate: predictions, sweeps (both evaluation orders), CIFAR-100-C metrics and tables
against computations done by hand here, and the result files' round trip (CPU, tiny data)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from imlib import evaluate, metrics
from imlib.data import CIFAR100C_SEVERITIES, denormalize, normalize, synthetic
from imlib.degradations import KINDS, PAPER_EVAL, degrade
from imlib.evaluate import (
    CORRUPTION_COLUMNS,
    CORRUPTION_SUMMARY_COLUMNS,
    LEVELS,
    ORDERS,
    SWEEP_COLUMNS,
    EvalResults,
    clean_metrics,
    corruption_metrics,
    corruption_summary,
    degradation_sweep,
    evaluate_study,
    load_histories,
    load_results,
    predict,
    reliability_table,
    save_results,
    summarize,
    table1,
    table1_markdown,
)
from imlib.io import append_jsonl
from imlib.metrics import classification_metrics, ece, topk_accuracy
from imlib.models import small_cnn
from imlib.nmi import nmi
from imlib.study import load_params
from imlib.train import load_model, train


class FixedLogits(nn.Module):
    """Ignores its input: every image gets the same logits, so accuracy and true-class
    confidence are known in closed form whatever the degradation."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a small shared CPU, two threads per process oversubscribe the
    cores and make these tiny batches many times slower (results do not change)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return synthetic(8, num_classes=3, test_per_class=6)  # 18 test images, 6 per class


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return small_cnn(3).eval()


@pytest.fixture(scope="module")
def sweep(cnn, data):
    return degradation_sweep(cnn, data, batch_size=8)


def by_hand(model, x_float, data):
    with torch.no_grad():
        return torch.softmax(model.eval()(normalize(x_float, data.mean, data.std)), dim=1)


# --- predict, clean metrics ----------------------------------------------------------------------


def test_levels_are_the_papers():
    assert LEVELS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def test_predict_is_softmax_of_the_normalised_images(cnn, data):
    expected = by_hand(cnn, data.x_test.float() / 255, data)
    cnn.train()
    probs = predict(cnn, data.x_test, data.mean, data.std, batch_size=5)  # uint8, 4 batches
    assert cnn.training  # the caller's mode is restored
    cnn.eval()
    assert probs.dtype == torch.float32 and probs.device.type == "cpu"
    torch.testing.assert_close(probs, expected)
    floats = predict(cnn, data.x_test.float() / 255, data.mean, data.std)
    torch.testing.assert_close(floats, expected)


def test_clean_metrics_are_classification_metrics_of_the_predictions(cnn, data):
    expected = classification_metrics(by_hand(cnn, data.x_test.float() / 255, data), data.y_test)
    assert clean_metrics(cnn, data, batch_size=7) == pytest.approx(expected, abs=1e-6)


# --- the sweep -----------------------------------------------------------------------------------


def test_sweep_of_a_fixed_prediction_has_known_values(data):
    logits = [2.0, 0.0, 1.0]
    p = np.exp(logits) / np.exp(logits).sum()
    for class_index in (0, 1):
        df = degradation_sweep(FixedLogits(logits), data, levels=(0.0, 0.5, 1.0),
                               class_index=class_index)
        every, one = df[df.subset == "all"], df[df.subset == "class"]
        # Balanced labels: a third of the images are of class 0, the argmax.
        np.testing.assert_allclose(every.accuracy, 1 / 3, atol=1e-6)
        np.testing.assert_allclose(every.confidence, p.mean(), atol=1e-6)
        np.testing.assert_allclose(one.accuracy, float(class_index == 0))
        np.testing.assert_allclose(one.confidence, p[class_index], atol=1e-6)
        assert (every.n == 18).all() and (one.n == 6).all()


def test_sweep_has_one_row_per_kind_level_and_subset(sweep):
    assert list(sweep.columns) == list(SWEEP_COLUMNS[2:])
    assert len(sweep) == len(KINDS) * len(LEVELS) * 2
    keys = sweep[["kind", "level", "subset"]].apply(tuple, axis=1)
    assert set(keys) == {(k, d, s) for k in KINDS for d in LEVELS for s in ("all", "class")}
    assert sweep[["accuracy", "confidence", "nmi"]].stack().between(0, 1).all()


def test_level_zero_is_the_clean_test_set(sweep, cnn, data):
    probs = by_hand(cnn, data.x_test.float() / 255, data)
    accuracy = float((probs.argmax(1) == data.y_test).float().mean())
    confidence = float(probs[torch.arange(len(data.y_test)), data.y_test].mean())
    zero = sweep[(sweep.level == 0) & (sweep.subset == "all")]
    assert len(zero) == len(KINDS)
    np.testing.assert_allclose(zero.accuracy, accuracy, atol=1e-6)
    np.testing.assert_allclose(zero.confidence, confidence, atol=1e-5)
    np.testing.assert_allclose(zero.nmi, 1.0, atol=1e-5)  # non-constant images


def test_mosaic_nmi_falls_with_the_level(sweep):
    curve = sweep[(sweep.kind == "mosaic") & (sweep.subset == "all")].sort_values("level").nmi
    assert (np.diff(curve.to_numpy()) <= 1e-6).all()
    assert curve.iloc[-1] < 1e-6 < curve.iloc[5] < 0.99  # one block per image at d = 1


def test_class_subset_is_computed_on_the_class_images(cnn, data):
    df = degradation_sweep(cnn, data, kinds=("mosaic",), levels=(0.5,), class_index=1)
    row = df[df.subset == "class"].iloc[0]
    mine = data.y_test == 1
    clean = data.x_test[mine].float() / 255
    degraded = degrade(clean, "mosaic", 0.5, config=PAPER_EVAL)  # deterministic kind
    probs = by_hand(cnn, degraded, data)
    assert row.n == int(mine.sum())
    assert row.accuracy == pytest.approx(float((probs.argmax(1) == 1).float().mean()), abs=1e-6)
    assert row.confidence == pytest.approx(float(probs[:, 1].mean()), abs=1e-5)
    assert row.nmi == pytest.approx(float(nmi(clean, degraded).mean()), abs=1e-5)


def test_sweep_is_deterministic_and_independent_of_the_batch_size(cnn, data):
    args = dict(kinds=("diffusion", "dropout"), levels=(0.3, 0.6))
    first = degradation_sweep(cnn, data, **args, batch_size=4)
    pd.testing.assert_frame_equal(first, degradation_sweep(cnn, data, **args, batch_size=4))
    pd.testing.assert_frame_equal(first, degradation_sweep(cnn, data, **args), atol=1e-5)
    other = degradation_sweep(cnn, data, **args, seed=1)
    assert not np.allclose(first.nmi, other.nmi)  # the seed changes the noise and patches


def test_reliability_table_reproduces_the_ece(cnn, data):
    probs = by_hand(cnn, data.x_test.float() / 255, data)
    table = reliability_table(probs, data.y_test, n_bins=10)
    assert list(table.columns) == ["bin", "lower", "upper", "count", "confidence", "accuracy"]
    assert len(table) == 10 and table["count"].sum() == len(data.y_test)
    from_table = (table["count"] / table["count"].sum()
                  * (table.accuracy - table.confidence).abs()).sum()
    assert from_table == pytest.approx(float(ece(probs, data.y_test, n_bins=10)), abs=1e-6)


# --- a study: checkpoints to result files --------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two one-epoch runs of a tiny study, evaluated at two levels."""
    root = tmp_path_factory.mktemp("study")
    params = load_params("smoke", {"runs_dir": str(root / "runs"), "variants": ["baseline", "im"],
                                   "seeds": [0], "synthetic_per_class": 8,
                                   "synthetic_classes": 3, "epochs": 1, "device": "cpu"})
    for variant in params.variants:
        train(params.train_config(variant, 0))
    data = synthetic(8, num_classes=3)
    return params, data, evaluate_study(params, data, levels=(0.0, 0.5))


def test_evaluate_study_tables(study):
    params, data, results = study
    assert list(results.clean.variant) == ["baseline", "im"]
    assert (results.clean.seed == 0).all()
    model, _ = load_model(params.train_dir("im", 0) / "best.pt", "cpu")
    row = results.clean[results.clean.variant == "im"].iloc[0]
    assert row[list(evaluate.METRICS)].to_dict() == pytest.approx(clean_metrics(model, data))
    assert len(results.sweeps) == 2 * len(KINDS) * 2 * 2 * len(evaluate.ORDERS)  # both orders
    assert list(results.sweeps.columns) == list(SWEEP_COLUMNS)
    rel = results.reliability
    assert set(rel.condition) == {"clean", "mosaic_0.5"} and len(rel) == 2 * 2 * 15
    counts = rel.groupby(["variant", "condition"])["count"].sum()
    assert (counts == len(data.y_test)).all()
    assert results.settings["class_name"] == "class_0"
    assert results.settings["degradation"]["dropout_patch"] == PAPER_EVAL.dropout_patch


def test_results_round_trip(study, tmp_path):
    params, _, results = study
    save_results(results, tmp_path / "eval", params={"profile": params.profile})
    loaded = load_results(tmp_path / "eval")
    for name in ("clean", "sweeps", "reliability"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(results, name))
    assert loaded.settings == results.settings
    meta = json.loads((tmp_path / "eval" / "meta.json").read_text())
    assert meta["params"] == {"profile": "smoke"} and "git_commit" in meta["provenance"]
    with pytest.raises(FileNotFoundError, match="04_evaluation"):
        load_results(tmp_path / "nowhere")


def test_concat_refuses_different_settings(study):
    results = study[2]
    other = EvalResults(results.clean, results.sweeps, results.reliability,
                        {**results.settings, "class_index": 1})
    assert len(EvalResults.concat([results, results]).clean) == 2 * len(results.clean)
    with pytest.raises(ValueError, match="settings"):
        EvalResults.concat([results, other])


def test_load_histories(tmp_path):
    params = load_params("smoke", {"runs_dir": str(tmp_path)})  # variants baseline, ls, im
    with pytest.raises(FileNotFoundError, match="03_training"):
        load_histories(params)
    for variant in ("baseline", "im"):  # ls never trained: skipped
        for epoch in (1, 2):
            append_jsonl({"epoch": epoch, "train_loss": 1.0 / epoch, "test_acc": 0.1 * epoch},
                         params.train_dir(variant, 0) / "history.jsonl")
    df = load_histories(params)
    assert list(df.columns) == ["variant", "seed", "epoch", "train_loss", "test_acc"]
    assert list(df.variant) == ["baseline", "baseline", "im", "im"]
    assert list(df.epoch) == [1, 2, 1, 2] and (df.seed == 0).all()


# --- summaries and Table 1 -----------------------------------------------------------------------


def clean_table(values: dict[str, list[float]]) -> pd.DataFrame:
    """A clean-metrics table: per variant one row per seed, every metric from ``values``."""
    rows = [{"variant": v, "seed": s, **{m: x for m in evaluate.METRICS}, "n": 100}
            for v, xs in values.items() for s, x in enumerate(xs)]
    return pd.DataFrame(rows)


def test_summarize_is_mean_and_sample_std_over_seeds():
    rng = np.random.default_rng(0)
    df = clean_table({"im": list(rng.random(3)), "baseline": list(rng.random(2)),
                      "ls": [0.4]})
    out = summarize(df)
    assert list(out.variant) == ["baseline", "ls", "im"]
    groups = df.groupby("variant")
    for metric in evaluate.METRICS:
        expected_mean = groups[metric].mean()[out.variant].to_numpy()
        expected_std = groups[metric].std().fillna(0)[out.variant].to_numpy()
        np.testing.assert_allclose(out[f"{metric}_mean"], expected_mean)
        np.testing.assert_allclose(out[f"{metric}_std"], expected_std)
    assert list(out.n_seeds) == [2, 1, 3]
    assert out.loc[out.variant == "ls", "top1_std"].item() == 0.0


def test_summarize_refuses_groups_that_mix_conditions(sweep):
    with pytest.raises(ValueError, match="by="):
        summarize(sweep.assign(variant="im", seed=0), by=("variant",), metrics=("accuracy",))


def test_table1_formats_mean_and_std():
    df = clean_table({"im": [0.6324, 0.6324], "baseline": [0.5543, 0.5543], "ls": [0.5, 0.6]})
    table = table1(df)
    assert list(table.index) == ["baseline", "ls", "im"]
    assert list(table.columns) == ["Model", "Top-1 Acc (%)", "Top-5 Acc (%)", "ECE", "CE Loss",
                                   "Brier", "ECE (paper script)", "n seeds"]
    assert list(table.Model) == ["Baseline", "LS", "IM"]
    assert table.loc["baseline", "Top-1 Acc (%)"] == "55.43 ± 0.00"
    assert table.loc["ls", "Top-1 Acc (%)"] == "55.00 ± 7.07"
    assert table.loc["im", "ECE"] == "0.6324 ± 0.0000"
    assert list(table["n seeds"]) == [2, 2, 2]
    lines = table1_markdown(df).splitlines()
    assert lines[0].startswith("| Model | Top-1 Acc (%) |") and len(lines) == 5
    assert lines[2].startswith("| Baseline | 55.43 ± 0.00 | 55.43 ± 0.00 | 0.5543 ± 0.0000 |")


# --- argument checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "name"), [
    (lambda m, d: degradation_sweep(m, d, kinds=("noise",)), "kinds"),
    (lambda m, d: degradation_sweep(m, d, levels=(0.0, 1.5)), "levels"),
    (lambda m, d: degradation_sweep(m, d, levels=()), "levels"),
    (lambda m, d: degradation_sweep(m, d, class_index=3), "class_index"),
    (lambda m, d: degradation_sweep(m, d, batch_size=0), "batch_size"),
    (lambda m, d: predict(m, d.x_test[:0], d.mean, d.std), "x"),
    (lambda m, d: predict(m, d.x_test.float(), d.mean, d.std), "x"),  # not divided by 255
    (lambda m, d: reliability_table(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)),
     "probs"),
    (lambda m, d: summarize(pd.DataFrame()), "df"),
    (lambda m, d: summarize(clean_table({"im": [0.5]}), metrics=("accuracy",)), "df"),
])
def test_bad_arguments_raise_naming_them(cnn, data, call, name):
    with pytest.raises(ValueError, match=name):
        call(cnn, data)


# --- evaluation order: degrade then normalise (training's) vs normalise then degrade ------------


class Recorder(FixedLogits):
    """FixedLogits that keeps every batch it is given, to check what the model saw."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__(logits)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return super().forward(x)


def both_orders(model, data, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    return tuple(degradation_sweep(model, data, order=order, **kwargs) for order in ORDERS)


def test_orders_agree_for_the_linear_kinds_at_every_level(cnn, data):
    # Blur and mosaic average pixels with weights summing to 1: they commute with the
    # per-channel affine normalisation, so the paper script's order changes nothing for them.
    first, second = both_orders(cnn, data, kinds=("blur", "mosaic"))
    assert list(first.order.unique()) == ["degrade_first"]
    assert list(second.order.unique()) == ["normalize_first"]
    keys = ["kind", "level", "subset", "n"]
    pd.testing.assert_frame_equal(first[keys], second[keys])
    np.testing.assert_allclose(second.accuracy, first.accuracy, atol=1e-5)
    np.testing.assert_allclose(second.confidence, first.confidence, atol=1e-5)
    # NMI bins are floor(63 v): a float-rounding difference may move a pixel across a bin edge.
    np.testing.assert_allclose(second.nmi, first.nmi, atol=1e-3)


def test_orders_differ_for_diffusion_and_dropout(cnn, data):
    first, second = both_orders(cnn, data, kinds=("diffusion", "dropout"), levels=(0.5,))
    assert not np.allclose(first.confidence, second.confidence, atol=1e-5)
    assert (first.nmi - second.nmi).abs().max() > 1e-3


def test_normalize_first_feeds_the_paper_scripts_inputs(data):
    clean = normalize(data.x_test.float() / 255, data.mean, data.std)
    inputs = {}
    for order in ORDERS:
        model = Recorder([0.0, 1.0, 2.0])
        degradation_sweep(model, data, kinds=("dropout", "diffusion"), levels=(1.0, 0.5),
                          order=order)
        inputs[order] = model.inputs  # dropout 1, dropout 0.5, diffusion 1, diffusion 0.5
    # Dropout at d = 1 drops every patch: black in degrade_first, the mean colour (0 in
    # normalised units) when the normalised tensor is degraded.
    torch.testing.assert_close(inputs["degrade_first"][0], normalize(
        torch.zeros_like(clean), data.mean, data.std))
    assert torch.equal(inputs["normalize_first"][0], torch.zeros_like(clean))
    kept = inputs["normalize_first"][1] != 0  # dropout 0.5: the kept patches are untouched
    assert 0.3 < kept.float().mean() < 0.7
    torch.testing.assert_close(inputs["normalize_first"][1][kept], clean[kept])
    # Diffusion's final clamp to [0, 1] now acts on normalised values: no negatives survive,
    # where degrade_first's normalised inputs are negative wherever a pixel is below the mean.
    for diffused in inputs["normalize_first"][2:]:
        assert diffused.min() >= 0 and diffused.max() <= 1
    assert all(x.min() < -0.5 for x in inputs["degrade_first"][2:])


def test_normalize_first_nmi_is_taken_on_the_denormalised_image(cnn, data):
    row = degradation_sweep(cnn, data, kinds=("diffusion",), levels=(0.3,), seed=5,
                            order="normalize_first").iloc[0]
    clean = data.x_test.float() / 255
    degraded = evaluate._degrade_all(normalize(clean, data.mean, data.std), "diffusion", 0.3, 5,
                                     PAPER_EVAL)
    back = denormalize(degraded, data.mean, data.std).clamp(0, 1)
    assert row.nmi == pytest.approx(float(nmi(clean, back).mean()), abs=1e-6)
    probs = torch.softmax(cnn(degraded), dim=1).detach()
    assert row.confidence == pytest.approx(float(probs.gather(1, data.y_test[:, None]).mean()),
                                           abs=1e-5)


def test_level_zero_is_the_clean_image_in_both_orders(cnn, data):
    """Level 0 leaves even normalised (out-of-range) images as they are, diffusion included."""
    first, second = both_orders(cnn, data, levels=(0.0,))
    np.testing.assert_allclose(second.nmi, first.nmi, atol=1e-3)


def test_the_study_holds_both_orders_and_saves_them(study, tmp_path):
    _, _, results = study
    assert results.settings["orders"] == list(ORDERS)
    counts = results.sweeps.groupby("order").size()
    assert counts.to_dict() == {order: len(results.sweeps) // 2 for order in ORDERS}
    save_results(results, tmp_path, params=None)
    loaded = load_results(tmp_path).sweeps
    assert list(loaded.columns) == list(SWEEP_COLUMNS) and SWEEP_COLUMNS[5] == "order"
    assert set(loaded.order) == set(ORDERS)
    summary = summarize(loaded, ("order", "kind", "level", "subset", "variant"), ("accuracy",))
    assert list(summary.order.unique()) == list(ORDERS)


@pytest.mark.parametrize("call", [
    lambda m, d: degradation_sweep(m, d, order="degrade_last"),
    lambda m, d: degradation_sweep(m, d, order=None),
    lambda m, d: evaluate.evaluate_checkpoint("nowhere.pt", d, orders=("normalise_first",)),
    lambda m, d: evaluate.evaluate_checkpoint("nowhere.pt", d, orders=()),
])
def test_a_bad_order_raises_listing_the_orders(cnn, data, call):
    with pytest.raises(ValueError, match=r"order.*'degrade_first', 'normalize_first'"):
        call(cnn, data)


# --- CIFAR-100-C ---------------------------------------------------------------------------------

C_NAMES = ("gaussian_noise", "fog", "saturate")  # two of the benchmark's 15, one extra
C_IMAGES = 4  # per severity


@pytest.fixture(scope="module")
def small_c(tmp_path_factory, data):
    """CIFAR-100-C's layout: per corruption, uint8 (5 x 4, 32, 32, 3) HWC images, labels in
    0-2 (the 3 classes of the tiny models), severities stacked."""
    folder = tmp_path_factory.mktemp("CIFAR-100-C")
    rng = np.random.default_rng(0)
    for name in C_NAMES:
        np.save(folder / f"{name}.npy",
                rng.integers(0, 256, (5 * C_IMAGES, 32, 32, 3), dtype=np.uint8))
    np.save(folder / "labels.npy", rng.integers(0, 3, 5 * C_IMAGES))
    return folder


def test_corruption_metrics_are_imlib_metrics_of_the_predictions(cnn, data, small_c):
    df = corruption_metrics(cnn, small_c, data.mean, data.std, C_NAMES, batch_size=3)
    assert list(df.columns) == list(CORRUPTION_COLUMNS)
    assert list(zip(df.corruption, df.severity, strict=True)) == [
        (c, s) for c in C_NAMES for s in CIFAR100C_SEVERITIES]
    labels = torch.from_numpy(np.load(small_c / "labels.npy"))
    for row in df[df.corruption == "fog"].itertuples():
        rows = slice((row.severity - 1) * C_IMAGES, row.severity * C_IMAGES)
        x = torch.from_numpy(np.load(small_c / "fog.npy")[rows]).permute(0, 3, 1, 2)
        probs = by_hand(cnn, x.float() / 255, data)
        y = labels[rows]
        assert row.n == C_IMAGES
        assert row.accuracy == pytest.approx(float(topk_accuracy(probs, y)), abs=1e-6)
        assert row.nll == pytest.approx(float(metrics.nll(probs, y)), abs=1e-5)
        assert row.ece == pytest.approx(float(ece(probs, y, n_bins=15)), abs=1e-6)


def test_corruption_metrics_of_a_fixed_prediction(data, small_c):
    df = corruption_metrics(FixedLogits([2.0, 0.0, 1.0]), small_c, data.mean, data.std,
                            ("fog",), severities=(2,))
    y = np.load(small_c / "labels.npy")[C_IMAGES:2 * C_IMAGES]
    p = np.exp([2.0, 0.0, 1.0]) / np.exp([2.0, 0.0, 1.0]).sum()
    row = df.iloc[0]
    assert row.accuracy == pytest.approx((y == 0).mean())
    assert row.nll == pytest.approx(-np.log(p[y]).mean(), abs=1e-5)
    assert row.ece == pytest.approx(abs((y == 0).mean() - p[0]), abs=1e-6)  # one bin


def test_corruption_metrics_refuse_a_model_with_too_few_classes(data, small_c):
    with pytest.raises(ValueError, match="CIFAR-100 model"):
        corruption_metrics(FixedLogits([0.0, 1.0]), small_c, data.mean, data.std, ("fog",))


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


def test_evaluate_corruptions_covers_every_model(study, small_c):
    params, data, _ = study
    df = evaluate.evaluate_corruptions(params, data, small_c, corruptions=("fog",),
                                       severities=(1, 5))
    assert list(df.columns) == ["variant", "seed", *CORRUPTION_COLUMNS]
    assert list(zip(df.variant, df.severity, strict=True)) == [
        ("baseline", 1), ("baseline", 5), ("im", 1), ("im", 5)]
    model, _ = load_model(params.train_dir("im", 0) / "best.pt", "cpu")
    expected = corruption_metrics(model, small_c, data.mean, data.std, ("fog",), (1, 5))
    pd.testing.assert_frame_equal(df[df.variant == "im"].drop(columns=["variant", "seed"])
                                  .reset_index(drop=True), expected)
    with pytest.raises(FileNotFoundError, match="03_training"):
        evaluate.evaluate_corruptions(params, data, small_c, checkpoint="nope.pt")
    with pytest.raises(FileNotFoundError, match="snow.npy is missing"):
        evaluate.evaluate_corruptions(params, data, small_c, corruptions=("snow",))
