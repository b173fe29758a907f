"""imlib.launch against a real one-node SLURM (scripts/slurm_cluster.sh): a study's runs as
one job array whose weights equal inline training bit for bit (the same thread count in the
jobs and here: one), re-attached after an interrupt without a second submission, polled with
one sacct call per look, a requeued job resuming with every epoch once, a cancelled job named
with its SLURM state, and what SLURM refuses named before anything is left behind."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from imlib import launch
from imlib.io import read_jsonl
from imlib.runs import read_history
from imlib.slurm import check_cluster
from imlib.train import train
from launch_helpers import TINY, assert_same_weights, job_of, study, wait_for, without_time


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Jobs and inline training on one thread each: bit for bit needs the same count."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the jobs inherit it (sbatch exports all)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def slurm_study(tmp_path, **fields):
    settings = {"time": 10, "cpus_per_task": 1, "poll_s": 0.5, **fields.pop("slurm", {})}
    return study(tmp_path, launcher="slurm", jobs=None, slurm=settings, **fields)


def arrays() -> set[str]:
    """The SLURM job arrays of the last hours, from accounting (not from imlib)."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID", "-S", "now-6hours"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split("_")[0] for line in out.split()}


def test_an_array_equals_inline_is_reattached_and_polled_politely(tmp_path, slurm_calls,
                                                                    monkeypatch, capsys):
    params = slurm_study(tmp_path / "jobs")
    before = arrays()
    sleeps = []

    def interrupt(seconds):
        raise KeyboardInterrupt

    # launch's clock only (time.sleep itself stays as it is for everything else)
    monkeypatch.setattr(launch, "time", SimpleNamespace(sleep=interrupt, monotonic=time.monotonic))
    with pytest.raises(KeyboardInterrupt):
        launch.train_runs(params)  # submits, then is interrupted: the jobs keep running
    assert "submitted as slurm job" in capsys.readouterr().out
    wait_for(lambda: arrays() - before, "the array in SLURM's accounting")
    (array,) = arrays() - before

    def counted(seconds):
        sleeps.append(seconds)
        time.sleep(seconds)

    launch.time.sleep = counted
    slurm_calls.write_text("")
    launch.train_runs(params)  # re-attaches: nothing submitted twice
    out = capsys.readouterr().out
    assert out.count("re-attached to slurm job") == 2 and "submitted" not in out
    calls = slurm_calls.read_text().splitlines()
    assert arrays() - before == {array}
    # one sacct a look for the whole array (and train_runs's own look), and one squeue only
    # while accounting does not know a job yet
    looks = len(sleeps) + 2
    assert 0 < sum(c.startswith("sacct") for c in calls) <= looks
    assert sum(c.startswith("squeue") for c in calls) <= looks
    assert all(f"-j {array}" in c for c in calls if c.startswith("sacct"))

    inline = replace(params, runs_dir=str(tmp_path / "inline"), launcher="inline", slurm=None)
    launch.train_runs(inline)
    for job_run, inline_run in zip(params.runs(), inline.runs(), strict=True):
        for name in ("best.pt", "last.pt"):
            assert_same_weights(job_run.dir / name, inline_run.dir / name)
        provenance = json.loads((job_run.dir / "result.json").read_text())["provenance"]
        assert provenance["launcher"] == "slurm"
        assert provenance["job_ids"] == [provenance["job_id"]]
        assert provenance["job_id"].split("_")[0] == array


def test_a_requeued_job_resumes_and_a_cancelled_one_is_named(tmp_path, monkeypatch):
    """While follow() watches: one job cancelled, the other requeued, each once its run has
    an epoch. The cancelled job stops at SLURM's SIGTERM (KillWait, 30 s here, would let it
    finish its run) and is named with the epoch its run folder kept."""
    params = slurm_study(tmp_path, variants=("ls", "im"), training=replace(TINY, epochs=40))
    cancelled, requeued = params.runs()
    launch.submit(params)
    job = {run.name: job_of(run)["job_id"] for run in params.runs()}
    to_do = {cancelled.name: ["scancel"], requeued.name: ["scontrol", "requeue"]}

    def act_while_waiting(seconds):
        """follow()'s sleep: cancel or requeue each job as soon as its run has an epoch."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for run in (cancelled, requeued):
                if run.name in to_do and read_history(run.dir / "history.jsonl"):
                    subprocess.run([*to_do.pop(run.name), job[run.name]], check=True)
            time.sleep(0.02)

    monkeypatch.setattr(launch, "time",
                        SimpleNamespace(sleep=act_while_waiting, monotonic=time.monotonic))
    with pytest.raises(RuntimeError) as failed:
        launch.follow(params, poll_s=0.5)
    assert not to_do
    message = str(failed.value)
    reached = len(read_jsonl(cancelled.dir / "history.jsonl"))  # now that the job has ended
    assert 1 <= reached < 40 and not (cancelled.dir / "result.json").exists()
    assert f"{cancelled.name}: slurm job {job[cancelled.name]} ended CANCELLED at epoch " \
           f"{reached} of 40" in message
    assert " CANCELLED AT " in message  # SLURM's own line, not submitit's "Bypassing signal"
    assert "./run_all.sh --profile smoke --only 03_training" in message
    log = launch.jobs_dir(params) / "paper_ls_seed0.err"
    assert f"SLURM is ending job {job[cancelled.name]} (SIGTERM): stopped" in log.read_text()

    history = read_jsonl(requeued.dir / "history.jsonl")
    assert [record["epoch"] for record in history] == list(range(1, 41))
    provenance = json.loads((requeued.dir / "result.json").read_text())["provenance"]
    assert provenance["job_ids"] == [job[requeued.name]]  # requeued, it keeps its job id
    straight = train(replace(requeued.config, out_dir=str(tmp_path / "straight")))
    assert without_time(history) == without_time(straight.history)
    assert_same_weights(requeued.dir / "best.pt", straight.best_checkpoint)


def test_what_slurm_refuses_is_named_before_anything_is_left(tmp_path):
    wrong = slurm_study(tmp_path / "partition", slurm={"partition": "nosuch"})
    with pytest.raises(RuntimeError, match=r"no partition 'nosuch' \(sinfo knows \['debug\*'\]"):
        check_cluster(wrong)

    gpus = slurm_study(tmp_path / "gpus", slurm={"gpus_per_node": 1})
    with pytest.raises(RuntimeError, match="no GPUs to give: use -p slurm with gpus_per_node: 0"):
        launch.submit(gpus)
    assert [p.name for p in launch.jobs_dir(gpus).iterdir()] == []  # no orphaned pickles

    stuck = slurm_study(tmp_path / "stuck", slurm={"cpus_per_task": 64})
    with pytest.raises(RuntimeError, match=r"can never start \(pending, PartitionConfig") as err:
        launch.follow(stuck, poll_s=0.5)
    array = str(err.value).split("scancel ")[1].split(")")[0]
    subprocess.run(["scancel", array], check=True)
