"""Notebooks executed in real kernels: this checkout's code whatever PYTHONPATH says, notebook
03's progress on the terminal, every cell's output with --verbose, paths that begin with '-',
and failures in one line (a cell's error at its .py line, a kernel ended by a signal)."""

from __future__ import annotations

import re
import sys

import pytest
from pipeline_fixtures import one_line_refusal, write_notebooks

import imlib.pipeline as pipeline
from imlib.execution import NotebookFailed
from imlib.io import PROJECT_ROOT


@pytest.fixture
def shadow(tmp_path, monkeypatch):
    """Another imlib first on PYTHONPATH, as a second checkout or an old copy would be."""
    other = tmp_path / "other-copy"
    (other / "imlib").mkdir(parents=True)
    (other / "imlib" / "__init__.py").write_text("SHADOW = True\n")
    monkeypatch.setenv("PYTHONPATH", str(other))
    return other


def test_the_kernels_run_this_checkouts_code_show_03s_lines_and_take_a_dash_runs_dir(
        tmp_path, monkeypatch, capsys, shadow):
    """PYTHONPATH names another imlib; a relative runs_dir beginning with '-' is read from
    the caller's folder; 03's printed lines reach the terminal, 01's do not."""
    notebooks = write_notebooks(tmp_path / "notebooks", {
        "01_fine": 'import imlib\nprint("checkout:", imlib.__file__)\nprint("quiet line")',
        "03_training": 'print("paper/im/seed0: epoch 1 of 2", flush=True)\nprint("done")'})
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setenv(pipeline.CALLER_CWD, str(tmp_path))
    assert pipeline.main(["-p", "runs_dir", "-runs", "-p", "figures_dir", "-figs"]) == 0
    executed = tmp_path / "-runs" / "notebooks"
    assert f"checkout: {PROJECT_ROOT / 'imlib' / '__init__.py'}" in (
        executed / "01_fine.ipynb").read_text()
    out = capsys.readouterr().out.splitlines()
    assert f"-p runs_dir -runs -> runs_dir = {tmp_path / '-runs'}" in out  # echoed absolute
    shown = [line.rstrip() for line in out if not line.startswith("-p ")]
    assert re.fullmatch(r"01_fine\s+\d+ s", shown[0]), shown
    assert shown[1:4] == ["03_training", "  paper/im/seed0: epoch 1 of 2", "  done"], shown
    assert re.fullmatch(r"03_training\s+\d+ s", shown[4]), shown
    assert not any("quiet line" in line for line in out)
    assert shown[-1].startswith(f"results: {tmp_path / '-runs'} ")


def test_verbose_shows_every_cells_output(tmp_path, monkeypatch, capsys):
    notebooks = write_notebooks(tmp_path / "notebooks", {"01_fine": 'print("a cell line")'})
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", notebooks)
    folders = ["-p", "runs_dir", str(tmp_path / "r"), "-p", "figures_dir", str(tmp_path / "f")]
    assert pipeline.main(["--verbose", *folders]) == 0
    assert "a cell line" in capsys.readouterr().out


def test_an_imlib_that_shadows_this_checkout_in_the_kernels_is_refused(tmp_path, monkeypatch,
                                                                       capsys, shadow,
                                                                       no_notebook_runs):
    """A sitecustomize that puts the other copy before this checkout's PYTHONPATH entry."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(f"import sys\nsys.path.insert(0, {str(shadow)!r})\n")
    monkeypatch.setenv("PYTHONPATH", str(hook))
    err = one_line_refusal(capsys, pipeline.main(["-p", "runs_dir", str(tmp_path / "r")]))
    assert f"would import imlib from {shadow / 'imlib'}, not this checkout's" in err, err


def test_a_cell_error_is_named_at_its_py_line_and_a_signal_is_not_blamed_on_memory(
        tmp_path, monkeypatch):
    notebooks = write_notebooks(tmp_path / "notebooks", {
        "01_syntax": "x = 1\nif x:\n    y = (\n",
        "02_terminated": "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)"})
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", notebooks)
    folders = {"runs_dir": str(tmp_path / "r"), "figures_dir": str(tmp_path / "f")}
    source = notebooks / "01_syntax.py"
    line = source.read_text().splitlines().index("    y = (") + 1
    with pytest.raises(NotebookFailed, match=re.escape(f"failed at {source}, line {line}: "
                                                       "SyntaxError")):
        pipeline.run("smoke", folders, only=["01_syntax"])
    with pytest.raises(NotebookFailed) as failure:
        pipeline.run("smoke", folders, only=["02_terminated"])
    assert "its kernel was ended by SIGTERM" in str(failure.value)
    assert "free memory" not in str(failure.value)


@pytest.mark.skipif(sys.platform != "linux", reason="signals as Linux sends them")
def test_sigterm_to_run_all_sh_is_one_line_and_exit_143(tmp_path, monkeypatch, capsys):
    import os
    import signal
    import time

    def terminated(*args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives first
        pytest.fail("SIGTERM did not stop the runner")

    monkeypatch.setattr(pipeline, "execute", terminated)
    folders = ["-p", "runs_dir", str(tmp_path / "r"), "-p", "figures_dir", str(tmp_path / "f")]
    assert pipeline.main(["--only", "01_theory", *folders]) == 143
    err = capsys.readouterr().err.strip()
    assert err.startswith("run_all.sh: terminated (SIGTERM)") and "\n" not in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGTERM))
    with pipeline.exclusive_lock(tmp_path / "r"):  # released
        pass
