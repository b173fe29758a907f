"""The headless runner behind run_all.sh: validation before any notebook runs, and failures."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch

import imlib.pipeline as pipeline
from imlib.study import PROJECT_ROOT, load_params, profiles


def tmp_overrides(tmp_path: Path) -> dict:
    return {"runs_dir": str(tmp_path / "runs"), "figures_dir": str(tmp_path / "figures")}


def test_profiles_smoke_cpu_paper_exist_and_validate_offline_fields():
    assert {"smoke", "cpu", "paper"} <= set(profiles())
    smoke = load_params("smoke")
    assert smoke.dataset == "synthetic" and smoke.model == "small_cnn"
    out_dir = smoke.train_config("im", 0).out_dir
    assert out_dir.endswith(os.path.join("train", "paper", "im", "seed0"))


@pytest.mark.parametrize("profile, overrides, message", [
    ("nope", {}, "unknown profile 'nope'; available"),
    ("smoke", {"epoch": 3}, r"unknown parameter\(s\) \['epoch'\]; allowed"),
    ("smoke", {"epochs": -1}, "epochs must be a positive int"),
    ("smoke", {"variants": ["im", "mixup"]}, "variants must be"),
    ("smoke", {"seeds": []}, "seeds must be"),
    ("smoke", {"eval_class": 10}, "eval_class must lie in"),
    ("smoke", {"device": "tpu"}, "device must be"),
])
def test_bad_parameters_stop_before_any_notebook_runs(tmp_path, profile, overrides, message):
    with pytest.raises(ValueError, match=message):
        pipeline.run(profile, {**tmp_overrides(tmp_path), **overrides})
    assert not (tmp_path / "runs").exists()


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


def test_a_failing_notebook_is_named_with_its_cell_and_executed_copy(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "01_fine.py").write_text(
        '# %% tags=["parameters"]\nprofile = "smoke"\noverrides = {}\n\n# %%\nx = 1\n')
    (notebooks / "02_broken.py").write_text(
        '# %% tags=["parameters"]\nprofile = "smoke"\noverrides = {}\n\n'
        '# %%\nraise RuntimeError("planted failure")\n')
    (notebooks / "03_never.py").write_text('# %%\nraise SystemExit("must not run")\n')
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", notebooks)
    with pytest.raises(pipeline.NotebookFailed, match="notebook 02_broken failed") as failure:
        pipeline.run("smoke", tmp_overrides(tmp_path), log_output=False)
    executed = tmp_path / "runs" / "notebooks"
    assert "planted failure" in str(failure.value)
    assert str(executed / "02_broken.ipynb") in str(failure.value)
    assert "planted failure" in (executed / "02_broken.ipynb").read_text()
    assert not (executed / "03_never.ipynb").exists()


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

    def fake_run(profile, overrides, fresh, only):
        seen.update(profile=profile, overrides=overrides, fresh=fresh, only=only)
        return load_params("smoke", tmp_overrides(tmp_path))

    monkeypatch.setattr(pipeline, "run", fake_run)
    code = pipeline.main(["--profile", "smoke", "-p", "epochs", "3", "-p", "seeds", "[0, 1]",
                          "-p", "amp", "true", "--fresh", "--only", "05_figures"])
    assert code == 0
    assert seen == {"profile": "smoke", "overrides": {"epochs": 3, "seeds": [0, 1], "amp": True},
                    "fresh": True, "only": ["05_figures"]}
