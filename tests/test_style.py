"""The project's lint rules (pyproject's [tool.ruff]) hold everywhere, notebooks included."""

from __future__ import annotations

import subprocess
import sys

from imlib.io import PROJECT_ROOT


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
