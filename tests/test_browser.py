"""What a reader sees in JupyterLab at 1024 x 768 with the file browser open (JupyterLab's
default layout), in headless Chromium driven by Playwright: the static probe grid and the live
explorer's figure are shown at their own width, not shrunk to fit the output area, so their
smallest text (10 points at 72 dpi, ``tests/test_explorer.py``) is at least 10 px on screen.

Skipped where Chromium or Playwright is missing: ``apt-get install chromium`` and
``.venv/bin/python -m pip install playwright`` make it run (about 30 s)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from imlib.execution import kernel_environment
from imlib.explorer import EXPLORER_WIDTH

CHROMIUM = Path("/usr/bin/chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python "
                                 "(pip install playwright)")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Chromium (apt-get install chromium)")
VIEWPORT = {"width": 1024, "height": 768}

# The cells of notebook 04 that show the grid and the explorer, on a small synthetic set and two
# untrained models: the layout, not the numbers, is under test.
CELLS = [
    """from IPython.display import display
import torch
from imlib.data import synthetic
from imlib.explorer import explorer, probe_grid, static_view
from imlib.models import small_cnn

data = synthetic(8, test_per_class=4)
torch.manual_seed(0)
models = {name: small_cnn(data.num_classes).eval() for name in ("baseline", "im")}
settings = dict(bins=64, max_eps=0.9, spread="others")""",
    """probes = probe_grid(data.x_test, data.y_test, data.classes, 0, **settings, models=models,
                    mean=data.mean, std=data.std)
display(static_view(probes, data.classes, dataset="synthetic", protocol="paper"))""",
    """display(explorer(data.x_test, data.y_test, data.classes, models, data.mean, data.std,
                 **settings))""",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server over ``tmp_path`` holding the notebook, with settings of its own
    (JupyterLab's defaults, not this machine's); yields its URL for the notebook."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, tmp_path / "reading.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**kernel_environment(), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--ServerApp.ip=127.0.0.1", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "server.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        yield f"{base}/lab/tree/reading.ipynb?token={token}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _figures(page) -> list[dict]:
    """Each output image: its drawn width (CSS px), its own width (px) and the output area's."""
    return page.eval_on_selector_all(
        ".jp-OutputArea-output img",
        """images => images.map(img => ({
            shown: img.getBoundingClientRect().width, natural: img.naturalWidth,
            area: img.closest('.jp-OutputArea').getBoundingClientRect().width}))""")


def _read_the_figures(page, lab: str) -> list[dict]:
    """Open the notebook with the file browser beside it, run every cell from the Run menu once
    the kernel is idle, and measure the figures once the explorer's controls are there."""
    page.goto(lab)
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    assert page.locator(".jp-FileBrowser").first.is_visible()  # the sidebar is open
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)  # status bar
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    # the explorer's controls (below the fold: attached, not necessarily painted)
    page.wait_for_selector(".widget-slider", state="attached", timeout=240_000)
    page.wait_for_function("document.querySelectorAll('.jp-OutputArea-output img').length >= 2",
                           timeout=120_000)
    page.wait_for_timeout(1000)
    return _figures(page)


def test_the_grid_and_the_explorer_are_not_shrunk_at_1024x768_with_the_file_browser_open(
        lab, tmp_path):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(viewport=VIEWPORT)
        try:
            figures = _read_the_figures(page, lab)
        finally:  # what the reader saw, also when a step timed out
            page.screenshot(path=str(tmp_path / "jupyterlab.png"))
            browser.close()
    print(json.dumps(figures), tmp_path / "jupyterlab.png")
    assert len(figures) == 2, figures  # the grid, then the explorer's figure
    for figure in figures:  # drawn EXPLORER_WIDTH wide, plus the tight crop's padding
        assert figure["natural"] <= min(EXPLORER_WIDTH + 2 * 0.1 * 72, figure["area"]), figure
        # not shrunk, so each label of at least 10 points at 72 dpi is 10 px or more on screen
        assert figure["shown"] >= 0.99 * figure["natural"], figure
    assert os.path.getsize(tmp_path / "jupyterlab.png") > 10_000
