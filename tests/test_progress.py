"""imlib.progress: a bar in a notebook kernel leaves text (or nothing) when it finishes, never a
widget output that a saved and reopened notebook could not display."""

from __future__ import annotations

import pytest

from imlib.progress import progress

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_outside_a_notebook_a_bar_is_silent_when_disabled(monkeypatch, capsys):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert list(progress(range(3), desc="work")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_finished_notebook_bars_leave_text_or_nothing():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = ("import os\nos.environ.pop('TQDM_DISABLE', None)\n"
            "from imlib.progress import progress\n"
            "for _ in progress(range(3), desc='kept', unit='step'):\n    pass\n"
            "for _ in progress(range(2), desc='dropped', leave=False):\n    pass\n"
            "with progress(total=2, desc='manual') as bar:\n    bar.update(2)\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=120).execute()
    outputs = notebook.cells[0].outputs
    assert not [o for o in outputs if WIDGET in o.get("data", {})], outputs
    texts = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    assert len(texts) == 3  # one display per bar, each replaced by its text
    kept, dropped, manual = texts
    assert kept.startswith("kept: 100%") and "3/3" in kept
    assert dropped == ""
    assert manual.startswith("manual: 100%") and "2/2" in manual
