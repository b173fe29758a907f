"""imlib.launch: the study's runs as local jobs (submitit's local executor, on the CPU) equal
inline training bit for bit, resume after a kill, are never submitted twice and fail by name;
the SLURM path is checked on what it hands submitit (the executor mocked: no cluster here)."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit

from imlib import launch, slurm
from imlib.io import LOCK_NAME, exclusive_lock, read_jsonl
from imlib.study import load_params
from imlib.train import train
from launch_helpers import TINY, assert_same_weights, job_of, study, wait_for, without_time

# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    ({"launcher": "pbs"}, "launcher must be one of"),
    ({"launcher": "local", "jobs": 0}, "jobs"),
    ({"launcher": "slurm"}, "needs each job's time limit"),
    ({"launcher": "slurm", "slurm": "gpu"}, "slurm must be a mapping"),
    ({"launcher": "slurm", "slurm": {"time": 60, "partiton": "gpu"}}, r"\['partiton'\]"),
    ({"launcher": "slurm", "slurm": {"time": "4h"}}, "slurm time must be"),
    ({"launcher": "slurm", "slurm": {"time": 60, "setup": "module load cuda"}},
     "slurm setup must be a list"),
    ({"launcher": "slurm", "slurm": {"time": 1}}, "slurm time must be .* >= 2"),
    ({"launcher": "slurm", "slurm": {"time": 2, "signal_delay_s": 90}}, "at most half"),
    ({"slurm": {"time": 60}}, "add -p launcher slurm"),
])
def test_bad_launcher_settings_are_refused_by_name(overrides, message):
    """Through -p, as run_all.sh reads them: before any notebook runs, so before any job."""
    with pytest.raises(ValueError, match=message) as refused:
        load_params("smoke", overrides)
    assert "\n" not in str(refused.value)


# --- local jobs ---------------------------------------------------------------------------


def test_local_jobs_equal_inline_training_and_are_never_submitted_twice(tmp_path):
    params = study(tmp_path / "jobs")
    first = launch.submit(params)
    again = launch.submit(params)  # while the jobs run
    assert [run.name for run in first] == [run.name for run in params.runs()]
    assert again == []
    final = launch.follow(params, poll_s=0.2)
    assert list(final.state) == ["done", "done"]

    inline = replace(params, runs_dir=str(tmp_path / "inline"), launcher="inline")
    launch.train_runs(inline)
    for job_run, inline_run in zip(params.runs(), inline.runs(), strict=True):
        for name in ("best.pt", "last.pt"):
            assert_same_weights(job_run.dir / name, inline_run.dir / name)
        assert without_time(read_jsonl(job_run.dir / "history.jsonl")) == \
            without_time(read_jsonl(inline_run.dir / "history.jsonl"))
        # provenance: the launcher and the job id, the logs named by run and by that job
        job = job_of(job_run)
        origin = json.loads((job_run.dir / "result.json").read_text())["provenance"]
        assert (origin["launcher"], origin["job_id"]) == ("local", job["job_id"])
        inline_origin = json.loads((inline_run.dir / "result.json").read_text())["provenance"]
        assert (inline_origin["launcher"], inline_origin["job_id"]) == ("inline", None)
        log = params.runs_root / "jobs" / f"paper_{job_run.variant}_seed0.out"
        assert log.resolve().name == f"{job['job_id']}_0_log.out" and log.stat().st_size > 0
    # a second call (notebook 03 run again) reuses the finished runs: no result is rewritten
    written = {p: p.stat().st_mtime_ns for run in inline.runs() for p in run.dir.iterdir()
               if p.name != LOCK_NAME}
    launch.train_runs(inline)
    assert {p: p.stat().st_mtime_ns for p in written} == written


def test_a_killed_job_resubmitted_resumes_from_its_last_epoch(tmp_path):
    params = study(tmp_path, variants=("im",), training=replace(TINY, epochs=3))
    (run,) = params.runs()
    (submitted,) = launch.submit(params)
    history = run.dir / "history.jsonl"
    wait_for(lambda: history.exists() and read_jsonl(history), "the job's first epoch")
    killed = job_of(run)["job_id"]
    os.killpg(int(killed), signal.SIGKILL)  # the job and its training process
    os.waitpid(int(killed), 0)  # gone (the job's controller is this process's child)
    before = read_jsonl(history)
    assert 1 <= len(before) < 3 and not (run.dir / "result.json").exists()

    launch.follow(params, poll_s=0.2)  # resubmits the run: its job is gone
    resubmitted = job_of(run)["job_id"]
    assert resubmitted != killed
    after = read_jsonl(history)
    assert after[:len(before)] == before  # the epochs before the kill, kept as they were
    straight = train(replace(run.config, out_dir=str(tmp_path / "straight")))
    assert without_time(after) == without_time(straight.history)
    assert_same_weights(run.dir / "last.pt", straight.last_checkpoint)
    assert_same_weights(run.dir / "best.pt", straight.best_checkpoint)


def test_a_failed_job_is_named_with_its_log_and_the_lock_holds(tmp_path):
    """A job whose run another process trains (its folder locked) fails; the error names the
    run, the job, its log (named by run) and the command that resubmits it."""
    params = study(tmp_path, variants=("im",))
    (run,) = params.runs()
    with exclusive_lock(run.dir), pytest.raises(RuntimeError) as failed:
        launch.follow(params, poll_s=0.2)
    message = str(failed.value)
    log = params.runs_root / "jobs" / "paper_im_seed0.err"
    assert f"paper/im/seed0: local job {job_of(run)['job_id']} ended at epoch 0" in message
    assert str(log) in message and "in use by another run" in log.read_text()
    assert "in use by another run" in message and "--only 03_training" in message
    assert not (run.dir / "history.jsonl").exists()


# --- SLURM, with submitit's executor mocked -----------------------------------------------


class FakeSlurmExecutor:
    """Records what imlib.launch hands submitit's SlurmExecutor; submits nothing."""

    made: list[FakeSlurmExecutor] = []

    def __init__(self, folder):
        self.folder, self.parameters, self.arrays = Path(folder), {}, []
        FakeSlurmExecutor.made.append(self)

    def update_parameters(self, **parameters):
        self.parameters.update(parameters)

    def map_array(self, fn, configs):
        self.arrays.append((fn, list(configs)))
        self.folder.mkdir(parents=True, exist_ok=True)  # as submitit's does, for the logs
        ids = [f"4242_{i}" for i in range(len(configs))]
        return [SimpleNamespace(job_id=i, paths=submitit.core.utils.JobPaths(self.folder, i))
                for i in ids]


def test_slurm_submits_one_array_of_the_runs_not_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(submitit, "SlurmExecutor", FakeSlurmExecutor)
    # every job still queued; the cluster's checks and queue are the cluster tests' (tests/cluster)
    monkeypatch.setattr(launch, "job_states", lambda ids: dict.fromkeys(ids, ("PENDING", "")))
    monkeypatch.setattr(launch, "check_cluster", lambda params: None)
    FakeSlurmExecutor.made = []
    settings = {"time": 90, "partition": "gpu", "mem": "32G", "cpus_per_task": 8,
                "setup": ["module load cuda"], "additional_parameters": {"mail-type": "END"}}
    params = study(tmp_path, variants=("baseline", "ls", "im"), launcher="slurm", jobs=None,
                   slurm=settings, training=replace(TINY, epochs=1))
    done, *rest = params.runs()
    train(done.config)  # complete: not submitted

    submitted = launch.submit(params)
    (executor,) = FakeSlurmExecutor.made
    assert executor.folder == tmp_path / "runs" / "jobs"
    # device cpu: no GPU asked for; the requeue signal 20 % of the 90 min limit, at most 90 s
    assert executor.parameters == {"job_name": "imlib-smoke", "array_parallelism": 2,
                                   "signal_delay_s": 90, **settings}
    ((fn, configs),) = executor.arrays
    assert isinstance(fn, launch.TrainJob) and isinstance(fn, submitit.helpers.Checkpointable)
    assert configs == [run.config for run in rest] == [run.config for run in submitted]
    assert [job_of(run) for run in rest] == [
        {"launcher": "slurm", "job_id": f"4242_{i}", "job_ids": [f"4242_{i}"], "slot": None}
        for i in range(2)]

    assert launch.submit(params) == []  # the array is still queued: nothing new
    assert len(executor.arrays) == 1

    # what one node without GPUs cannot show: GPU jobs, asked for from a login node
    gpu = study(tmp_path / "gpu", launcher="slurm", jobs=3, slurm={"time": 5},
                training=replace(TINY, device="cuda:1"))
    launch.submit(gpu)
    assert FakeSlurmExecutor.made[-1].parameters == {
        "job_name": "imlib-smoke", "gpus_per_node": 1, "array_parallelism": 3, "time": 5,
        "signal_delay_s": 60}
    assert {c.device for c in FakeSlurmExecutor.made[-1].arrays[0][1]} == {"cuda"}
    # auto is resolved where the job runs: no GPU unless the profile asks for one
    for asked, gpus in (({"time": 2}, None), ({"time": 2, "gpus_per_node": 1}, 1)):
        auto = study(tmp_path / f"auto{gpus}", launcher="slurm", slurm=asked,
                     training=replace(TINY, device="auto"))
        launch.submit(auto)
        assert FakeSlurmExecutor.made[-1].parameters.get("gpus_per_node") == gpus
        assert FakeSlurmExecutor.made[-1].parameters["signal_delay_s"] == 24
        assert {c.device for c in FakeSlurmExecutor.made[-1].arrays[0][1]} == {"auto"}


def test_slurm_without_sbatch_is_refused_before_submitting(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)
    params = study(tmp_path, launcher="slurm", slurm={"time": 60})
    with pytest.raises(RuntimeError, match="sbatch"):
        launch.submit(params)
    assert not any((run.dir / "job.json").exists() for run in params.runs())


def test_checkpoint_resubmits_the_same_run():
    """What submitit calls when SLURM preempts the job or its time limit nears: the returned
    submission is requeued, and trains the same run (which resumes from its last.pt)."""
    config = replace(TINY, out_dir="runs/x/train/paper/im/seed0", variant="im")
    job = launch.TrainJob()
    delayed = job.checkpoint(config)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is job and delayed.args == (config,) and delayed.kwargs == {}


@pytest.mark.parametrize("squeue, stops", [
    ("echo COMPLETING", True),  # cancelled, requeued or out of time: SLURM is ending it
    ("echo RUNNING", False),  # a signal alone (scancel --signal, before a preemption)
    ("echo 'slurm_load_jobs error' >&2; exit 1", False),  # SLURM does not answer
])
def test_a_slurm_job_stops_at_sigterm_only_when_slurm_ends_it(tmp_path, monkeypatch, squeue,
                                                              stops):
    """In a SLURM job, SIGTERM stops training when squeue says the job is ending; otherwise
    the handler it had (submitit's, which logs the signal and trains on) gets it."""
    (tmp_path / "squeue").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/asked\n{squeue}\n")
    (tmp_path / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    before = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: before.append(signum))
    try:
        slurm.stop_when_slurm_ends("12_3")
        if stops:
            with pytest.raises(SystemExit, match="SLURM is ending job 12_3"):
                signal.raise_signal(signal.SIGTERM)
        else:
            signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert before == ([] if stops else [signal.SIGTERM])
    assert "12_3" in (tmp_path / "asked").read_text().split()  # asked about its own job
