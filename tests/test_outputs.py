"""Folders a run owns: two runs never share one, and --fresh deletes only what the selected
notebooks recorded as written, never under a job that still trains or a lock that is held."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pipeline_fixtures import HOLDER, every_file, fake_executions, make_outputs, one_line_refusal

import imlib.pipeline as pipeline
from imlib.io import created_record, mark_created
from imlib.runs import RunFiles
from imlib.study import load_params

ONE_RUN = ["-p", "variants", "[im]", "-p", "seeds", "[0]", "-p", "protocols", "[paper]"]


def folders(tmp_path, runs="runs", figures="figures") -> list[str]:
    return ["-p", "runs_dir", str(tmp_path / runs), "-p", "figures_dir", str(tmp_path / figures)]


def one_run(tmp_path):
    """The single training run of ``ONE_RUN`` in tmp_path/runs, as a run of it made it."""
    params = load_params("smoke", {"runs_dir": str(tmp_path / "runs"), "variants": ["im"],
                                   "seeds": [0], "protocols": ["paper"],
                                   "figures_dir": str(tmp_path / "figures")})
    make_outputs(params)
    return params, params.runs()[0]


def test_two_runs_of_one_profile_with_one_figures_folder_are_refused(tmp_path, monkeypatch,
                                                                     capsys):
    fake_executions(monkeypatch)
    assert pipeline.main(["--only", "05_figures", *folders(tmp_path, "runs-a")]) == 0
    drawn = tmp_path / "figures" / "paper" / "fig1.png"
    drawn.write_text("run a's figure")
    before = every_file(tmp_path)
    for fresh in ([], ["--fresh"]):
        err = one_line_refusal(capsys, pipeline.main([*fresh, "--only", "05_figures",
                                                      *folders(tmp_path, "runs-b")]))
        assert f"holds the outputs of profile 'smoke''s run in {tmp_path / 'runs-a'}" in err, err
        assert "-p figures_dir" in err
    assert every_file(tmp_path) - before == set() and drawn.read_text() == "run a's figure"


def test_each_folder_records_its_profile_runs_dir_and_writer(tmp_path, monkeypatch):
    fake_executions(monkeypatch)
    assert pipeline.main([*ONE_RUN, *folders(tmp_path)]) == 0
    params, run = one_run(tmp_path)
    runs_dir = str((tmp_path / "runs").resolve())
    expected = {run.dir: "03_training", params.nmi_dir: "02_nmi_validation",
                params.eval_dir("paper"): "04_evaluation", params.figures("paper"): "05_figures",
                tmp_path / "runs" / "notebooks": "run_all.sh", tmp_path / "runs": "run_all.sh"}
    for folder, writer in expected.items():
        assert created_record(folder) == {"profile": "smoke", "runs_dir": runs_dir,
                                          "notebook": writer}, folder


@pytest.mark.parametrize("record", [
    {"profile": "smoke"},  # an older version's record: no runs_dir, no notebook
    {"profile": "smoke", "notebook": "05_figures"},  # another notebook's folder at this path
])
def test_fresh_keeps_a_folder_whose_record_does_not_say_this_notebook_wrote_it(
        tmp_path, monkeypatch, capsys, record):
    fake_executions(monkeypatch)
    params, _ = one_run(tmp_path)
    marker = params.nmi_dir / ".imlib-created"
    marker.write_text(json.dumps({"runs_dir": str(params.runs_root.resolve()), **record}))
    (params.nmi_dir / "eps.csv").write_text("kept")
    assert pipeline.main(["--fresh", "--only", "02_nmi_validation", *ONE_RUN,
                          *folders(tmp_path)]) == 0
    assert (params.nmi_dir / "eps.csv").read_text() == "kept"
    assert "--fresh: kept 1 folder(s)" in capsys.readouterr().out


SLEEPER = "import time; print('started', flush=True); time.sleep(120)"


@pytest.fixture
def live_local_job():
    """A process that passes for a local submitit job: its command line names submitit."""
    job = subprocess.Popen([sys.executable, "-c", SLEEPER, "submitit"], stdout=subprocess.PIPE,
                           text=True)
    assert job.stdout.readline().strip() == "started"
    yield job
    job.kill()
    job.wait()


def test_fresh_refuses_a_run_whose_job_still_runs_naming_the_command_that_stops_it(
        tmp_path, monkeypatch, capsys, live_local_job):
    fake_executions(monkeypatch)
    _, run = one_run(tmp_path)
    RunFiles(run.dir).job.write_text(json.dumps({"launcher": "local",
                                                 "job_id": str(live_local_job.pid), "slot": 0}))
    before = every_file(tmp_path)
    err = one_line_refusal(capsys, pipeline.main(["--fresh", "--only", "03_training", *ONE_RUN,
                                                  *folders(tmp_path)]))
    pid = live_local_job.pid
    assert f"--fresh refuses {run.dir}: its local job {pid} still runs" in err, err
    assert f"kill -INT -- -{pid}" in err and f"kill -KILL -- -{pid}" in err
    assert "nothing was deleted" in err and every_file(tmp_path) == before
    live_local_job.kill()
    live_local_job.wait()
    assert pipeline.main(["--fresh", "--only", "03_training", *ONE_RUN, *folders(tmp_path)]) == 0
    assert not (run.dir / "result.json").exists()  # the job ended: deleted


def test_fresh_refuses_a_run_whose_lock_is_held_and_deletes_nothing(tmp_path, monkeypatch,
                                                                    capsys):
    fake_executions(monkeypatch)
    params, run = one_run(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run.dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = every_file(tmp_path)
        err = one_line_refusal(capsys, pipeline.main(["--fresh", *ONE_RUN, *folders(tmp_path)]))
        assert f"--fresh refuses {run.dir}" in err and f"(pid {holder.pid} on" in err, err
        assert every_file(tmp_path) == before  # not even the other notebooks' folders
    finally:
        holder.kill()
        holder.wait()


def test_fresh_refuses_a_damaged_job_record_in_one_line(tmp_path, monkeypatch, capsys):
    fake_executions(monkeypatch)
    _, run = one_run(tmp_path)
    RunFiles(run.dir).job.write_text('{"launcher": "local", "job_')  # cut short
    err = one_line_refusal(capsys, pipeline.main(["--fresh", "--only", "03_training", *ONE_RUN,
                                                  *folders(tmp_path)]))
    assert f"{RunFiles(run.dir).job} is damaged" in err and "nothing was deleted" in err
    assert (run.dir / "result.json").exists()


def test_fresh_refuses_a_folder_that_holds_another_notebooks_folders(tmp_path, monkeypatch,
                                                                     capsys):
    """A figures folder recorded as 05's that holds a training run (how it got there does not
    matter): the record of the run inside names 03, so nothing is deleted."""
    fake_executions(monkeypatch)
    params, _ = one_run(tmp_path)
    inside = params.figures("paper") / "seed0"
    mark_created(inside, "smoke", params.runs_root, "03_training")
    before = every_file(tmp_path)
    err = one_line_refusal(capsys, pipeline.main(["--fresh", "--only", "05_figures", *ONE_RUN,
                                                  *folders(tmp_path)]))
    assert f"it holds {inside}, created by 03_training of the run in" in err, err
    assert every_file(tmp_path) == before
