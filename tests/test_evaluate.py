"""imlib.evaluate: predictions, sweeps (both evaluation orders), reliability and a study's
evaluation against computations done by hand here (CPU, tiny data)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import minimize_scalar
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

import imlib.evaluate as evaluate_module
import imlib.results as results_module
from imlib.data import denormalize, holdout_split, normalize, synthetic
from imlib.degradations import KIND_SPECS, KINDS, LEVELS, PAPER_EVAL, degrade
from imlib.evaluate import (
    _degrade_all,
    predict,
    reliability_table,
    sweep_model,
    sweep_models_together,
)
from imlib.metrics import METRICS, classification_metrics, ece
from imlib.models import small_cnn
from imlib.nmi import nmi
from imlib.results import (ORDERS, SWEEP_COLUMNS, EvalSettings, eval_settings,
                           load_results, save_results, stale_runs, summarize)
from imlib.runs import IncompleteRunError, RunFiles, load_model
from imlib.study import load_params
from imlib.study_evaluation import evaluate_study, update_evaluation
from imlib.train import train
from oracles import retrained


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
    return sweep_model(cnn, data, EvalSettings(batch_size=8))


def by_hand(model, x_float, data):
    with torch.no_grad():
        return torch.softmax(model.eval()(normalize(x_float, data.mean, data.std)), dim=1)


# --- predict, clean metrics ----------------------------------------------------------------------


def test_the_sweep_levels_run_from_the_clean_image_to_no_information(data):
    """The sweep's levels span the documented strengths: d = 0 leaves every kind's image as it
    is (up to blur's sigma of 0.01 px), d = 1 leaves mosaic one colour and dropout nothing, and
    mosaic's blocks b = floor(32 (d + 0.001)^2) are one pixel up to d = 0.2 and 8 x 8 at 0.5."""
    x = data.x_test.float() / 255
    assert LEVELS[0] == 0.0 and LEVELS[-1] == 1.0 and len(LEVELS) == 11
    for kind in KINDS:
        torch.testing.assert_close(degrade(x, kind, LEVELS[0], config=PAPER_EVAL), x,
                                   atol=1e-5, rtol=0)
    assert degrade(x, "mosaic", LEVELS[-1], config=PAPER_EVAL).std(dim=(2, 3)).max() < 1e-6
    assert degrade(x, "dropout", LEVELS[-1], config=PAPER_EVAL).abs().max() == 0
    for level, block in ((0.1, 1), (0.2, 1), (0.5, 8)):
        mosaic = degrade(x, "mosaic", level, config=PAPER_EVAL)
        blocks = x.unfold(2, block, block).unfold(3, block, block).mean(dim=(-1, -2))
        expected = blocks.repeat_interleave(block, 2).repeat_interleave(block, 3)
        torch.testing.assert_close(mosaic, expected, atol=1e-5, rtol=0)


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


# --- the sweep -----------------------------------------------------------------------------------


def test_sweep_of_a_fixed_prediction_has_known_values(data):
    logits = [2.0, 0.0, 1.0]
    p = np.exp(logits) / np.exp(logits).sum()
    for class_index in (0, 1):
        df = sweep_model(FixedLogits(logits), data,
                               EvalSettings(levels=(0.0, 0.5, 1.0), class_index=class_index))
        every, one = df[df.subset == "all"], df[df.subset == "class"]
        # Balanced labels: a third of the images are of class 0, the argmax.
        np.testing.assert_allclose(every.accuracy, 1 / 3, atol=1e-6)
        np.testing.assert_allclose(every.confidence, p.mean(), atol=1e-6)
        np.testing.assert_allclose(one.accuracy, float(class_index == 0))
        np.testing.assert_allclose(one.confidence, p[class_index], atol=1e-6)
        assert (every.n == 18).all() and (one.n == 6).all()


def test_sweep_has_one_row_per_kind_level_and_subset(sweep, data):
    assert list(sweep.columns) == list(SWEEP_COLUMNS[2:])
    # class 0's first five test images, followed one by one (the test split cycles classes)
    images = [f"image {i}" for i in (data.y_test == 0).nonzero().squeeze(1)[:5].tolist()]
    assert len(sweep) == len(KINDS) * len(LEVELS) * (2 + 5)
    keys = sweep[["kind", "level", "subset"]].apply(tuple, axis=1)
    assert set(keys) == {(k, d, s) for k in KINDS for d in LEVELS
                         for s in ("all", "class", *images)}
    assert sweep[["accuracy", "confidence", "nmi"]].stack().between(0, 1).all()


def test_each_followed_image_reads_its_own_prediction(cnn, data):
    df = sweep_model(cnn, data,
                           EvalSettings(kinds=("mosaic",), levels=(0.5,), class_index=1))
    followed = df[df.subset.str.startswith("image ")]
    indices = (data.y_test == 1).nonzero().squeeze(1)[:5].tolist()
    assert list(followed.subset) == [f"image {i}" for i in indices] and (followed.n == 1).all()
    for i, row in zip(indices, followed.itertuples(), strict=True):  # one image at a time
        clean = data.x_test[i:i + 1].float() / 255
        probs = by_hand(cnn, degrade(clean, "mosaic", 0.5, config=PAPER_EVAL), data)
        assert row.confidence == pytest.approx(float(probs[0, 1]), abs=1e-5)
        assert row.accuracy == float(probs.argmax(1)[0] == 1)


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
    df = sweep_model(cnn, data,
                           EvalSettings(kinds=("mosaic",), levels=(0.5,), class_index=1))
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
    first = sweep_model(cnn, data, EvalSettings(**args, batch_size=4))
    pd.testing.assert_frame_equal(first, sweep_model(cnn, data, EvalSettings(**args,
                                                                                 batch_size=4)))
    pd.testing.assert_frame_equal(first, sweep_model(cnn, data, EvalSettings(**args)),
                                  atol=1e-5)
    other = sweep_model(cnn, data, EvalSettings(**args, sweep_seed=1))
    assert not np.allclose(first.nmi, other.nmi)  # the seed changes the noise and patches


def test_reliability_table_reproduces_the_ece(cnn, data):
    probs = by_hand(cnn, data.x_test.float() / 255, data)
    table = reliability_table(probs, data.y_test, n_bins=10)
    assert list(table.columns) == ["bin", "lower", "upper", "count", "confidence", "accuracy"]
    assert len(table) == 10 and table["count"].sum() == len(data.y_test)
    from_table = (table["count"] / table["count"].sum()
                  * (table.accuracy - table.confidence).abs()).sum()
    assert from_table == pytest.approx(float(ece(probs, data.y_test, n_bins=10)), abs=1e-6)


# --- a study: checkpoints to result tables -------------------------------------------------------


def tiny_study(root, **overrides):
    """The smoke profile shrunk to one-epoch runs of 3 synthetic classes, paper protocol."""
    values = {"runs_dir": str(root / "runs"), "variants": ["baseline", "im"],
              "ablations": [], "seeds": [0],
              "protocols": ["paper"], "synthetic_per_class": 8, "synthetic_classes": 3,
              "epochs": 1, "device": "cpu", **overrides}
    return load_params("smoke", values)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two one-epoch runs of a tiny study, evaluated at two levels."""
    params = tiny_study(tmp_path_factory.mktemp("study"))
    for run in params.runs():
        train(run.config)
    data = params.load_data()
    settings = dataclasses.replace(eval_settings(params, "paper"), levels=(0.0, 0.5))
    return params, data, evaluate_study(params, "paper", data, settings)


def test_evaluate_study_tables(study):
    params, data, results = study
    assert list(results.clean.variant) == ["baseline", "im"]
    assert (results.clean.seed == 0).all()
    model, _ = load_model(RunFiles(params.train_dir("paper", "im", 0)).best, "cpu")
    row = results.clean[results.clean.variant == "im"].iloc[0]
    probs = by_hand(model, data.x_test.float() / 255, data)
    # The temperature, fitted here on the run's holdout images by scipy's bounded search on
    # the NLL, and the ECE of the test predictions it scales (torchmetrics).
    config = params.train_config("paper", "im", 0)
    _, holdout = holdout_split(data.y_train, config.holdout_fraction, config.seed)
    held_out = by_hand(model, data.x_train[holdout].float() / 255, data).double().log()

    def holdout_nll(t: float) -> float:
        return float(torch.nn.functional.cross_entropy(held_out / t, data.y_train[holdout]))

    temperature = minimize_scalar(holdout_nll, bounds=(0.01, 100), method="bounded",
                                  options={"xatol": 1e-6}).x
    assert row["temperature"] == pytest.approx(temperature, rel=1e-3)
    scaled = torch.softmax(probs.double().log() / temperature, dim=1).float()
    assert row["ece_temperature"] == pytest.approx(float(multiclass_calibration_error(
        scaled, data.y_test, num_classes=data.num_classes, n_bins=15, norm="l1")), abs=1e-4)
    expected = classification_metrics(probs, data.y_test, scaled)
    assert row[list(METRICS)].to_dict() == pytest.approx(expected, abs=1e-4)
    # 2 models x kinds x 2 levels x (all, class, 5 images) x both orders
    assert len(results.sweeps) == 2 * len(KINDS) * 2 * 7 * len(ORDERS)
    assert list(results.sweeps.columns) == list(SWEEP_COLUMNS)
    rel = results.reliability
    assert set(rel.condition) == {"clean", "mosaic_0.5"} and len(rel) == 2 * 2 * 15
    counts = rel.groupby(["variant", "condition"])["count"].sum()
    assert (counts == len(data.y_test)).all()
    assert results.settings["class_name"] == data.classes[params.eval_class]
    assert results.settings["degradation"]["dropout_patch"] == PAPER_EVAL.dropout_patch


def test_evaluate_study_records_the_settings_of_the_runs_it_evaluated(study):
    params, _, results = study
    assert [(r["variant"], r["seed"]) for r in results.runs] == [("baseline", 0), ("im", 0)]
    for recorded, run in zip(results.runs, params.runs(), strict=True):
        assert recorded["epochs"] == run.config.epochs == 1
        assert recorded["lr"] == run.config.lr and recorded["dataset"] == "synthetic"


def test_the_evaluation_records_the_checkpoints_it_read(study):
    params, _, results = study
    for recorded, run in zip(results.runs, params.runs(), strict=True):
        data = RunFiles(run.dir).best.read_bytes()
        assert recorded["checkpoint"] == {"file": RunFiles(run.dir).best.name, "size": len(data),
                                          "sha256": hashlib.sha256(data).hexdigest()}


def test_a_study_is_evaluated_with_its_own_nmi_bins_and_batch(tmp_path, monkeypatch):
    """-p nmi_bins 32: the sweep's NMI is the 32-bin NMI of the same degraded images (it was
    64 whatever the runs trained with), and evaluation batches hold eval_batch_size images."""
    params = tiny_study(tmp_path, variants=["im"], nmi_bins=32, eval_batch_size=7)
    train(params.runs()[0].config)
    data = params.load_data()
    batches = []

    def recording(model, x, mean, std, batch_size):
        batches.append(batch_size)
        return real_predict(model, x, mean, std, batch_size)

    real_predict = evaluate_module._predict
    monkeypatch.setattr(evaluate_module, "_predict", recording)
    settings = dataclasses.replace(eval_settings(params, "paper"), kinds=("diffusion", "blur"),
                                   levels=(0.5,), orders=("degrade_first",))
    results = evaluate_study(params, "paper", data, settings)
    assert set(batches) == {7}
    assert results.eval_settings.nmi_bins == 32
    clean = data.x_test.float() / 255
    for kind in settings.kinds:
        degraded = _degrade_all(clean, kind, 0.5, settings.sweep_seed, settings.degradation)
        row = results.sweeps.query("kind == @kind and subset == 'all'").iloc[0]
        assert row.nmi == pytest.approx(float(nmi(clean, degraded, bins=32).mean()), abs=1e-6)
        assert row.nmi != pytest.approx(float(nmi(clean, degraded, bins=64).mean()), abs=1e-3)


def test_order_free_kinds_are_computed_once_and_equal_a_direct_sweep(study):
    """Blur and mosaic rows of normalize_first are copied from degrade_first; they must equal
    what sweeping the normalised images directly gives (the degradations are linear with rows
    summing to 1 and never clamp)."""
    params, data, results = study
    model, _ = load_model(RunFiles(params.train_dir("paper", "im", 0)).best, "cpu")
    ours = results.sweeps.query("variant == 'im' and order == 'normalize_first'")
    ours = ours.drop(columns=["variant", "seed"]).reset_index(drop=True)
    direct = sweep_model(model, data, EvalSettings(levels=(0.0, 0.5),
                                                   class_index=params.eval_class),
                         order="normalize_first")
    keys = ["kind", "level", "subset", "order", "n"]
    pd.testing.assert_frame_equal(ours[keys], direct[keys])
    linear = [k for k in KINDS if KIND_SPECS[k].linear]
    assert linear == ["blur", "mosaic"]  # per-sample matrices whose rows sum to 1, no clamp
    free = direct.kind.isin(linear).to_numpy()
    for column in ("accuracy", "confidence"):
        np.testing.assert_allclose(ours[column], direct[column], atol=1e-5)
    # NMI bins are floor(63 v): a float-rounding difference may move a pixel across a bin edge.
    np.testing.assert_allclose(ours.nmi[free], direct.nmi[free], atol=1e-3)
    np.testing.assert_allclose(ours.nmi[~free], direct.nmi[~free], atol=1e-6)
    copied = results.sweeps[results.sweeps.kind.isin(linear)]
    first, second = (copied[copied.order == o].drop(columns="order").reset_index(drop=True)
                     for o in ORDERS)
    pd.testing.assert_frame_equal(first, second)


def test_evaluate_study_refuses_runs_trained_with_other_settings(study):
    params, data, _ = study
    other = tiny_study(params.runs_root.parent, lr=0.01)
    with pytest.raises(IncompleteRunError, match="lr"):
        evaluate_study(other, "paper", data)


def test_evaluate_study_refuses_an_unfinished_run(study, tmp_path):
    _, data, _ = study
    unfinished = tiny_study(tmp_path, variants=["baseline"])
    run = unfinished.runs()[0]
    train(run.config)
    RunFiles(run.dir).result.unlink()  # as if killed before the end
    with pytest.raises(IncompleteRunError, match="unfinished"):
        evaluate_study(unfinished, "paper", data)


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


# --- a saved evaluation: reused when current, bound to its checkpoints, replaced whole ---------


def copied_study(study, root):
    """The study's trained runs copied into ``root``, to change them without touching the
    module's study; evaluated at two levels, in the degrade_first order only."""
    params, data, _ = study
    shutil.copytree(params.runs_root / "train", root / "runs" / "train")
    copy = tiny_study(root)
    settings = dataclasses.replace(eval_settings(copy, "paper"), levels=(0.0, 0.5),
                                   orders=("degrade_first",))
    return copy, data, settings


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file()}


def test_a_saved_evaluation_is_reused_and_only_a_changed_run_evaluated_again(study, tmp_path,
                                                                             capsys):
    params, data, settings = copied_study(study, tmp_path)
    folder = params.eval_dir("paper")
    first = update_evaluation(params, "paper", data, settings)
    assert "evaluated 2 models (no saved evaluation in" in capsys.readouterr().out
    before = digests(folder)
    again = update_evaluation(params, "paper", data, settings)
    assert f"reused 2 of 2 models from {folder}" in capsys.readouterr().out
    assert digests(folder) == before  # nothing written
    pd.testing.assert_frame_equal(again.sweeps, first.sweeps)

    im = next(run for run in params.runs() if run.variant == "im")
    retrained(im.dir)
    partial = update_evaluation(params, "paper", data, settings)
    said = capsys.readouterr().out.strip()
    assert said.endswith("reused 1 of 2 models from "
                         f"{folder}, re-evaluated 1 (im seed 0: its checkpoint changed "
                         "since it was evaluated (trained again?))"), said
    assert len(said.splitlines()) == 1
    assert digests(folder)["meta.json"] != before["meta.json"]
    # The rows of the partial re-evaluation are those a full evaluation gives.
    full = evaluate_study(params, "paper", data, settings)
    save_results(full, tmp_path / "full")
    full = load_results(tmp_path / "full")
    for table in ("clean", "sweeps", "reliability", "per_image"):
        pd.testing.assert_frame_equal(getattr(partial, table), getattr(full, table))
    assert partial.runs == full.runs  # the new checkpoint's digest recorded
    assert not partial.clean.equals(first.clean)  # im's model did change
    assert stale_runs(load_results(folder).runs, params, "paper") == {}


def test_other_evaluation_settings_evaluate_every_model_again(study, tmp_path, capsys):
    params, data, settings = copied_study(study, tmp_path)
    update_evaluation(params, "paper", data, settings)
    capsys.readouterr()
    update_evaluation(params, "paper", data, dataclasses.replace(settings, batch_size=5))
    assert "reused 2 of 2" in capsys.readouterr().out  # the batch changes no number
    update_evaluation(params, "paper", data, dataclasses.replace(settings, sweep_seed=1))
    folder = params.eval_dir("paper")
    assert (f"evaluated 2 models (the one in {folder} was made with other sweep_seed)"
            in capsys.readouterr().out)
    with pytest.raises(ValueError, match="settings must be an imlib.results.EvalSettings"):
        update_evaluation(params, "paper", data, {"sweep_seed": 1})


def test_a_checkpoint_from_another_run_is_refused_before_anything_is_written(study, tmp_path):
    params, data, settings = copied_study(study, tmp_path)
    update_evaluation(params, "paper", data, settings)
    before = digests(params.eval_dir("paper"))
    baseline, im = (RunFiles(params.train_dir("paper", v, 0)) for v in ("baseline", "im"))
    shutil.copy(baseline.best, im.best)
    with pytest.raises(IncompleteRunError, match=rf"run {im.folder}: best.pt holds another "
                       r"run's model \(variant 'baseline'; this folder's run has variant 'im'\)"):
        update_evaluation(params, "paper", data, settings)
    with pytest.raises(IncompleteRunError, match="another run's model"):
        evaluate_study(params, "paper", data, settings)
    assert digests(params.eval_dir("paper")) == before


def test_a_checkpoint_that_is_not_the_one_its_result_records_is_refused(study, tmp_path):
    params, data, settings = copied_study(study, tmp_path)
    files = RunFiles(params.train_dir("paper", "im", 0))
    result = json.loads(files.result.read_text())
    result["best_sha256"] = hashlib.sha256(files.best.read_bytes()).hexdigest()
    files.result.write_text(json.dumps(result))
    update_evaluation(params, "paper", data, settings)  # the recorded digest matches: accepted
    result["best_sha256"] = "0" * 64
    files.result.write_text(json.dumps(result))
    with pytest.raises(IncompleteRunError, match=rf"run {files.folder}: best.pt is not the file "
                       r"this run wrote \(its sha256 differs"):
        update_evaluation(params, "paper", data, settings)


def test_a_failed_save_leaves_the_old_evaluation_whole(study, tmp_path, monkeypatch):
    _, _, results = study
    folder = tmp_path / "eval"
    save_results(results, folder)
    (folder / ".imlib-created").write_text("{}")
    (folder / "cifar100c").mkdir()
    (folder / "cifar100c" / "cifar100c.csv").write_text("kept")
    before = digests(folder)

    def cut_short(tables, partial, *args):
        (partial / "clean_metrics.csv").write_text("variant\n")
        raise OSError("No space left on device")

    monkeypatch.setattr(results_module, "write_tables", cut_short)
    with pytest.raises(OSError, match="No space"):
        save_results(results, folder)
    assert digests(folder) == before and load_results(folder).runs == results.runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no partial folder left
    monkeypatch.undo()
    save_results(results, folder)  # a whole write keeps what else the folder held
    assert (folder / "cifar100c" / "cifar100c.csv").read_text() == "kept"
    assert (folder / ".imlib-created").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


# --- argument checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "name"), [
    (lambda m, d: sweep_model(m, d, EvalSettings(kinds=("noise",))), "kinds"),
    (lambda m, d: sweep_model(m, d, EvalSettings(levels=(0.0, 1.5))), "levels"),
    (lambda m, d: sweep_model(m, d, EvalSettings(levels=())), "levels"),
    (lambda m, d: sweep_model(m, d, EvalSettings(class_index=3)), "class_index"),
    (lambda m, d: sweep_model(m, d, EvalSettings(batch_size=0)), "batch_size"),
    (lambda m, d: sweep_model(m, d, {"nmi_bins": 32}), "settings"),
    (lambda m, d: predict(m, d.x_test[:0], d.mean, d.std), "x"),
    (lambda m, d: predict(m, d.x_test.float(), d.mean, d.std), "x"),  # not divided by 255
    (lambda m, d: reliability_table(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)),
     "probs"),
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
    return tuple(sweep_model(model, data, EvalSettings(**kwargs), order=order)
                 for order in ORDERS)


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
        sweep_model(model, data, EvalSettings(kinds=("dropout", "diffusion"),
                                                    levels=(1.0, 0.5)), order=order)
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
    row = sweep_model(cnn, data, EvalSettings(kinds=("diffusion",), levels=(0.3,),
                                                    sweep_seed=5), order="normalize_first").iloc[0]
    clean = data.x_test.float() / 255
    degraded = _degrade_all(normalize(clean, data.mean, data.std), "diffusion", 0.3, 5,
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


@pytest.mark.parametrize("call", [
    lambda m, d: sweep_model(m, d, order="degrade_last"),
    lambda m, d: sweep_model(m, d, order=None),
    lambda m, d: EvalSettings(orders=("normalise_first",)),
    lambda m, d: EvalSettings(orders=()),
])
def test_a_bad_order_raises_listing_the_orders(cnn, data, call):
    with pytest.raises(ValueError, match=r"order.*'degrade_first', 'normalize_first'"):
        call(cnn, data)


def test_sweeping_several_models_at_once_equals_each_alone(cnn):
    data = synthetic(4, num_classes=3, test_per_class=4)
    other = small_cnn(3)
    settings = EvalSettings(kinds=("diffusion", "dropout"), levels=(0.0, 0.6), sweep_seed=3,
                            batch_size=5)
    together = sweep_models_together([cnn, other], data, settings, order="normalize_first")
    for model, frame in zip((cnn, other), together, strict=True):
        alone = sweep_model(model, data, settings, order="normalize_first")
        pd.testing.assert_frame_equal(frame, alone)


@pytest.mark.parametrize("orders", [("normalize_first", "degrade_first"), ("normalize_first",)])
def test_the_per_image_table_averages_to_the_clean_metrics_and_the_sweeps(study, orders):
    """Its groups are training's order even when another order computes blur and mosaic first;
    without that order they are NaN, never a part of the kinds."""
    from imlib.intervals import calibration_error
    from imlib.results import PER_IMAGE_COLUMNS

    params, data, _ = study
    # diffusion depends on the order, mosaic does not (computed in the first order, copied)
    settings = dataclasses.replace(eval_settings(params, "paper"), kinds=("diffusion", "mosaic"),
                                   levels=(0.0, 0.2, 0.8), orders=orders)
    results = evaluate_study(params, "paper", data, settings)
    table = results.per_image
    assert list(table.columns) == list(PER_IMAGE_COLUMNS) and len(table) == 2 * len(data.y_test)
    if orders == ("normalize_first",):
        assert table[["degraded_correct", "mosaic_low_true_prob"]].isna().all().all()
        return
    for variant, rows in table.groupby("variant"):
        clean = results.clean.set_index("variant").loc[variant]
        assert rows.clean_correct.mean() == pytest.approx(clean.top1, abs=1e-6)
        assert rows.clean_nll.mean() == pytest.approx(clean.nll, abs=1e-4)
        values = torch.tensor(rows[["clean_top_prob", "clean_correct"]].to_numpy())[None]
        assert float(calibration_error(values, torch.ones(1, len(rows), dtype=torch.float64))
                     ) == pytest.approx(clean.ece, abs=1e-4)
        sweeps = results.sweeps.query("variant == @variant and order == 'degrade_first' "
                                      "and subset == 'all'")
        assert rows.degraded_correct.mean() == pytest.approx(
            sweeps[sweeps.level > 0].accuracy.mean(), abs=1e-4)
        mosaic = sweeps[sweeps.kind == "mosaic"].set_index("level").confidence
        assert rows.mosaic_low_true_prob.mean() == pytest.approx(mosaic[0.2], abs=1e-4)
        assert rows.mosaic_high_true_prob.mean() == pytest.approx(mosaic[0.8], abs=1e-4)
