"""Every notebook, executed headless on the smoke profile through run_all.sh's code path
(imlib.pipeline.run), with tiny sizes; then the files they promise, with sane numbers."""

from __future__ import annotations

import hashlib
import json
import time

import pandas as pd
import pytest
import torch

from imlib.execution import execute_until
from imlib.pipeline import NOTEBOOKS_DIR, notebooks, run
from imlib.degradations import degrade
from imlib.nmi import nmi
from imlib.verdicts import VERDICT_COLUMNS
from imlib.results import load_results
from oracles import retrained

# 32 NMI bins, not the default 64: every stage must read the run's own setting.
TINY = {"synthetic_per_class": 80, "synthetic_test_per_class": 10, "epochs": 4,
        "nmi_pairs": 32, "nmi_bins": 32, "device": "cpu", "seeds": [0]}


# 05 and 06 read saved results only: the study runs them with a device this machine lacks, as
# a laptop that redraws a GPU study's figures from runs copied from the server would.
SAVED_RESULTS_ONLY = ["05_figures", "06_reproduction_report"]
ABSENT_DEVICE = "cpu" if torch.cuda.is_available() else "cuda"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    overrides = {**TINY, "runs_dir": str(root / "runs"), "figures_dir": str(root / "figures")}
    with_models = [name for name in notebooks() if name not in SAVED_RESULTS_ONLY]
    params = run("smoke", overrides, only=with_models, log_output=False)
    run("smoke", {**overrides, "device": ABSENT_DEVICE}, only=SAVED_RESULTS_ONLY,
        log_output=False)
    return params, overrides


def test_all_six_notebooks_ran_in_order(study):
    params, _ = study
    assert notebooks() == ["01_theory", "02_nmi_validation", "03_training", "04_evaluation",
                           "05_figures", "06_reproduction_report"]
    for name in notebooks():
        executed = json.loads((params.runs_root / "notebooks" / f"{name}.ipynb").read_text())
        assert executed["metadata"]["papermill"]["parameters"]["profile"] == "smoke"
        assert not executed["metadata"]["papermill"]["exception"]


def test_every_protocol_and_variant_finished_training(study):
    params, _ = study
    assert params.protocols == ("paper", "reference-code")
    for protocol in params.protocols:
        for variant in params.variants_for(protocol):
            path = params.train_dir(protocol, variant, 0) / "result.json"
            result = json.loads(path.read_text())
            assert result["completed"] and result["config"]["epochs"] == TINY["epochs"]
    im_code = params.train_config("reference-code", "im", 0)
    assert (im_code.lr, im_code.batch_size, im_code.base_augment) == (5e-4, 128, False)


def test_clean_metrics_are_above_chance_and_in_range(study):
    params, _ = study
    clean = load_results(params.eval_dir("paper")).clean
    assert set(clean["variant"]) == set(params.variants_for("paper"))
    chance = 1 / params.num_classes
    assert (clean["top1"] > chance + 0.1).all(), clean
    assert ((clean["ece"] >= 0) & (clean["ece"] <= 1)).all()


def test_sweeps_hold_confidences_in_range_and_nmi_falling_with_level(study):
    params, _ = study
    sweeps = load_results(params.eval_dir("paper")).sweeps
    assert sweeps["confidence"].between(0, 1).all() and sweeps["accuracy"].between(0, 1).all()
    assert set(sweeps["order"]) == {"degrade_first", "normalize_first"}
    shown = sweeps[(sweeps["subset"] == "all") & (sweeps["order"] == "degrade_first")]
    nmi = shown.groupby(["kind", "level"])["nmi"].mean().unstack("kind")
    assert (nmi.loc[0.0] > 0.99).all()
    assert (nmi.diff().dropna() <= 1e-3).all().all(), nmi  # never rises with the level
    assert (nmi.loc[1.0] < nmi.loc[0.0] - 0.3).all()


@pytest.mark.parametrize("protocol", ["paper", "reference-code"])
def test_the_paper_figures_and_table_are_written(study, protocol):
    params = study[0]
    folder = params.figures(protocol)
    written = {p.name for p in folder.iterdir()}
    for prefix in ("fig1_", "fig2_", "fig3_", "fig4_", "fig5_", "class_information_vs_nmi"):
        files = [name for name in written if name.startswith(prefix) and name.endswith(".png")]
        assert files, f"no {prefix}*.png in {sorted(written)}"
        assert all((folder / f).stat().st_size > 10_000 for f in files)
    table = pd.read_csv(folder / "table1.csv")
    assert len(table) == len(params.variants_for(protocol))
    assert "Top-1 Acc (%)" in (folder / "table1.md").read_text()


def test_the_reproduction_report_ran_every_section(study):
    params, _ = study
    executed = json.loads(
        (params.runs_root / "notebooks" / "06_reproduction_report.ipynb").read_text())
    text = "".join("".join(cell["source"]) for cell in executed["cells"])
    for section in ("## 1 ·", "## 2 ·", "## 3 ·", "## 4 ·", "## 5 ·", "## 6 ·", "## 7 ·", "## 8 ·"):
        assert section in text
    outputs = [o for cell in executed["cells"] if cell["cell_type"] == "code"
               for o in cell["outputs"]]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    shown = "".join(next(o["data"]["text/html"] for o in outputs
                         if "measured as" in "".join(o.get("data", {}).get("text/html", ""))))
    assert "…" not in shown and "..." not in shown  # no cell cut
    assert "cannot be confirmed by this run" in json.dumps(outputs)
    assert "## Conclusion" in text
    # one seed: every testable claim says so, none is called reproduced
    verdicts = pd.read_csv(params.runs_root / "eval" / "verdicts.csv")
    assert list(verdicts.columns) == list(VERDICT_COLUMNS)
    assert set(verdicts["protocol"]) == set(params.protocols)
    assert set(verdicts["verdict"]) <= {"too few seeds (1)", "not testable on this data"}
    assert verdicts["verdict"].eq("too few seeds (1)").any()
    accuracies = verdicts[(verdicts["metric"] == "top1") & (verdicts["question"] == "paper")]
    accuracies = accuracies.dropna(subset=["difference"])
    assert all(f"{100 * d:+.1f}" in shown for d in accuracies["difference"])  # what the csv says


def test_every_stage_used_the_runs_nmi_bins(study):
    """TINY trains with 32 bins: the sweeps' NMI is nmi(..., bins=32) of the same images."""
    params, _ = study
    results = load_results(params.eval_dir("paper"), params, "paper")
    assert results.eval_settings.nmi_bins == 32
    data = params.load_data()
    rows = results.sweeps.query("order == 'degrade_first' and subset == 'all' "
                                     "and kind == 'mosaic' and level == 1.0")
    # mosaic is deterministic: the sweep degraded the same images the same way
    clean = data.x_test.float() / 255
    degraded = degrade(clean, "mosaic", 1.0, config=params.eval_degradation_config)
    expected = float(nmi(clean, degraded, bins=32).mean())
    assert rows["nmi"].to_numpy() == pytest.approx(expected, abs=1e-5)


def test_executed_notebooks_are_small_enough_to_read_and_share(study):
    sizes = {p.name: p.stat().st_size for p in (study[0].runs_root / "notebooks").glob("*.ipynb")}
    assert len(sizes) == 6 and max(sizes.values()) < 1.5e6 and sum(sizes.values()) < 4e6, sizes


def _outputs(params, name: str) -> list[dict]:
    executed = json.loads((params.runs_root / "notebooks" / f"{name}.ipynb").read_text())
    return [o for cell in executed["cells"] if cell["cell_type"] == "code"
            for o in cell["outputs"]]


@pytest.mark.parametrize("name", ["01_theory", "02_nmi_validation", "03_training",
                                  "04_evaluation", "05_figures", "06_reproduction_report"])
def test_executed_notebooks_hold_no_warnings_and_no_progress_widgets(study, name):
    outputs = _outputs(study[0], name)
    stderr = "".join("".join(o["text"]) for o in outputs if o.get("name") == "stderr")
    assert "Warning" not in stderr, stderr[:2000]
    widget = "application/vnd.jupyter.widget-view+json"
    widgets = [o for o in outputs if widget in o.get("data", {})]
    assert not widgets


def test_the_unrolled_step_and_the_static_explorer_are_shown(study):
    params, _ = study
    images = [o for o in _outputs(params, "03_training") if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the batch grid and the training curves
    text = json.dumps(_outputs(params, "03_training"))
    assert "before the step" in text and "after" in text
    pictures = [o for o in _outputs(params, "04_evaluation") if "image/png" in o.get("data", {})]
    assert len(pictures) >= 6


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_figures_and_report_run_on_a_machine_without_the_gpu_the_profile_names(study):
    params, _ = study
    for name in SAVED_RESULTS_ONLY:
        executed = json.loads((params.runs_root / "notebooks" / f"{name}.ipynb").read_text())
        assert executed["metadata"]["papermill"]["parameters"]["overrides"]["device"] == "cuda"
        assert not executed["metadata"]["papermill"]["exception"]
    assert (params.figures("paper") / "fig1_training_curves.png").stat().st_size > 10_000


def _digests(params) -> dict[str, str]:
    """The sha256 of every file of every protocol's evaluation folder."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for protocol in params.protocols
            for p in sorted(params.eval_dir(protocol).rglob("*")) if p.is_file()}


def _open_04(params, overrides) -> str:
    """Notebook 04 opened in a kernel and run up to its evaluation cell, as a reader does; what
    those cells print."""
    start = time.perf_counter()
    executed = execute_until(NOTEBOOKS_DIR / "04_evaluation.py", params, overrides,
                             "update_evaluation(")
    print(f"notebook 04 up to its evaluation: {time.perf_counter() - start:.1f} s")
    return "".join("".join(o.get("text", "")) for cell in executed.cells
                   if cell.cell_type == "code" for o in cell.outputs)


def test_notebook_04_reuses_the_saved_evaluation_and_redoes_only_a_retrained_run(study):
    """Last in this module: it changes a checkpoint of the study. One model retrained, notebook
    04 opened again in a kernel: the reference-code protocol's evaluation is reused as it was,
    byte for byte; the paper protocol's reuses every other model and evaluates the retrained
    one."""
    params, overrides = study
    models = {p: len(params.variants_for(p)) * len(params.seeds) for p in params.protocols}
    before = _digests(params)
    retrained(params.train_dir("paper", "im", 0))
    said = _open_04(params, overrides)
    n = models["paper"]
    assert (f"evaluation, paper protocol: reused {n - 1} of {n} models from "
            in said and "re-evaluated 1 (im seed 0: its checkpoint changed" in said), said
    n = models["reference-code"]
    assert f"evaluation, reference-code protocol: reused {n} of {n} models" in said
    after = _digests(params)
    changed = {path for path in before if after.get(path) != before[path]}
    paper, code = str(params.eval_dir("paper")), str(params.eval_dir("reference-code"))
    assert changed and all(path.startswith(paper) for path in changed)
    assert any(path.startswith(code) for path in before)  # compared, and unchanged
    load_results(params.eval_dir("paper"), params, "paper")  # current again
