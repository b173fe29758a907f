"""The headless runner behind run_all.sh: validation before any notebook runs, folders owned
by one profile, --fresh that deletes only what the profile's runs created, one run per profile
at a time, and failures in one line that keep the last good executed notebook."""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import imlib.pipeline as pipeline
from pipeline_fixtures import (HOLDER, every_file, fake_executions, make_outputs, one_line_refusal,
                               tmp_args, tmp_overrides, write_notebooks)
from imlib import study
from imlib.execution import NotebookFailed
from imlib.io import PROJECT_ROOT, created_by, mark_created
from imlib.study import load_params, profiles


def test_profiles_smoke_cpu_paper_exist_and_validate_offline_fields():
    assert {"smoke", "cpu", "paper"} <= set(profiles())
    smoke = load_params("smoke")
    assert smoke.training.dataset == "synthetic" and smoke.training.model == "small_cnn"
    out_dir = smoke.train_config("paper", "im", 0).out_dir
    assert out_dir.endswith(os.path.join("train", "paper", "im", "seed0"))


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
    # YAML 1.2, as the README says: yes is a string, not YAML 1.1's true
    (["-p", "amp", "yes"], "amp must be true or false, got 'yes'"),
    (["-p", "cifar100c_dir", "5"], "cifar100c_dir"),
    (["-p", "eval_class", "10"], "eval_class must lie in"),
    (["-p", "device", "tpu"], "device must be"),
    (["--only", "99_nope"], r"unknown notebook\(s\) \['99_nope'\]"),
    # one profile per run: its file names the folders the pipeline validates and locks
    (["-p", "profile", "cpu"], "profile is not a parameter: choose the profile with --profile"),
    # a bare string where a list belongs is not read letter by letter
    (["-p", "degrade_kinds", "blur"], r"degrade_kinds must be a list, e\.g\. \[blur\]"),
    (["-p", "variants", "im"], r"variants must be a list, e\.g\. \[im\]"),
    (["-p", "protocols", "paper"], r"protocols must be a list, e\.g\. \[paper\]"),
    (["-p", "seeds", "0,1"], r"seeds must be a list, e\.g\. \[0,1\]"),
    # a setting the reference-code protocol pins is not silently replaced
    (["-p", "lr", "2e-3"], r"lr 0\.002: the reference-code protocol pins lr \(baseline, ls: "
                           r"0\.001; im: 0\.0005\).*-p protocols \"\[paper\]\""),
    (["-p", "batch_size", "64"], r"reference-code protocol pins batch_size \(baseline, ls, im: "
                                 r"128\)"),
    # data sets too small for the holdout or one batch, or too large for this machine's memory
    (["-p", "synthetic_per_class", "1"], "leaves no image per class to hold out"),
    (["-p", "synthetic_per_class", "2"], "leaves 10 training images, fewer than one batch of 128"),
    (["-p", "holdout_fraction", "0.99", "-p", "protocols", "[paper]"],
     "leaves 30 training images, fewer than one batch of 128"),
    (["-p", "synthetic_classes", "100000"], r"synthetic_classes 100000 .* needs about \d+\.\d GB"),
    # bounds where a value is meaningless or unaffordable
    (["-p", "nmi_bins", "100000"], r"nmi_bins must be at most 256 .*got 100000"),
    (["-p", "nmi_bins", "257"], r"nmi_bins must be at most 256"),
    (["-p", "nmi_bins", "256", "-p", "eval_batch_size", "100000000"],
     r"nmi_bins 256 with batches of 100000000 images needs about \d+\.\d GB for the NMI's joint "
     r"histograms; cpu has \d+\.\d GB available: lower -p eval_batch_size"),
    # paths are path strings: no list, no mapping (printed by type, never expanded)
    (["-p", "data_root", "[a, b]"], "data_root must be a folder \\(a path\\), got a list"),
    (["-p", "data_root", "{a: 1}"], "data_root must be a folder \\(a path\\), got a dict"),
    (["-p", "cifar100c_dir", "[x]"], "cifar100c_dir must be a folder \\(a path\\), got a list"),
    (["-p", "runs_dir", "[x]"], "runs_dir must be a folder \\(a path\\), got a list"),
    (["-p", "slurm", "{time: 60, time: 90}"], "line 1: duplicate key 'time'"),
    # a folder name the file system cannot hold
    (["-p", "runs_dir", "/tmp/" + "x" * 300], r"runs_dir /tmp/x+ has a folder name of 300 bytes, "
                                             r"over this file system's 255: give a shorter"),
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
    ("profile: broken\nseeds: [0]\nepochs: 2\nepochs: 3\n",
     r"broken.yaml: YAML syntax error at line 4: duplicate key 'epochs' \(first on line 3\)"),
    # "billion laughs": nested aliases refused while reading, before anything expands them
    ("profile: broken\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a]\n"
     "data_root: [*b, *b, *b, *b, *b, *b, *b]\n", r"broken.yaml: YAML syntax error at line 3: "
                                                 r"alias \*a refused"),
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


def test_a_slurm_study_on_a_machine_without_sbatch_is_refused_before_any_notebook(
        tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))  # no sbatch on PATH
    with pytest.raises(ValueError, match="launcher slurm needs SLURM's sbatch"):
        pipeline.validate("smoke", {**tmp_overrides(tmp_path), "launcher": "slurm",
                                    "slurm": {"time": 30}})
    pipeline.validate("smoke", {**tmp_overrides(tmp_path), "launcher": "slurm",
                                "slurm": {"time": 30}}, ["05_figures"])  # 05 submits nothing


@pytest.fixture
def offline(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)


def test_cifar_profile_without_cifar_is_refused_with_directions(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("IMLIB_DATA", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="cifar-100-python.tar.gz"):
        pipeline.run("cpu", tmp_overrides(tmp_path))
    assert not (tmp_path / "runs").exists()


def test_the_cifar_message_names_the_data_root_the_run_would_use(tmp_path, monkeypatch, capsys,
                                                                  offline, no_notebook_runs):
    monkeypatch.setenv("IMLIB_DATA", str(tmp_path / "from-the-environment"))
    given = tmp_path / "given-with-p"
    given.mkdir()
    args = ["--profile", "cpu", "-p", "data_root", str(given), "-p", "device", "cpu"]
    err = one_line_refusal(capsys, pipeline.main(args + tmp_args(tmp_path)))
    assert f"neither in {given} nor downloadable" in err


@pytest.mark.parametrize("how", ["IMLIB_DATA", "data_root"])
def test_a_file_given_as_the_data_folder_is_called_a_file(tmp_path, monkeypatch, capsys,
                                                          no_notebook_runs, how):
    archive = tmp_path / "cifar-100-python.tar.gz"
    archive.write_bytes(b"not a folder")
    args = ["--profile", "cpu", "-p", "device", "cpu", *tmp_args(tmp_path)]
    if how == "IMLIB_DATA":
        monkeypatch.setenv("IMLIB_DATA", str(archive))
    else:
        args += ["-p", "data_root", str(archive)]
    err = one_line_refusal(capsys, pipeline.main(args))
    assert f"the data folder {archive} ({how}) is a file, not a folder" in err


def test_a_failing_notebook_is_named_with_its_cell_and_executed_copy(tmp_path, monkeypatch,
                                                                    capsys):
    notebooks = write_notebooks(tmp_path / "notebooks", {
        "01_fine": 'import os\nassert os.environ["TQDM_DISABLE"] == "1"\nprint("cell output")',
        "02_broken": 'raise RuntimeError("planted failure")',
        "03_never": 'raise SystemExit("must not run")'})
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", notebooks)
    platform_dirs = os.environ.get("JUPYTER_PLATFORM_DIRS")
    with pytest.raises(NotebookFailed, match="notebook 02_broken failed") as failure:
        pipeline.run("smoke", tmp_overrides(tmp_path), log_output=False)
    executed = tmp_path / "runs" / "notebooks"
    assert "planted failure" in str(failure.value) and "\n" not in str(failure.value)
    assert f"the failed copy: {executed / '02_broken.failed.ipynb'}" in str(failure.value)
    assert "planted failure" in (executed / "02_broken.failed.ipynb").read_text()
    assert not (executed / "02_broken.ipynb").exists()
    assert "cell output" in (executed / "01_fine.ipynb").read_text()
    assert not (executed / "03_never.ipynb").exists()
    assert created_by(executed) == "smoke"
    # The terminal: one line per notebook, no cell output (that stays in the executed copy).
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("-p ")]
    assert len(lines) == 2 and re.fullmatch(r"01_fine\s+\d+ s", lines[0]), lines
    assert re.fullmatch(r"02_broken\s+failed", lines[1]), lines
    assert os.environ.get("JUPYTER_PLATFORM_DIRS") == platform_dirs  # only the kernels' setting


def cell_error(ename: str, evalue: str) -> Exception:
    from papermill.exceptions import PapermillExecutionError

    return PapermillExecutionError(cell_index=3, exec_count=4, source="", ename=ename,
                                   evalue=evalue, traceback=[])


def dead_kernel() -> Exception:
    from nbclient.exceptions import DeadKernelError

    return DeadKernelError("Kernel died")


@pytest.mark.parametrize("error, message", [
    (dead_kernel, r"its kernel died \(killed, most often by the system for lack of memory\)"),
    (lambda: cell_error("OSError", "[Errno 28] No space left on device: 'runs/x/last.pt'"),
     r"disk full in \S+ \(\d+ MB free\); free space there"),
    (lambda: cell_error("RuntimeError", "[enforce fail at inline_container.cc:672] . unexpected "
                                        "pos 7424 vs 7312"), "disk full in"),
    (lambda: OSError(errno.ENOSPC, "No space left on device"), "disk full in"),  # the runner's
    (lambda: cell_error("OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB.\n"
                                            "GPU 0 has a total capacity of 79 GiB"),
     r"out of memory \(OutOfMemoryError\)"),
    (lambda: cell_error("RuntimeError", "[enforce fail at alloc_cpu.cpp:117] data. "
                                        "DefaultCPUAllocator: can't allocate memory: you tried "
                                        "to allocate 9 GB"), r"out of memory \(RuntimeError\)"),
    (lambda: cell_error("ValueError", "two\nlines"),
     r"failed in cell \[4\]: ValueError: two lines"),
], ids=["dead-kernel", "errno-28", "torch-save", "runner-disk-full", "cuda-oom", "cpu-oom",
        "cell-error"])
def test_a_failing_rerun_says_why_in_one_line_and_keeps_the_good_executed_notebook(
        tmp_path, monkeypatch, capsys, error, message):
    """No kernel runs: papermill is replaced by a stand-in that succeeds, then fails."""
    import papermill

    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", write_notebooks(tmp_path / "nb",
                                                                   {"01_step": "x = 1"}))
    outcome = {"raise": None}

    def execute(source, target, **kwargs):
        if outcome["raise"] is not None:
            Path(target).write_text("executed until it failed")
            raise outcome["raise"]
        Path(target).write_text("the good run")

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    assert pipeline.main(tmp_args(tmp_path)) == 0
    outcome["raise"] = error()
    capsys.readouterr()
    assert pipeline.main(tmp_args(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("run_all.sh: notebook 01_step ") and err.count("\n") == 1, err
    assert "Traceback" not in err and re.search(message, err), err
    executed = tmp_path / "runs" / "notebooks"
    assert f"the failed copy: {executed / '01_step.failed.ipynb'}" in err
    assert (executed / "01_step.ipynb").read_text() == "the good run"
    assert (executed / "01_step.failed.ipynb").read_text() == "executed until it failed"
    outcome["raise"] = None  # a later success replaces the good copy and drops the failed one
    assert pipeline.main(tmp_args(tmp_path)) == 0
    assert sorted(p.name for p in executed.glob("*.ipynb")) == ["01_step.ipynb"]


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

    def fake_run(profile, overrides, fresh, only, log_output, given):
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


@pytest.mark.parametrize("fresh", [[], ["--fresh"]])
@pytest.mark.parametrize("args, message", [
    (["-p", "runs_dir", "."], r"runs_dir \S+/checkout is the checkout or holds it"),
    (["-p", "runs_dir", ".."], r"runs_dir \S+ is the checkout or holds it"),
    (["-p", "figures_dir", "."], r"figures_dir \S+/checkout is the checkout or holds it"),
    (["-p", "runs_dir", "notebooks"], r"runs_dir \S+/checkout/notebooks lies in the checkout's "
                                      "source folder notebooks/"),
    (["-p", "figures_dir", "imlib/figures"], "lies in the checkout's source folder imlib/"),
    (["-p", "runs_dir", "tests/runs"], "lies in the checkout's source folder tests/"),
    (["-p", "runs_dir", "runs/cpu"],
     r"runs_dir's train/ \S+/runs/cpu/train is \S+/runs/cpu/train, a folder of profile 'cpu'"),
    # smoke's figures folder would hold the paper profile's figures folder
    (["-p", "figures_dir", "paper_figures"],
     r"figures_dir \S+/paper_figures holds \S+/paper_figures/(cpu|paper), a folder of profile"),
    # a figures folder that would hold another profile's run folders
    (["-p", "runs_dir", "r/c25", "-p", "figures_dir", "runs"],
     r"figures_dir \S+/runs holds \S+/runs/cpu/\w+, a folder of profile 'cpu'"),
    # this profile's own folders: figures in its training runs, its evaluation, its runs_dir
    (["-p", "runs_dir", "r/c26", "-p", "figures_dir", "r/c26/train"],
     r"figures_dir \S+/r/c26/train is \S+/r/c26/train, runs_dir's train/ \(03_training\): the "
     r"two would overwrite or delete each other's files; give -p figures_dir a folder of its own, "
     r"e\.g\. \S+/r/c26/figures"),
    (["-p", "runs_dir", "r/c27", "-p", "figures_dir", "r/c27/eval"],
     r"figures_dir \S+/r/c27/eval is \S+/r/c27/eval, runs_dir's eval/ \(04_evaluation\)"),
    (["-p", "runs_dir", "r/c28", "-p", "figures_dir", "r/c28/nmi/figs"],
     r"figures_dir \S+/r/c28/nmi/figs lies in \S+/r/c28/nmi, runs_dir's nmi/"),
    (["-p", "runs_dir", "r/c29", "-p", "figures_dir", "r/c29"],
     r"figures_dir \S+/r/c29 holds \S+/r/c29/train"),
    (["-p", "runs_dir", "r/c30/inside", "-p", "figures_dir", "r/c30"],
     r"figures_dir \S+/r/c30 holds \S+/r/c30/inside/train"),
    (["-p", "runs_dir", "r/c31", "-p", "figures_dir", "r/c31/jobs"], r"runs_dir's jobs/"),
    (["-p", "runs_dir", "r/c32", "-p", "figures_dir", "r/c32/notebooks"],
     r"runs_dir's notebooks/"),
])
def test_outputs_in_the_checkout_its_sources_or_another_profiles_folders_are_refused(
        fake_checkout, capsys, no_notebook_runs, fresh, args, message):
    """Refused on every run, not only with --fresh, before anything is written."""
    mark_created(fake_checkout / "runs" / "cpu" / "train" / "paper" / "im" / "seed0", "cpu")
    before = every_file(fake_checkout.parent)
    err = one_line_refusal(capsys, pipeline.main([*fresh, "--only", "01_theory", *args]))
    assert re.search(message, err), err
    assert every_file(fake_checkout.parent) == before


@pytest.mark.parametrize("linked", [False, True])
def test_fresh_never_deletes_the_users_files_in_folders_that_existed_before(
        tmp_path, monkeypatch, capsys, linked):
    """A runs_dir or figures_dir that existed before, or a symbolic link to one, may hold the
    user's files, in folders at the very paths a run writes: none is ever marked or deleted;
    what the runs created inside is."""
    mine = tmp_path / "my-folder"
    my_files = [mine / "notebooks" / "my_analysis.ipynb", mine / "nmi" / "my_nmi_notes.txt",
                mine / "train" / "paper" / "im" / "seed0" / "notes.txt",
                tmp_path / "myfigs" / "paper" / "my_figure.png"]
    for path in my_files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the user's")
    runs_dir = mine
    if linked:
        runs_dir = tmp_path / "runs" / "symrun"
        runs_dir.parent.mkdir()
        runs_dir.symlink_to(mine, target_is_directory=True)
    fake_executions(monkeypatch)
    args = ["-p", "runs_dir", str(runs_dir), "-p", "figures_dir", str(tmp_path / "myfigs"),
            "-p", "protocols", "[paper]"]
    assert pipeline.main(args) == 0  # creates and marks the folders it writes that were missing
    params = load_params("smoke", {"runs_dir": str(runs_dir), "protocols": ["paper"],
                                   "figures_dir": str(tmp_path / "myfigs")})
    made_by_the_run = params.train_dir("paper", "ls", 0)
    assert created_by(made_by_the_run) == "smoke"
    (made_by_the_run / "last.pt").write_text("a checkpoint")
    assert pipeline.main(["--fresh", *args]) == 0
    assert pipeline.main(["--fresh", "--only", "05_figures", *args]) == 0
    assert all(path.read_text() == "the user's" for path in my_files)
    assert not any(created_by(path.parent) for path in my_files)
    assert not (made_by_the_run / "last.pt").exists()
    assert "--fresh: kept" in capsys.readouterr().out


def test_fresh_refuses_a_symbolic_link_below_runs_dir_and_deletes_nothing(tmp_path, capsys,
                                                                         no_notebook_runs):
    elsewhere = tmp_path / "elsewhere"
    mark_created(elsewhere, "smoke")  # even a folder marked as the profile's own
    (elsewhere / "eps.csv").write_text("kept")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "nmi").symlink_to(elsewhere, target_is_directory=True)
    before = every_file(tmp_path)
    err = one_line_refusal(capsys, pipeline.main(["--fresh", *tmp_args(tmp_path)]))
    assert "--fresh refuses" in err and "nmi: a symbolic link" in err
    assert every_file(tmp_path) == before


@pytest.mark.parametrize("fresh", [[], ["--fresh"]])
def test_two_profiles_sharing_a_folder_are_refused_and_the_others_runs_survive(
        tmp_path, monkeypatch, capsys, fresh):
    fake_executions(monkeypatch)
    shared = ["-p", "runs_dir", str(tmp_path / "shared")]
    # The paper profile's figures redrawn into the shared folder (no GPU or data needed) ...
    assert pipeline.main(["--profile", "paper", "--only", "05_figures", *shared]) == 0
    paper = load_params("paper", {"runs_dir": str(tmp_path / "shared")})
    theirs = paper.figures("paper") / "fig1_training_curves.png"
    theirs.write_text("paper's figure")
    (paper.runs_root / "notebooks" / "05_figures.ipynb").write_text("paper's notebook")
    before = every_file(tmp_path)
    # ... so the smoke profile may not use that folder, with or without --fresh.
    err = one_line_refusal(capsys, pipeline.main([*fresh, *shared]))
    assert "was created by profile 'paper'" in err
    assert every_file(tmp_path) == before and theirs.read_text() == "paper's figure"


def test_fresh_refuses_a_folder_that_holds_another_profiles_folder(tmp_path, capsys,
                                                                   no_notebook_runs):
    params = load_params("smoke", tmp_overrides(tmp_path))
    nmi = params.nmi_dir
    mark_created(nmi, "smoke", params.runs_root, "02_nmi_validation")
    mark_created(nmi / "inside", "cpu")  # how it got there does not matter: it is not ours
    before = every_file(tmp_path)
    err = one_line_refusal(capsys, pipeline.main(["--fresh", "--only", "02_nmi_validation",
                                                  *tmp_args(tmp_path)]))
    assert "--fresh refuses" in err and "created by profile 'cpu'" in err
    assert every_file(tmp_path) == before


def test_fresh_deletes_only_the_selected_protocols_marked_folders(fake_checkout, monkeypatch,
                                                                  capsys):
    ran = fake_executions(monkeypatch)
    smoke = load_params("smoke", {"protocols": ["paper", "reference-code"]})
    make_outputs(smoke)
    cpu_run = load_params("cpu").runs()[0].dir
    mark_created(cpu_run, "cpu")
    root = smoke.runs_root
    unselected_seed = root / "train" / "paper" / "im" / "seed7"
    mark_created(unselected_seed, "smoke", root, "03_training")
    unmarked = smoke.train_dir("paper", "baseline", smoke.seeds[0])
    (unmarked / ".imlib-created").unlink()
    stale = unmarked / ".last.pt.abcd1234.tmp"
    stale.write_bytes(b"half a checkpoint")

    pipeline.run("smoke", {"protocols": ["paper"]}, fresh=True)

    redone = [run.dir for run in smoke.runs("paper") if run.dir != unmarked]
    redone += [smoke.eval_dir("paper"), smoke.figures("paper"), smoke.nmi_dir, root / "notebooks"]
    # deleted, then made again (empty, marked) for the notebooks to write
    assert not any((folder / "result.json").exists() for folder in redone)
    assert all(created_by(folder) == "smoke" for folder in redone)
    kept = [run.dir for run in smoke.runs("reference-code")]
    kept += [smoke.eval_dir("reference-code"), smoke.figures("reference-code"), cpu_run,
             unselected_seed, unmarked]
    assert all((folder / "result.json").exists() for folder in kept
               if folder not in (cpu_run, unselected_seed))
    assert created_by(cpu_run) == "cpu" and created_by(unselected_seed) == "smoke"
    assert created_by(unmarked) is None
    assert not stale.exists()  # an interrupted write's temporary, cleaned at start
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
    fake_executions(monkeypatch)
    smoke = load_params("smoke")
    folders = make_outputs(smoke)
    pipeline.run("smoke", fresh=True, only=[only])
    under = {"figures": smoke.figures_root, "eval": smoke.runs_root / "eval",
             "train": smoke.runs_root / "train"}.get(removed)
    for folder in folders:
        assert (folder / "result.json").exists() == (under not in folder.parents), folder
    assert (smoke.runs_root / "notebooks" / "result.json").exists()
    out = capsys.readouterr().out
    assert (stale_note is not None) == ("stale" in out)
    if stale_note:
        assert f"{stale_note} read what was deleted" in out


# --- the README's figures, echoed overrides ---------------------------------------------------


def test_only_the_plain_run_draws_the_tracked_readme_figures(fake_checkout, monkeypatch, capsys):
    """With any -p option (and no figures_dir) the figures go to <runs_dir>/figures, where
    every notebook of the run finds them, and the last line says so."""
    tracked = fake_checkout / "paper_figures" / "smoke" / "paper" / "confidence_vs_nmi.png"
    tracked.parent.mkdir(parents=True)
    tracked.write_text("the committed figure")

    def notebook_05(source, params, overrides, log_output):
        figures = load_params(params.profile, overrides).figures("paper")  # as 05 loads them
        (figures / "confidence_vs_nmi.png").write_text(f"drawn with {overrides}")

    monkeypatch.setattr(pipeline, "execute", notebook_05)
    assert pipeline.main(["--only", "05_figures", "-p", "epochs", "3"]) == 0
    assert tracked.read_text() == "the committed figure"
    drawn = fake_checkout / "runs" / "smoke" / "figures" / "paper" / "confidence_vs_nmi.png"
    assert drawn.read_text() == "drawn with {'epochs': 3}"
    # the run's folders are the profile's; the folder above them, made on the way, no one's
    assert [created_by(f) for f in drawn.parents[:4]] == ["smoke", "smoke", "smoke", None]
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.search(r"figures: \S*runs/smoke/figures \(not \S*paper_figures/smoke", last), last
    assert pipeline.main(["--only", "05_figures"]) == 0  # the plain run: the README's figures
    assert tracked.read_text() == "drawn with {}"
    # settings that change how the study runs, not what it computes, keep the plain run's folder
    assert pipeline.main(["--only", "05_figures", "-p", "device", "cpu",
                          "-p", "launcher", "local"]) == 0
    assert tracked.read_text() == "drawn with {'device': 'cpu', 'launcher': 'local'}"


def test_each_override_is_echoed_as_given_and_as_applied(tmp_path, monkeypatch, capsys):
    fake_executions(monkeypatch)
    assert pipeline.main(["--only", "01_theory", "-p", "protocols", "[paper]", "-p", "lr", "2e-3",
                          "-p", "seeds", "[0,1]", "-p", "amp", "TRUE", *tmp_args(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == ["-p protocols [paper] -> protocols = [paper]", "-p lr 2e-3 -> lr = 0.002",
                         "-p seeds [0,1] -> seeds = [0, 1]", "-p amp TRUE -> amp = true"]
    assert load_params("smoke", {"protocols": ["paper"], "lr": 2e-3}).train_config(
        "paper", "im", 0).lr == 0.002


# --- one run of a profile at a time ---------------------------------------------------------

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

    monkeypatch.setattr(pipeline, "execute", interrupted)
    folders = ["-p", "runs_dir", str(tmp_path / "runs"), "-p", "figures_dir", str(tmp_path / "f")]
    assert pipeline.main(["--only", "03_training", *folders]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("run_all.sh: interrupted")
    with pipeline.exclusive_lock(tmp_path / "runs"):  # released: a new run may start
        pass


# --- one line for what the machine refuses; paths as the caller means them ------------------


@pytest.mark.parametrize("code, message", [
    (errno.EROFS, r"cannot write \S+ \(Read-only file system\); give writable folders with "
                  r"-p runs_dir and -p figures_dir"),
    (errno.EACCES, r"cannot write \S+ \(Permission denied\)"),
    (errno.ENAMETOOLONG, r"a name is too long for the file system"),
])
def test_a_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys,
                                                     no_notebook_runs, code, message):
    """The operating system's refusal (root writes anywhere, so the refusal is planted where
    the runner creates its folders)."""
    def refused(folder, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(folder))

    monkeypatch.setattr(pipeline, "mark_created", refused)
    err = one_line_refusal(capsys, pipeline.main(["--only", "01_theory", *tmp_args(tmp_path)]))
    assert re.search(message, err), err


def test_relative_paths_are_the_callers_and_echoed_absolute(tmp_path, monkeypatch, capsys):
    fake_executions(monkeypatch)
    monkeypatch.setenv(pipeline.CALLER_CWD, str(tmp_path / "where-i-typed"))
    assert pipeline.main(["--only", "05_figures", "-p", "runs_dir", "mine",
                          "-p", "figures_dir", "../figs"]) == 0
    out = capsys.readouterr().out.splitlines()
    mine = tmp_path / "where-i-typed" / "mine"
    assert f"-p runs_dir mine -> runs_dir = {mine}" in out
    assert (mine / "notebooks").is_dir() and (tmp_path / "where-i-typed" / ".." / "figs").is_dir()
    assert out[-1].startswith(f"results: {mine} ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_slurm_study_validates_on_a_login_node_without_gpu_or_data(monkeypatch, tmp_path,
                                                                      offline):
    """The jobs resolve the device and the data where they run; 04 still needs them here."""
    monkeypatch.setenv("IMLIB_DATA", str(tmp_path / "no-cifar-here"))
    login_node = tmp_path / "bin"  # a login node has SLURM's sbatch
    login_node.mkdir()
    (login_node / "sbatch").write_text("#!/bin/sh\nexit 0\n")
    (login_node / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{login_node}{os.pathsep}{os.environ['PATH']}")
    slurm = {"launcher": "slurm", "slurm": {"time": 60}, **tmp_overrides(tmp_path)}
    params = pipeline.validate("paper", slurm, ["03_training"])
    assert params.training.device == "cuda"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pipeline.validate("paper", slurm, ["03_training", "04_evaluation"])
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pipeline.validate("paper", {**tmp_overrides(tmp_path), "launcher": "local"},
                          ["03_training"])


def test_run_all_sh_names_a_damaged_environment_and_the_command_that_rebuilds_it(tmp_path):
    """A .venv whose Python sees no installed package (as after a failed install)."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("run_all.sh", "pyproject.toml"):
        (checkout / name).write_bytes((PROJECT_ROOT / name).read_bytes())
    (checkout / "run_all.sh").chmod(0o755)
    python = checkout / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # -S: no site-packages
    python.chmod(0o755)
    (checkout / ".venv" / ".installed").touch()
    environment = {k: v for k, v in os.environ.items() if k not in ("CONDA_PREFIX", "PYTHONPATH")}
    done = subprocess.run([str(checkout / "run_all.sh")], capture_output=True, text=True,
                          timeout=120, env=environment)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("run_all.sh: the environment is damaged (cannot import: torch ")
    assert done.stderr.strip().endswith("rebuild it: rm -rf .venv && ./run_all.sh")
