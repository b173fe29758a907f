"""What the runner's tests share (a test module imports no other): folders in tmp_path, fake
checkouts and notebooks, notebooks that 'run' without a kernel, the one-line refusal check."""

from __future__ import annotations

from pathlib import Path

import pytest

import imlib.outputs as outputs
import imlib.pipeline as pipeline
from imlib import study
from imlib.io import mark_created


def tmp_overrides(tmp_path: Path) -> dict:
    return {"runs_dir": str(tmp_path / "runs"), "figures_dir": str(tmp_path / "figures")}


def tmp_args(tmp_path: Path) -> list[str]:
    return [arg for key, value in tmp_overrides(tmp_path).items() for arg in ("-p", key, value)]


def every_file(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.fixture
def no_notebook_runs(monkeypatch):
    """Fail the test if validation lets a notebook start."""
    def refuse(source, *args, **kwargs):
        pytest.fail(f"notebook {source.stem} ran although its parameters are invalid")

    monkeypatch.setattr(pipeline, "execute", refuse)


def one_line_refusal(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("run_all.sh: ") and err.count("\n") == 1, err
    return err


def write_notebooks(folder: Path, cells: dict[str, str]) -> Path:
    """Percent-format notebooks ``NN_name.py`` in ``folder``, each with a parameters cell."""
    folder.mkdir()
    for name, code in cells.items():
        (folder / f"{name}.py").write_text('# %% tags=["parameters"]\nprofile = "smoke"\n'
                                           f"overrides = {{}}\n\n# %%\n{code}\n")
    return folder


@pytest.fixture
def fake_checkout(tmp_path, monkeypatch):
    """A checkout with history and uncommitted work, as the project root."""
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (checkout / "uncommitted.py").write_text("work = 1\n")
    for module in (study, outputs):  # each binds imlib.io's PROJECT_ROOT at import
        monkeypatch.setattr(module, "PROJECT_ROOT", checkout)
    monkeypatch.chdir(checkout)  # relative -p paths are the caller's: typed in the checkout
    return checkout


def fake_executions(monkeypatch) -> list[str]:
    """Notebooks 'run' without a kernel; returns the names, in order."""
    ran = []
    monkeypatch.setattr(pipeline, "execute", lambda source, *args: ran.append(source.stem))
    return ran


def make_outputs(params) -> list[Path]:
    """Every folder a full run of ``params`` writes, recorded as its run's, each with a file."""
    folders = []
    for writer, folder in outputs.written(params, outputs.WRITERS, every=True):
        mark_created(folder, params.profile, params.runs_root, writer)
        (folder / "result.json").write_text("{}")
        folders.append(folder)
    return folders[:-1]  # the executed notebooks' folder apart


# A process that holds a folder's lock (imlib.io.exclusive_lock) for two minutes: a run in
# progress, as another run or --fresh sees it.
HOLDER = """
import sys, time
from imlib.io import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""
