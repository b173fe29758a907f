"""imlib.results: the result files' round trip and staleness check, Table 1 (formatted and as
numbers), summaries over seeds, and the histories and provenance of the runs behind them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imlib.results import (
    CLEAN_COLUMNS,
    METRICS,
    RELIABILITY_COLUMNS,
    SWEEP_COLUMNS,
    EvalResults,
    load_histories,
    load_results,
    run_provenance,
    run_settings,
    save_results,
    summarize,
    table1,
    table1_markdown,
    write_table1,
    write_tables,
)
from imlib.study import load_params
from imlib.train import IncompleteRunError, train


def tiny_study(root, **overrides):
    """The smoke profile shrunk to two-epoch runs of 3 synthetic classes, paper protocol."""
    values = {"runs_dir": str(root / "runs"), "variants": ["baseline", "im"], "seeds": [0],
              "protocols": ["paper"], "synthetic_per_class": 8, "synthetic_classes": 3,
              "epochs": 2, "device": "cpu", **overrides}
    return load_params("smoke", values)


def clean_table(values: dict[str, list[float]]) -> pd.DataFrame:
    """A clean-metrics table: per variant one row per seed, every metric from ``values``."""
    rows = [{"variant": v, "seed": s, **{m: x for m in METRICS}, "n": 100}
            for v, xs in values.items() for s, x in enumerate(xs)]
    return pd.DataFrame(rows)


def results_of(params) -> EvalResults:
    """Small tables in the saved layout for the runs of ``params``, with their settings."""
    runs = params.runs(params.protocol)
    clean = clean_table({run.variant: [0.5] for run in runs})
    sweeps = pd.DataFrame([{"variant": run.variant, "seed": run.seed, "kind": "blur",
                            "level": 0.0, "subset": "all", "order": "degrade_first",
                            "accuracy": 0.5, "confidence": 0.4, "nmi": 1.0, "n": 10}
                           for run in runs])
    reliability = pd.DataFrame([{"variant": run.variant, "seed": run.seed, "condition": "clean",
                                 "bin": 0, "lower": 0.0, "upper": 1.0, "count": 10,
                                 "confidence": 0.4, "accuracy": 0.5} for run in runs])
    return EvalResults(clean, sweeps, reliability, {"dataset": "synthetic"},
                       runs=[run_settings(run.config) for run in runs])


# --- files and staleness -------------------------------------------------------------------------


def test_results_round_trip(tmp_path):
    params = tiny_study(tmp_path)
    results = results_of(params)
    save_results(results, params.eval_dir, params={"profile": params.profile})
    loaded = load_results(params.eval_dir, params)
    for name, columns in (("clean", CLEAN_COLUMNS), ("sweeps", SWEEP_COLUMNS),
                          ("reliability", RELIABILITY_COLUMNS)):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(results, name)[list(columns)])
    assert loaded.settings == results.settings and loaded.runs == results.runs
    meta = json.loads((params.eval_dir / "meta.json").read_text())
    assert meta["params"] == {"profile": "smoke"} and "git_commit" in meta["provenance"]
    assert meta["runs"][1]["variant"] == "im" and meta["runs"][1]["epochs"] == 2
    assert (params.eval_dir / ".imlib-created").is_file()
    with pytest.raises(FileNotFoundError, match="04_evaluation"):
        load_results(tmp_path / "nowhere")


@pytest.mark.parametrize(("change", "match"), [
    ({"lr": 0.01}, r"lr: evaluated 0.001, profile 0.01"),
    ({"epochs": 3}, r"epochs: evaluated 2, profile 3"),
    ({"variants": ["baseline", "im", "ls"]}, "ls seed 0 was not evaluated"),
    ({"variants": ["baseline"]}, "im seed 0 is not in the profile"),
])
def test_a_stale_evaluation_is_refused_naming_the_fix(tmp_path, change, match):
    params = tiny_study(tmp_path)
    save_results(results_of(params), params.eval_dir)
    asked = tiny_study(tmp_path, **change)
    with pytest.raises(ValueError, match=match) as info:
        load_results(asked.eval_dir, asked)
    assert "./run_all.sh --only 04_evaluation" in str(info.value)
    assert str(asked.eval_dir) in str(info.value)


def test_the_device_does_not_make_an_evaluation_stale(tmp_path):
    params = tiny_study(tmp_path)
    save_results(results_of(params), params.eval_dir)
    load_results(params.eval_dir, tiny_study(tmp_path, device="auto"))


def test_concat_refuses_different_settings(tmp_path):
    results = results_of(tiny_study(tmp_path))
    other = EvalResults(results.clean, results.sweeps, results.reliability,
                        {**results.settings, "class_index": 1})
    both = EvalResults.concat([results, results])
    assert len(both.clean) == 2 * len(results.clean) and both.runs == 2 * results.runs
    with pytest.raises(ValueError, match="settings"):
        EvalResults.concat([results, other])


# --- the runs: histories and provenance ----------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny study whose two runs are trained (two epochs each)."""
    params = tiny_study(tmp_path_factory.mktemp("trained"))
    for run in params.runs():
        train(run.config)
    return params


def test_load_histories_reads_every_epoch_of_every_run(trained):
    df = load_histories(trained)
    assert list(df.columns[:3]) == ["variant", "seed", "epoch"]
    assert list(df.variant) == ["baseline", "baseline", "im", "im"]
    assert list(df.epoch) == [1, 2, 1, 2] and (df.seed == 0).all()
    for run in trained.runs():
        lines = (run.dir / "history.jsonl").read_text().splitlines()
        expected = [json.loads(line)["train_loss"] for line in lines]
        np.testing.assert_allclose(df[df.variant == run.variant].train_loss, expected)


def test_load_histories_refuses_runs_the_profile_does_not_ask_for(trained):
    with pytest.raises(IncompleteRunError, match="not trained yet"):
        load_histories(tiny_study(trained.runs_root.parent, variants=["ls"]))
    with pytest.raises(IncompleteRunError, match="epochs"):
        load_histories(tiny_study(trained.runs_root.parent, epochs=3))


def test_a_damaged_history_line_is_named(tmp_path):
    params = tiny_study(tmp_path, variants=["baseline"])
    run = params.runs()[0]
    train(run.config)
    path = run.dir / "history.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0][: len(lines[0]) // 2], *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=rf"{path}, line 1, is not a JSON record"):
        load_histories(params)


def test_run_provenance_is_that_of_each_result_file(trained):
    table = run_provenance(trained.runs())
    assert list(table.columns) == ["run", "git_commit", "created"]
    assert list(table.run) == ["paper/baseline/seed0", "paper/im/seed0"]
    for run, row in zip(trained.runs(), table.itertuples(), strict=True):
        origin = json.loads((run.dir / "result.json").read_text())["provenance"]
        assert (row.git_commit, row.created) == (origin["git_commit"], origin["created"])


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
                                   "Brier", "ECE (paper script)", "n seeds"]
    assert list(table.Model) == ["Baseline", "LS", "IM"]
    assert table.loc["baseline", "Top-1 Acc (%)"] == "55.43 ± 0.00"
    assert table.loc["ls", "Top-1 Acc (%)"] == "55.00 ± 7.07"
    assert table.loc["im", "ECE"] == "0.6324 ± 0.0000"
    assert list(table["n seeds"]) == [2, 2, 2]
    lines = table1_markdown(df).splitlines()
    assert lines[0].startswith("| Model | Top-1 Acc (%) |") and len(lines) == 5


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
    assert meta["files"] == {"nmi_vs_level.csv": ["kind", "mean"]}
    assert "git_commit" in meta["provenance"]
    with pytest.raises(ValueError, match="tables"):
        write_tables({}, tmp_path)
    with pytest.raises(ValueError, match="names"):
        write_tables({"../x": table}, tmp_path)
