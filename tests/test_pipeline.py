"""The headless runner behind run_all.sh: validation before any notebook runs, --fresh that
deletes only what the profile wrote, one run per profile at a time, and failures."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import imlib.pipeline as pipeline
from imlib import study
from imlib.io import created_by_imlib, mark_created
from imlib.study import PROJECT_ROOT, load_params, profiles


def tmp_overrides(tmp_path: Path) -> dict:
    return {"runs_dir": str(tmp_path / "runs"), "figures_dir": str(tmp_path / "figures")}


def test_profiles_smoke_cpu_paper_exist_and_validate_offline_fields():
    assert {"smoke", "cpu", "paper"} <= set(profiles())
    smoke = load_params("smoke")
    assert smoke.training.dataset == "synthetic" and smoke.training.model == "small_cnn"
    out_dir = smoke.train_config("im", 0).out_dir
    assert out_dir.endswith(os.path.join("train", "paper", "im", "seed0"))


@pytest.fixture
def no_notebook_runs(monkeypatch):
    """Fail the test if validation lets a notebook start."""
    def refuse(name, *args, **kwargs):
        pytest.fail(f"notebook {name} ran although its parameters are invalid")

    monkeypatch.setattr(pipeline, "_execute", refuse)


def one_line_refusal(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("run_all.sh: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("args, message", [
    (["--profile", "nope"], "unknown profile 'nope'; available"),
    (["-p", "epoch", "3"], r"unknown parameter\(s\) \['epoch'\]; allowed"),
    (["-p", "epochs", "-1"], "epochs must be"),
    (["-p", "variants", "[im, mixup]"], "variants must be"),
    (["-p", "seeds", "[]"], "seeds must be"),
    (["-p", "seeds", "3"], "seeds must be a non-empty list"),
    (["-p", "seeds", "[0, 0]"], "seeds must be distinct"),
    (["-p", "seeds", "[0,"], r"cannot read the value '\[0,'"),
    (["-p", "runs_dir", "null"], "runs_dir must be"),
    (["-p", "lr", ".nan"], "lr must be a finite number"),
    (["-p", "nmi_pairs", "0"], "nmi_pairs must be"),
    (["-p", "synthetic_classes", "1"], "synthetic_classes must be"),
    (["-p", "amp", "maybe"], "amp must be"),
    (["-p", "cifar100c_dir", "5"], "cifar100c_dir"),
    (["-p", "eval_class", "10"], "eval_class must lie in"),
    (["-p", "device", "tpu"], "device must be"),
    (["--only", "99_nope"], r"unknown notebook\(s\) \['99_nope'\]"),
])
def test_bad_parameters_give_one_line_and_exit_2_before_any_notebook(
        tmp_path, capsys, no_notebook_runs, args, message):
    folders = ["-p", "figures_dir", str(tmp_path / "figures")]
    if "runs_dir" not in args:
        folders += ["-p", "runs_dir", str(tmp_path / "runs")]
    err = one_line_refusal(capsys, pipeline.main(args + folders))
    assert re.search(message, err), err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, message", [
    ("profile: broken\nseeds: [0, 1\nvariants: [im]\n", r"broken.yaml: YAML syntax error at line"),
    ("", "empty.yaml is empty"),
    ("# only a comment\n", "empty.yaml is empty"),
])
def test_a_broken_or_empty_profile_file_is_named(tmp_path, monkeypatch, capsys, no_notebook_runs,
                                                 text, message):
    name = "broken" if "broken" in message else "empty"
    (tmp_path / f"{name}.yaml").write_text(text)
    monkeypatch.setattr(study, "PROFILES_DIR", tmp_path)
    err = one_line_refusal(capsys, pipeline.main(["--profile", name]))
    assert re.search(message, err), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_profile_on_a_machine_without_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pipeline.run("smoke", {**tmp_overrides(tmp_path), "device": "cuda"})


def test_cifar_profile_without_cifar_is_refused_with_directions(tmp_path, monkeypatch):
    monkeypatch.setenv("IMLIB_DATA", str(tmp_path / "empty"))

    def unreachable(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(ValueError, match="cifar-100-python.tar.gz"):
        pipeline.run("cpu", tmp_overrides(tmp_path))
    assert not (tmp_path / "runs").exists()


def test_a_failing_notebook_is_named_with_its_cell_and_executed_copy(tmp_path, monkeypatch,
                                                                    capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "01_fine.py").write_text(
        '# %% tags=["parameters"]\nprofile = "smoke"\noverrides = {}\n\n'
        '# %%\nimport os\nassert os.environ["TQDM_DISABLE"] == "1"\nprint("cell output")\n')
    (notebooks / "02_broken.py").write_text(
        '# %% tags=["parameters"]\nprofile = "smoke"\noverrides = {}\n\n'
        '# %%\nraise RuntimeError("planted failure")\n')
    (notebooks / "03_never.py").write_text('# %%\nraise SystemExit("must not run")\n')
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", notebooks)
    platform_dirs = os.environ.get("JUPYTER_PLATFORM_DIRS")
    with pytest.raises(pipeline.NotebookFailed, match="notebook 02_broken failed") as failure:
        pipeline.run("smoke", tmp_overrides(tmp_path), log_output=False)
    executed = tmp_path / "runs" / "notebooks"
    assert "planted failure" in str(failure.value)
    assert str(executed / "02_broken.ipynb") in str(failure.value)
    assert "planted failure" in (executed / "02_broken.ipynb").read_text()
    assert "cell output" in (executed / "01_fine.ipynb").read_text()
    assert not (executed / "03_never.ipynb").exists()
    assert created_by_imlib(executed)
    # The terminal: one line per notebook, no cell output (that stays in the executed copy).
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and re.fullmatch(r"01_fine\s+\d+ s", lines[0]), lines
    assert re.fullmatch(r"02_broken\s+failed", lines[1]), lines
    assert os.environ.get("JUPYTER_PLATFORM_DIRS") == platform_dirs  # only the kernels' setting


def test_run_all_sh_reports_a_bad_profile_and_exits_2():
    """The shell entry point itself (its environment already exists when tests run)."""
    if not (PROJECT_ROOT / ".venv" / ".installed").exists() and not os.environ.get("CONDA_PREFIX"):
        pytest.skip("run_all.sh has not bootstrapped an environment here")
    done = subprocess.run([str(PROJECT_ROOT / "run_all.sh"), "--profile", "nope"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "unknown profile 'nope'" in done.stderr and "smoke" in done.stderr


def test_cli_parses_parameter_values_as_yaml(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_run(profile, overrides, fresh, only, log_output):
        seen.update(profile=profile, overrides=overrides, fresh=fresh, only=only)
        return load_params("smoke", tmp_overrides(tmp_path))

    monkeypatch.setattr(pipeline, "run", fake_run)
    code = pipeline.main(["--profile", "smoke", "-p", "epochs", "3", "-p", "seeds", "[0, 1]",
                          "-p", "amp", "true", "-p", "lr", "1e-3", "--fresh",
                          "--only", "05_figures"])
    assert code == 0
    assert seen == {"profile": "smoke", "fresh": True, "only": ["05_figures"],
                    "overrides": {"epochs": 3, "seeds": [0, 1], "amp": True, "lr": 0.001}}
    assert isinstance(seen["overrides"]["lr"], float)


# --- --fresh: only what this profile's selected notebooks wrote --------------------------------


@pytest.fixture
def fake_checkout(tmp_path, monkeypatch):
    """A checkout with history and uncommitted work, as the project root."""
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (checkout / "uncommitted.py").write_text("work = 1\n")
    monkeypatch.setattr(study, "PROJECT_ROOT", checkout)
    return checkout


def every_file(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("args", [
    ["-p", "runs_dir", "."],
    ["-p", "runs_dir", ".."],
    ["-p", "figures_dir", "."],
    ["-p", "runs_dir", "runs"],          # holds the cpu and paper profiles' runs
    ["-p", "figures_dir", "paper_figures/cpu"],
])
def test_fresh_refuses_the_checkout_or_another_profiles_folder_and_deletes_nothing(
        fake_checkout, capsys, no_notebook_runs, args):
    mark_created(fake_checkout / "runs" / "cpu" / "train" / "paper" / "im" / "seed0")
    before = every_file(fake_checkout.parent)
    err = one_line_refusal(capsys, pipeline.main(["--fresh", "--only", "01_theory", *args]))
    assert "--fresh refuses" in err
    assert every_file(fake_checkout.parent) == before


def make_outputs(params) -> list[Path]:
    """Every folder a full run of ``params`` writes, marked as imlib's, each with a file."""
    folders = [folder for name in pipeline.notebooks() for folder in pipeline.outputs(params, name)]
    for folder in [*folders, params.runs_root / "notebooks"]:
        mark_created(folder)
        (folder / "result.json").write_text("{}")
    return folders


def test_fresh_deletes_only_the_selected_protocols_marked_folders(fake_checkout, monkeypatch,
                                                                  capsys):
    ran = []
    monkeypatch.setattr(pipeline, "_execute", lambda name, *args: ran.append(name))
    smoke = load_params("smoke")
    assert set(smoke.protocols) == {"paper", "reference-code"}
    make_outputs(smoke)
    cpu_run = load_params("cpu").runs()[0].dir
    mark_created(cpu_run)
    root = smoke.runs_root
    unselected_seed = root / "train" / "paper" / "im" / "seed7"
    mark_created(unselected_seed)
    unmarked = smoke.train_dir("baseline", smoke.seeds[0])
    (unmarked / ".imlib-created").unlink()
    stale = unmarked / ".last.pt.abcd1234.tmp"
    stale.write_bytes(b"half a checkpoint")

    pipeline.run("smoke", {"protocols": ["paper"]}, fresh=True)

    paper = smoke.for_protocol("paper")
    gone = [run.dir for run in smoke.runs("paper") if run.dir != unmarked]
    gone += [paper.eval_dir, paper.figures, smoke.nmi_dir]
    assert not any(folder.exists() for folder in gone)
    kept = [run.dir for run in smoke.runs("reference-code")]
    kept += [smoke.for_protocol("reference-code").eval_dir,
             smoke.for_protocol("reference-code").figures, cpu_run, unselected_seed, unmarked]
    assert all((folder / ".imlib-created").exists() or folder == unmarked for folder in kept)
    assert (unmarked / "result.json").exists()
    assert not stale.exists()  # an interrupted write's temporary, cleaned at start
    assert not (root / "notebooks" / "result.json").exists()  # executed copies start over
    assert created_by_imlib(root / "notebooks")
    assert (fake_checkout / "uncommitted.py").exists() and (fake_checkout / ".git").is_dir()
    assert ran == pipeline.notebooks()


@pytest.mark.parametrize("only, removed, stale_note", [
    ("05_figures", "figures", None),
    ("04_evaluation", "eval", "05_figures"),
    ("03_training", "train", "04_evaluation, 05_figures"),
    ("01_theory", None, None),
])
def test_fresh_only_deletes_what_that_notebook_writes(fake_checkout, monkeypatch, capsys,
                                                      only, removed, stale_note):
    monkeypatch.setattr(pipeline, "_execute", lambda *args: None)
    smoke = load_params("smoke")
    folders = make_outputs(smoke)
    pipeline.run("smoke", fresh=True, only=[only])
    under = {"figures": smoke.figures.parent, "eval": smoke.runs_root / "eval",
             "train": smoke.runs_root / "train"}.get(removed)
    for folder in folders:
        assert folder.exists() == (under not in folder.parents), folder
    assert (smoke.runs_root / "notebooks" / "result.json").exists()
    out = capsys.readouterr().out
    assert (stale_note is not None) == ("stale" in out)
    if stale_note:
        assert f"{stale_note} read what was deleted" in out


# --- one run of a profile at a time ---------------------------------------------------------

HOLDER = """
import sys, time
from imlib.io import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_of_the_same_profile_is_refused_naming_the_first(tmp_path, capsys,
                                                                       no_notebook_runs):
    runs = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(runs)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = pipeline.main(["--only", "01_theory", "-p", "runs_dir", str(runs),
                              "-p", "figures_dir", str(tmp_path / "figures")])
        err = one_line_refusal(capsys, code)
        assert f"in use by another run (pid {holder.pid} on" in err and "started" in err
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_cifar_profile_validates_for_redrawing_figures_only(monkeypatch, tmp_path):
    monkeypatch.setenv("IMLIB_DATA", str(tmp_path / "no-cifar-here"))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(
        OSError("offline")))
    params = pipeline.validate("paper", {}, ["05_figures"])
    assert params.training.device == "cuda"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pipeline.validate("paper", {}, ["03_training"])
    with pytest.raises(ValueError, match="needs CIFAR-100"):
        pipeline.validate("paper", {"device": "cpu"}, ["02_nmi_validation"])


def test_ctrl_c_exits_130_with_one_line_and_keeps_the_lock_free(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_execute", interrupted)
    folders = ["-p", "runs_dir", str(tmp_path / "runs"), "-p", "figures_dir", str(tmp_path / "f")]
    assert pipeline.main(["--only", "03_training", *folders]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("run_all.sh: interrupted")
    with pipeline.exclusive_lock(tmp_path / "runs"):  # released: a new run may start
        pass
