"""The cluster tests run only against a real SLURM: ``scripts/slurm_cluster.sh start`` and
``IMLIB_SLURM=1`` (``.ci/run`` does both); elsewhere they are skipped with one line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _cluster_up() -> str | None:
    """None when a SLURM answers here, else why the cluster tests are skipped."""
    if os.environ.get("IMLIB_SLURM") != "1":
        return "no SLURM cluster: run scripts/slurm_cluster.sh start, then IMLIB_SLURM=1 pytest"
    if shutil.which("sinfo") is None:
        return "IMLIB_SLURM=1 but no sinfo on PATH"
    answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                            check=False)
    usable = {"idle", "mixed", "allocated", "completing"}
    if answer.returncode != 0 or not usable & set(answer.stdout.split()):
        return f"IMLIB_SLURM=1 but SLURM has no node up ({answer.stderr.strip()[:200]})"
    return None


def pytest_collection_modifyitems(config, items):
    why = _cluster_up()
    if why is None:
        return
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)


@pytest.fixture
def slurm_calls(tmp_path, monkeypatch) -> Path:
    """sacct and squeue wrapped on PATH: each call is one line of the returned log."""
    wrappers, log = tmp_path / "wrappers", tmp_path / "slurm_calls.log"
    wrappers.mkdir()
    for name in ("sacct", "squeue"):
        real = shutil.which(name)
        script = wrappers / name
        script.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\nexec {real} \"$@\"\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}{os.pathsep}{os.environ['PATH']}")
    log.touch()
    return log
