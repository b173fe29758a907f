"""imlib.progress: a bar in a notebook kernel leaves one line of text (or nothing) when it
finishes, never a widget output that a saved and reopened notebook could not display; an
interrupted loop says one line, in a real kernel too."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from imlib.evaluate import INTERRUPTED
from imlib.progress import TEXT_COLUMNS, Interrupted, on_interrupt, progress
from imlib.runs import TrainConfig

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_outside_a_notebook_a_bar_is_silent_when_disabled(monkeypatch, capsys):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert list(progress(range(3), desc="work")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_finished_notebook_bars_leave_one_line_of_text_or_nothing():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = ("import os\nos.environ.pop('TQDM_DISABLE', None)\n"
            "from imlib.progress import progress\n"
            "for _ in progress(range(3), desc='kept', unit='step'):\n    pass\n"
            "for _ in progress(range(2), desc='dropped', leave=False):\n    pass\n"
            "with progress(total=2, desc='manual') as bar:\n    bar.update(2)\n"
            "with progress(total=1, desc='im seed 2, epoch 100 of 100') as bar:\n"
            "    bar.set_postfix_str('train_loss=1.2345, holdout_acc=0.8512, test_acc=0.8503, '\n"
            "                        'lr=0.001, seconds=2.04')\n    bar.update(1)\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=120).execute()
    outputs = notebook.cells[0].outputs
    assert not [o for o in outputs if WIDGET in o.get("data", {})], outputs
    texts = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    assert len(texts) == 4  # one display per bar, each replaced by its text
    kept, dropped, manual, long = texts
    assert kept.startswith("kept: 100%") and "3/3" in kept
    assert dropped == ""
    assert manual.startswith("manual: 100%") and "2/2" in manual
    assert long.startswith("im seed 2, epoch 100 of 100: 100%")
    assert all(len(text) <= TEXT_COLUMNS and "\n" not in text for text in texts), texts


def test_an_interrupt_inside_on_interrupt_is_one_line():
    epoch = {"saved": 0}
    with pytest.raises(Interrupted) as caught:
        with on_interrupt(lambda: f"training interrupted: epoch {epoch['saved']} saved"):
            epoch["saved"] = 3
            raise KeyboardInterrupt
    assert isinstance(caught.value, KeyboardInterrupt)  # Ctrl-C semantics kept
    assert caught.value._render_traceback_() == ["training interrupted: epoch 3 saved"]
    assert caught.value.__suppress_context__  # no "during handling" chain
    with pytest.raises(Interrupted, match="^inner$"):  # the innermost message wins
        with on_interrupt("outer"), on_interrupt("inner"):
            raise KeyboardInterrupt
    with pytest.raises(ValueError, match="message must be a string"):
        with on_interrupt(3):
            pass


def test_interrupting_an_evaluation_in_a_kernel_leaves_one_line(tmp_path):
    """A real kernel, interrupted as JupyterLab's stop button does (SIGINT) while it evaluates:
    the cell's only output is the one-line message, which the saved notebook keeps."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from imlib.models import small_cnn

    checkpoint, started = tmp_path / "best.pt", tmp_path / "started"
    torch.save({"model": small_cnn(3).state_dict(), "classes": ["a", "b", "c"],
                "config": TrainConfig(synthetic_classes=3).to_dict()}, checkpoint)
    code = ("import pathlib\nfrom imlib.data import synthetic\n"
            "from imlib.evaluate import evaluate_checkpoints\n"
            "from imlib.results import EvalSettings\n"
            "data = synthetic(8, num_classes=3, test_per_class=6)\n"
            f"pathlib.Path({str(started)!r}).touch()\n"
            "while True:\n"
            f"    evaluate_checkpoints([{str(checkpoint)!r}], data, EvalSettings(batch_size=8),"
            " device='cpu')\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=60,
                                     allow_errors=True)

    def interrupt_once_evaluating() -> None:
        while not started.exists():
            time.sleep(0.1)
        time.sleep(1.0)  # well inside the loop
        os.kill(client.km.provisioner.pid, signal.SIGINT)  # what the kernel's interrupt sends

    threading.Thread(target=interrupt_once_evaluating, daemon=True).start()
    client.execute()
    outputs = notebook.cells[0].outputs
    assert [(o.output_type, o.get("ename")) for o in outputs] == [("error", "Interrupted")]
    assert outputs[0].traceback == [INTERRUPTED]
    saved = nbformat.writes(notebook)
    assert "Traceback" not in saved and "File " not in saved and saved.count(INTERRUPTED) == 2
