"""imlib.results: the result files' round trip and staleness check, Table 1 (formatted and as
numbers), summaries over seeds, and the histories and provenance of the runs behind them."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import imlib.records as records_module
from imlib.histories import load_histories, run_provenance
from imlib.metrics import METRICS
from imlib.records import check_record, read_tables, write_record, write_tables
from imlib.results import (
    CLEAN_COLUMNS,
    PER_IMAGE_COLUMNS,
    RELIABILITY_COLUMNS,
    SWEEP_COLUMNS,
    EvalResults,
    EvalSettings,
    eval_settings,
    load_results,
    run_record,
    save_results,
    summarize,
    table1,
    table1_markdown,
    write_table1,
)
from imlib.nmi_study import load_nmi_study, save_nmi_study
from imlib.runs import IncompleteRunError, RunFiles
from imlib.study import load_params
from imlib.style import new_figure, save_figure
from imlib.train import train


def tiny_study(root, **overrides):
    """The smoke profile shrunk to two-epoch runs of 3 synthetic classes, paper protocol."""
    values = {"runs_dir": str(root / "runs"), "variants": ["baseline", "im"],
              "ablations": [], "seeds": [0],
              "protocols": ["paper"], "synthetic_per_class": 8, "synthetic_classes": 3,
              "epochs": 2, "device": "cpu", **overrides}
    return load_params("smoke", values)


def clean_table(values: dict[str, list[float]]) -> pd.DataFrame:
    """A clean-metrics table: per variant one row per seed, every metric from ``values``."""
    rows = [{"variant": v, "seed": s, **{m: x for m in METRICS}, "temperature": 1.5, "n": 100}
            for v, xs in values.items() for s, x in enumerate(xs)]
    return pd.DataFrame(rows)


def results_of(params) -> EvalResults:
    """Small tables in the saved layout for the runs of ``params``, with their settings."""
    runs = params.runs("paper")
    clean = clean_table({run.variant: [0.5] for run in runs})
    sweeps = pd.DataFrame([{"variant": run.variant, "seed": run.seed, "kind": "blur",
                            "level": 0.0, "subset": "all", "order": "degrade_first",
                            "accuracy": 0.5, "confidence": 0.4, "nmi": 1.0, "n": 10}
                           for run in runs])
    reliability = pd.DataFrame([{"variant": run.variant, "seed": run.seed, "condition": "clean",
                                 "bin": 0, "lower": 0.0, "upper": 1.0, "count": 10,
                                 "confidence": 0.4, "accuracy": 0.5} for run in runs])
    per_image = pd.DataFrame([{"variant": run.variant, "seed": run.seed,
                               **dict.fromkeys(PER_IMAGE_COLUMNS[2:], 0)} for run in runs])
    for run in runs:  # stand-ins for the checkpoints the evaluation read
        RunFiles(run.dir).folder.mkdir(parents=True, exist_ok=True)
        RunFiles(run.dir).best.write_bytes(f"weights of {run.name}".encode())
    settings = {"dataset": "synthetic", **eval_settings(params, "paper").to_dict()}
    return EvalResults(clean, sweeps, reliability, per_image, settings,
                       runs=[run_record(run.config, RunFiles(run.dir).best) for run in runs])


# --- files and staleness -------------------------------------------------------------------------


def test_results_round_trip(tmp_path):
    params = tiny_study(tmp_path)
    results = results_of(params)
    save_results(results, params.eval_dir("paper"), params={"profile": params.profile})
    loaded = load_results(params.eval_dir("paper"), params, "paper")
    for name, columns in (("clean", CLEAN_COLUMNS), ("sweeps", SWEEP_COLUMNS),
                          ("reliability", RELIABILITY_COLUMNS)):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(results, name)[list(columns)])
    assert loaded.settings == results.settings and loaded.runs == results.runs
    meta = json.loads((params.eval_dir("paper") / "meta.json").read_text())
    assert meta["params"] == {"profile": "smoke"} and "git_commit" in meta["provenance"]
    assert meta["runs"][1]["variant"] == "im" and meta["runs"][1]["epochs"] == 2
    with pytest.raises(FileNotFoundError, match="04_evaluation"):
        load_results(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="params and protocol together: give both"):
        load_results(params.eval_dir("paper"), params)  # which protocol's runs to check?


@pytest.mark.parametrize(("change", "match"), [
    ({"lr": 0.01}, r"lr: evaluated 0.001, profile 0.01"),
    ({"epochs": 3}, r"epochs: evaluated 2, profile 3"),
    ({"variants": ["baseline", "im", "ls"]}, "ls seed 0 was not evaluated"),
    ({"variants": ["baseline"]}, "im seed 0 is not in the profile"),
])
def test_a_stale_evaluation_is_refused_naming_the_fix(tmp_path, change, match):
    params = tiny_study(tmp_path)
    save_results(results_of(params), params.eval_dir("paper"))
    asked = tiny_study(tmp_path, **change)
    with pytest.raises(ValueError, match=match) as info:
        load_results(asked.eval_dir("paper"), asked, "paper")
    assert "./run_all.sh --only 04_evaluation" in str(info.value)
    assert str(asked.eval_dir("paper")) in str(info.value)


def test_the_device_does_not_make_an_evaluation_stale(tmp_path):
    params = tiny_study(tmp_path)
    save_results(results_of(params), params.eval_dir("paper"))
    load_results(params.eval_dir("paper"), tiny_study(tmp_path, device="auto"), "paper")


def test_concat_refuses_different_settings(tmp_path):
    results = results_of(tiny_study(tmp_path))
    other = EvalResults(results.clean, results.sweeps, results.reliability, results.per_image,
                        {**results.settings, "class_index": 0})
    both = EvalResults.concat([results, results])
    assert len(both.clean) == 2 * len(results.clean) and both.runs == 2 * results.runs
    with pytest.raises(ValueError, match="settings"):
        EvalResults.concat([results, other])


REMAKE = "./run_all.sh --only 04_evaluation"


def saved(root, **overrides):
    """A tiny study whose evaluation tables are saved; its params."""
    params = tiny_study(root, **overrides)
    save_results(results_of(params), params.eval_dir("paper"))
    return params


def refusal(call) -> str:
    with pytest.raises(ValueError) as refused:
        call()
    return str(refused.value)


def test_a_table_cut_short_is_refused_naming_it(tmp_path):
    """Whole rows missing (the file still parses): 3 of 11 verdicts flipped on such a file."""
    params = saved(tmp_path)
    path = params.eval_dir("paper") / "sweeps.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    folder = params.eval_dir("paper")
    for call in (lambda: load_results(folder), lambda: load_results(folder, params, "paper")):
        message = refusal(call)
        assert f"{path} is not the file meta.json records" in message and REMAKE in message
        assert "\n" not in message


def test_a_table_cut_mid_row_is_refused(tmp_path):
    """A row cut in the middle reads as NaN cells (Table 1 printed `nan`)."""
    params = saved(tmp_path)
    path = params.eval_dir("paper") / "clean_metrics.csv"
    path.write_bytes(path.read_bytes()[:-9])
    assert pd.read_csv(path).isna().any().any()  # what a reader would have taken
    assert str(path) in refusal(lambda: load_results(params.eval_dir("paper"), params, "paper"))


def test_an_evaluation_killed_while_saving_leaves_the_old_one(tmp_path, monkeypatch):
    """The new tables are written beside the old folder: a kill leaves it whole, no mix."""
    params = saved(tmp_path)
    newer = results_of(params)
    newer.clean["top1"] = 0.9
    written = []

    def killed_after_one_file(text, path):
        if written:
            raise KeyboardInterrupt  # the kill, before the second file
        written.append(path)
        real_write(text, path)

    real_write = records_module.atomic_write_text
    monkeypatch.setattr(records_module, "atomic_write_text", killed_after_one_file)
    with pytest.raises(KeyboardInterrupt):
        save_results(newer, params.eval_dir("paper"))
    monkeypatch.undo()
    assert written[0].name == "clean_metrics.csv"
    assert written[0].parent != params.eval_dir("paper")
    assert (load_results(params.eval_dir("paper"), params, "paper").clean["top1"] != 0.9).all()


@pytest.mark.parametrize(("change", "detail"), [
    ({"eval_class": 0}, "class_index: made with 1, profile 0"),  # the smoke profile's class 1
    ({"eval_degradation": "train"}, "degradation: made with"),
    ({"nmi_bins": 32}, "nmi_bins: made with 64, profile 32"),
    ({"im_max_eps": 0.8}, "max_eps: made with 0.9, profile 0.8"),
    ({"im_spread": "all"}, "spread: made with 'others', profile 'all'"),
])
def test_an_evaluation_made_with_other_settings_is_refused(tmp_path, change, detail):
    saved(tmp_path)
    asked = tiny_study(tmp_path, **change)
    message = refusal(lambda: load_results(asked.eval_dir("paper"), asked, "paper"))
    assert detail in message and REMAKE in message and str(asked.eval_dir("paper")) in message


def test_an_evaluation_of_checkpoints_trained_again_since_is_refused(tmp_path):
    params = saved(tmp_path)
    load_results(params.eval_dir("paper"), tiny_study(tmp_path, eval_batch_size=7),
                 "paper")  # changes no number
    RunFiles(params.runs()[1].dir).best.write_bytes(b"other weights")
    message = refusal(lambda: load_results(params.eval_dir("paper"), params, "paper"))
    assert "im seed 0: its checkpoint changed since it was evaluated" in message


def test_the_nmi_study_is_refused_when_missing_or_made_with_other_settings(tmp_path):
    """Notebook 06 showed a 3-class study's floor table for a 10-class run, and a bare
    FileNotFoundError when there was none."""
    params = tiny_study(tmp_path)
    with pytest.raises(FileNotFoundError, match="--only 02_nmi_validation"):
        load_nmi_study(params, ["eps"])
    eps = pd.DataFrame({"kind": ["blur", "mosaic"], "nmi": [0.5, 0.25], "eps": [0.5, 0.75]})
    save_nmi_study({"eps": eps}, params, {"levels": [0.0, 1.0]})
    pd.testing.assert_frame_equal(load_nmi_study(params, ["eps"])["eps"], eps)
    for change, detail in (({"synthetic_classes": 10}, "synthetic_classes: made with 3"),
                           ({"nmi_bins": 32}, "bins: made with 64, profile 32"),
                           ({"im_max_eps": 0.8}, "max_eps: made with 0.9"),
                           ({"nmi_pairs": 64}, f"images: made with {params.nmi_pairs}, "
                                                 "profile 64")):
        message = refusal(lambda c=change: load_nmi_study(tiny_study(tmp_path, **c), ["eps"]))
        assert detail in message and "--only 02_nmi_validation" in message
    path = params.nmi_dir / "eps.csv"
    path.write_bytes(path.read_bytes()[:-3])
    assert f"{path} is not the file" in refusal(lambda: load_nmi_study(params, ["eps"]))


def _figure():
    fig = new_figure(2, 2)
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_a_kill_while_saving_a_figure_leaves_the_previous_one(tmp_path, monkeypatch):
    """A kill during notebook 05 once left a 0-byte PNG."""
    path = save_figure(_figure(), tmp_path / "fig.png")
    before = path.read_bytes()

    def killed_mid_write(self, target, *args, **kwargs):
        png = io.BytesIO()
        accepted = {k: v for k, v in kwargs.items() if k in ("metadata", "pil_kwargs")}
        real_print(self, png, **accepted)  # (the dry run that measures a tight box stops here)
        if hasattr(target, "write"):
            target.write(png.getvalue()[:100])
        else:
            Path(target).write_bytes(png.getvalue()[:100])
        raise KeyboardInterrupt

    real_print = FigureCanvasAgg.print_png
    monkeypatch.setattr(FigureCanvasAgg, "print_png", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_figure(_figure(), path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_a_figures_folder_proves_its_files(tmp_path):
    names = [save_figure(_figure(), tmp_path / name).name for name in ("a.png", "b.png")]
    write_record(tmp_path, names, settings={"class_name": "apple"})
    assert check_record(tmp_path, names, "remake")["settings"] == {"class_name": "apple"}
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"b.png is not the file meta.json records.*remake"):
        check_record(tmp_path, names, "remake")
    with pytest.raises(ValueError, match="missing"):
        write_record(tmp_path, ["c.png"])


def test_eval_settings_are_the_profiles_and_are_validated(tmp_path):
    params = tiny_study(tmp_path, eval_class=2, nmi_bins=32, im_max_eps=0.8,
                        eval_batch_size=7, eval_degradation="train")
    settings = eval_settings(params, "paper")
    assert (settings.class_index, settings.nmi_bins, settings.max_eps, settings.batch_size) == (
        2, 32, 0.8, 7)
    assert settings.degradation == params.eval_degradation_config
    assert settings.spread == "others"
    reference = tiny_study(tmp_path, protocols=["paper", "reference-code"])
    assert eval_settings(reference, "reference-code").spread == "all"
    assert EvalSettings.from_dict({**settings.to_dict(), "dataset": "synthetic"}) == settings
    for bad, name in (({"nmi_bins": 1}, "nmi_bins"), ({"max_eps": 1.0}, "max_eps"),
                      ({"spread": "some"}, "spread"), ({"orders": ()}, "orders"),
                      ({"degradation": "train"}, "degradation")):
        with pytest.raises(ValueError, match=name):
            EvalSettings(**bad)


# --- the runs: histories and provenance ----------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny study whose two runs are trained (two epochs each)."""
    params = tiny_study(tmp_path_factory.mktemp("trained"))
    for run in params.runs():
        train(run.config)
    return params


def test_load_histories_reads_every_epoch_of_every_run(trained):
    df = load_histories(trained, "paper")
    assert list(df.columns[:3]) == ["variant", "seed", "epoch"]
    assert list(df.variant) == ["baseline", "baseline", "im", "im"]
    assert list(df.epoch) == [1, 2, 1, 2] and (df.seed == 0).all()
    for run in trained.runs():
        lines = (run.dir / "history.jsonl").read_text().splitlines()
        expected = [json.loads(line)["train_loss"] for line in lines]
        np.testing.assert_allclose(df[df.variant == run.variant].train_loss, expected)


def test_load_histories_refuses_runs_the_profile_does_not_ask_for(trained):
    with pytest.raises(IncompleteRunError, match="not trained yet"):
        load_histories(tiny_study(trained.runs_root.parent, variants=["ls"]), "paper")
    with pytest.raises(IncompleteRunError, match="epochs"):
        load_histories(tiny_study(trained.runs_root.parent, epochs=3), "paper")


def test_a_damaged_history_line_is_named(tmp_path):
    params = tiny_study(tmp_path, variants=["baseline"])
    run = params.runs()[0]
    train(run.config)
    path = RunFiles(run.dir).history
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0][: len(lines[0]) // 2], *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=rf"{path}, line 1: not a JSON record"):
        load_histories(params, "paper")


def _history_edits():
    """Ways a finished run's history can disagree with its result (two epochs trained)."""
    def cut_to_whole_lines(lines):
        return "".join(lines[:1])

    def interleaved(lines):  # two writers: every epoch twice
        return "".join(line for line in lines for _ in range(2))

    def torn_tail(lines):
        return "".join(lines) + lines[0][:10]

    def reordered(lines):
        return "".join(reversed(lines))

    return [cut_to_whole_lines, interleaved, torn_tail, reordered]


@pytest.mark.parametrize("edit", _history_edits(), ids=lambda f: f.__name__)
def test_a_history_that_does_not_match_the_result_is_refused(trained, tmp_path, edit):
    """06 must never select from a shortened or doubled history: the file is named."""
    params = tiny_study(tmp_path, variants=["baseline"])
    run = params.runs()[0]
    source = RunFiles(trained.runs()[0].dir)
    RunFiles(run.dir).folder.mkdir(parents=True)
    for path in (source.config, source.history, source.best, source.last, source.result):
        (RunFiles(run.dir).folder / path.name).write_bytes(path.read_bytes())
    history = RunFiles(run.dir).history
    load_histories(params, "paper")  # the copy is whole
    history.write_text(edit(history.read_text().splitlines(keepends=True)))
    with pytest.raises(IncompleteRunError, match=str(history)) as refused:
        load_histories(params, "paper")
    assert refused.value.reason == "damaged" and "--fresh" in str(refused.value)


def test_run_provenance_is_that_of_each_result_file(trained):
    table = run_provenance(trained.runs())
    columns = ["git_commit", "git_dirty", "git_diff_sha256", "created"]
    assert list(table.columns) == ["run", *columns]
    assert list(table.run) == ["paper/baseline/seed0", "paper/im/seed0"]
    for run, row in zip(trained.runs(), table.itertuples(), strict=True):
        origin = json.loads(RunFiles(run.dir).result.read_text())["provenance"]
        assert [getattr(row, c) for c in columns] == [origin[c] for c in columns]


# --- summaries and Table 1 -----------------------------------------------------------------------




def test_summarize_is_mean_and_sample_std_over_seeds():
    rng = np.random.default_rng(0)
    df = clean_table({"im": list(rng.random(3)), "baseline": list(rng.random(2)),
                      "ls": [0.4]})
    out = summarize(df)
    assert list(out.variant) == ["baseline", "ls", "im"]
    groups = df.groupby("variant")
    for metric in METRICS:
        expected_mean = groups[metric].mean()[out.variant].to_numpy()
        expected_std = groups[metric].std().fillna(0)[out.variant].to_numpy()
        np.testing.assert_allclose(out[f"{metric}_mean"], expected_mean)
        np.testing.assert_allclose(out[f"{metric}_std"], expected_std)
    assert list(out.n_seeds) == [2, 1, 3]
    assert out.loc[out.variant == "ls", "top1_std"].item() == 0.0


def test_summarize_refuses_groups_that_mix_conditions():
    sweep = pd.DataFrame({"variant": "im", "seed": 0, "kind": ["blur", "mosaic"],
                          "accuracy": [0.5, 0.6]})
    with pytest.raises(ValueError, match="by="):
        summarize(sweep, by=("variant",), metrics=("accuracy",))


def test_table1_formats_mean_and_std():
    df = clean_table({"im": [0.6324, 0.6324], "baseline": [0.5543, 0.5543], "ls": [0.5, 0.6]})
    table = table1(df)
    assert list(table.index) == ["baseline", "ls", "im"]
    assert list(table.columns) == ["Model", "Top-1 Acc (%)", "Top-5 Acc (%)", "ECE", "CE Loss",
                                   "Brier", "ECE (paper script)", "ECE after temperature scaling",
                                   "n seeds"]
    assert list(table.Model) == ["Baseline", "LS", "IM"]
    assert table.loc["baseline", "Top-1 Acc (%)"] == "55.43 ± 0.00"
    assert table.loc["ls", "Top-1 Acc (%)"] == "55.00 ± 7.07"
    assert table.loc["im", "ECE"] == "0.6324 ± 0.0000"
    assert list(table["n seeds"]) == [2, 2, 2]
    lines = table1_markdown(df).splitlines()
    assert lines[0].startswith("| Model | Top-1 Acc (%) |") and len(lines) == 5


def test_table1_shows_a_dash_where_a_metric_is_undefined():
    df = clean_table({"im": [0.6, 0.62], "baseline": [0.55, 0.56]})
    df.loc[df["variant"] == "im", "ece_temperature"] = float("nan")  # no holdout split
    table = table1(df)
    assert table.loc["im", "ECE after temperature scaling"] == "–"
    assert table.loc["baseline", "ECE after temperature scaling"] == "0.5550 ± 0.0071"


def test_table1_of_one_seed_shows_values_without_sd():
    table = table1(clean_table({"im": [0.6324], "ls": [0.5]}))
    assert table.loc["im", "Top-1 Acc (%)"] == "63.24" and table.loc["ls", "ECE"] == "0.5000"


@pytest.mark.parametrize("seeds", [1, 3])
def test_write_table1_writes_numbers_and_the_formatted_view(tmp_path, seeds):
    rng = np.random.default_rng(seeds)
    values = {"baseline": list(rng.random(seeds)), "im": list(rng.random(seeds))}
    clean = clean_table(values)
    paths = write_table1(clean, tmp_path / "figures", caption="Table 1, smoke.")
    assert [p.name for p in paths] == ["table1.csv", "table1.md"]
    numbers = pd.read_csv(tmp_path / "figures" / "table1.csv")
    assert list(numbers.variant) == ["baseline", "im"]
    for variant, xs in values.items():
        row = numbers[numbers.variant == variant].iloc[0]
        # percent, as printed, and rounded two digits past what table1.md shows
        assert row.top1_mean == pytest.approx(100 * np.mean(xs), abs=5e-5)
        assert row.nll_mean == pytest.approx(np.mean(xs), abs=5e-7)
        if seeds > 1:
            assert row.top1_sd == pytest.approx(100 * np.std(xs, ddof=1), abs=5e-5)
            assert row.n_seeds == seeds
        else:
            assert "n_seeds" not in numbers.columns
    assert any(c.endswith("_sd") for c in numbers.columns) == (seeds > 1)
    text = (tmp_path / "figures" / "table1.md").read_text()
    assert text.startswith("Table 1, smoke.\n\n| Model |")
    assert text.endswith(table1_markdown(clean))



def test_table1_leaves_out_top5_on_ten_classes_and_the_spread_of_one_seed():
    one_seed = clean_table({"baseline": [0.5], "im": [0.6]})
    table = table1(one_seed, num_classes=10)
    assert "Top-5 Acc (%)" not in table.columns and "n seeds" not in table.columns
    assert not table.apply(lambda col: col.astype(str).str.contains("±")).any().any()
    assert "Top-5 Acc (%)" in table1(one_seed, num_classes=100).columns
    several = table1(clean_table({"baseline": [0.5, 0.7], "im": [0.6, 0.6]}), num_classes=100)
    assert several.loc["baseline", "Top-1 Acc (%)"] == "60.00 ± 14.14"
    assert list(several["n seeds"]) == [2, 2]


def test_write_tables_writes_csv_and_meta(tmp_path):
    table = pd.DataFrame({"kind": ["blur", "mosaic"], "mean": [0.5, 0.25]})
    out = write_tables({"nmi_vs_level": table}, tmp_path / "nmi", {"seed": 0}, {"profile": "x"})
    pd.testing.assert_frame_equal(pd.read_csv(out / "nmi_vs_level.csv"), table)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["settings"] == {"seed": 0} and meta["params"] == {"profile": "x"}
    data = (out / "nmi_vs_level.csv").read_bytes()
    assert meta["files"] == {"nmi_vs_level.csv": {"size": len(data),
                                                  "sha256": hashlib.sha256(data).hexdigest()}}
    assert "git_commit" in meta["provenance"]
    tables, _ = read_tables(out, ["nmi_vs_level"], "remake", {"seed": 0})
    pd.testing.assert_frame_equal(tables["nmi_vs_level"], table)
    with pytest.raises(ValueError, match="tables"):
        write_tables({}, tmp_path)
    with pytest.raises(ValueError, match="names"):
        write_tables({"../x": table}, tmp_path)
