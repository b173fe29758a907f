"""Training the study's runs: in this process, as processes on this machine, or as SLURM jobs.

Notebook 03 calls ``train_runs(params)``; ``params.launcher`` says how (submitit does the
launching, no scheduler of our own):

- ``inline`` (the default): one run after another, here;
- ``local``: one process per run on this machine (submitit's local executor), ``params.jobs``
  at once (default: one per GPU, or one without GPUs), each on a GPU of its own when there are
  GPUs;
- ``slurm``: one SLURM job array (``map_array``), ``params.jobs`` at once (default: all), with the
  ``params.slurm`` settings (submitit's SlurmExecutor parameters: ``time``, ``partition``...).

Every run trains with ``imlib.train.train``, which resumes from the run's ``last.pt``, while it
holds the run folder's lock: two jobs never train one run. A submitted job's id is kept in the
run folder (``job.json``), so a second call re-attaches to the jobs that still run and submits
only the runs that are neither complete nor in a job; interrupting the notebook leaves the jobs
running. On SLURM the job is ``Checkpointable``: preempted, or near its time limit, it is
requeued and continues from the run's last finished epoch. Each job's stdout and stderr are in
``<runs_dir>/jobs/`` (``<protocol>_<variant>_seed<k>.out`` and ``.err``, links to the files
submitit names by job id), and the run's provenance records the launcher and the job id.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import pandas as pd
import submitit
import torch

from imlib._checks import check_int
from imlib.io import atomic_write_text, exclusive_lock, project_path
from imlib.progress import quiet
from imlib.runs import IncompleteRunError, RunFiles, TrainConfig, completed_run, read_history
from imlib.train import train

if TYPE_CHECKING:
    from imlib.study import StudyParams, StudyRun

__all__ = ["LAUNCHERS", "SLURM_SETTINGS", "check_launcher", "TrainJob", "jobs_dir", "status",
           "submit", "follow", "train_runs"]

LAUNCHERS = ("inline", "local", "slurm")
LOCAL_TIMEOUT_MIN = 30 * 24 * 60  # submitit's local default (2 min) would stop every run


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _count(minimum: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) \
        and value >= minimum


def _lines(value: Any) -> bool:
    return isinstance(value, list) and all(_text(line) for line in value)


def _options(value: Any) -> bool:
    return isinstance(value, dict) and all(
        _text(k) and isinstance(v, (str, int, float, bool)) for k, v in value.items())


# The keys of a profile's `slurm` mapping: submitit's SlurmExecutor parameters of the same name
# (sbatch's options), checked here so that a typo stops before anything is submitted.
SLURM_SETTINGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "time": (_count(1), "each job's time limit in minutes, an int >= 1"),
    "partition": (_text, "a partition's name"),
    "gpus_per_node": (_count(0), "the GPUs of each job, an int >= 0 (default 1; 0 with -p "
                                 "device cpu)"),
    "cpus_per_task": (_count(1), "the CPU cores of each job, an int >= 1"),
    "mem": (_text, "the memory of each job, e.g. 32G"),
    "account": (_text, "an account's name"),
    "qos": (_text, "a quality of service's name"),
    "constraint": (_text, "a node feature, e.g. a100"),
    "exclude": (_text, "nodes to avoid, e.g. node[01-03]"),
    "setup": (_lines, "a list of shell lines run before each job, e.g. [module load cuda]"),
    "additional_parameters": (_options, "a mapping of any other sbatch option to its value, "
                                        "e.g. {mail-type: END}"),
}


def check_launcher(launcher: Any, jobs: Any, slurm: Any) -> None:
    """Refuse bad launcher settings with one line naming them (``StudyParams`` calls this, so
    ``run_all.sh`` stops before any notebook runs and nothing is ever submitted with them)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {list(LAUNCHERS)}, got {launcher!r}")
    if jobs is not None:
        check_int(jobs, "jobs (runs trained at once)", 1)
    if slurm is not None and not isinstance(slurm, dict):
        raise ValueError(f"slurm must be a mapping of settings, e.g. {{time: 240, partition: "
                         f"gpu}}, got {slurm!r}")
    slurm = slurm or {}
    unknown = sorted(set(slurm) - set(SLURM_SETTINGS))
    if unknown:
        raise ValueError(f"unknown slurm setting(s) {unknown}; allowed: {sorted(SLURM_SETTINGS)} "
                         "(any other sbatch option goes in additional_parameters)")
    for name, value in slurm.items():
        valid, expected = SLURM_SETTINGS[name]
        if not valid(value):
            raise ValueError(f"slurm {name} must be {expected}, got {value!r}")
    if launcher == "slurm" and "time" not in slurm:
        raise ValueError("launcher slurm needs each job's time limit in minutes, slurm's time: "
                         "e.g. -p slurm \"{time: 240, partition: gpu}\"")


# --- the job ------------------------------------------------------------------------------


class TrainJob(submitit.helpers.Checkpointable):
    """What each job runs: ``train(config)`` (which resumes from the run's ``last.pt``) while
    holding the run folder's lock, with the launcher and job id in the run's provenance.

    When SLURM preempts the job or its time limit nears, submitit calls the inherited
    ``checkpoint(config)``, which returns ``DelayedSubmission(self, config)``: the same run,
    requeued, which resumes from its last finished epoch (the epoch in progress is lost).
    """

    def __call__(self, config: TrainConfig) -> None:
        environment = submitit.JobEnvironment()
        with exclusive_lock(config.out_dir):
            train(config, job={"launcher": environment.cluster, "job_id": environment.job_id})


class _DetachedLocalExecutor(submitit.LocalExecutor):
    """submitit's local executor with each job in a session of its own. Jupyter interrupts a
    kernel, and ipykernel shuts one down, by signalling the kernel's process group, which would
    stop its jobs too; detached, they keep running, as SLURM jobs do. ``kill -- -JOB_ID`` stops
    one (a local job's id is its process group)."""

    def _submit_command(self, command: str) -> submitit.local.local.LocalJob:
        detached = functools.partial(subprocess.Popen, start_new_session=True)
        with mock.patch.object(subprocess, "Popen", detached):
            return super()._submit_command(command)


# --- the jobs of a study ------------------------------------------------------------------


def jobs_dir(params: StudyParams) -> Path:
    """<runs_dir>/jobs: submitit's files and each run's job logs."""
    return params.runs_root / "jobs"


def _logs(params: StudyParams, run: StudyRun) -> tuple[Path, Path]:
    """The run's job logs, named by run: stdout and stderr of its latest job."""
    stem = jobs_dir(params) / run.name.replace("/", "_")
    return stem.with_suffix(".out"), stem.with_suffix(".err")


def _job_record(run: StudyRun) -> dict[str, Any] | None:
    path = RunFiles(run.dir).job
    return json.loads(path.read_text()) if path.exists() else None


def _record_job(params: StudyParams, run: StudyRun, job: submitit.Job, launcher: str,
                slot: int | None) -> None:
    """Write the run's ``job.json`` and point its named logs at the job's files."""
    atomic_write_text(json.dumps({"launcher": launcher, "job_id": job.job_id, "slot": slot}),
                      RunFiles(run.dir).job)
    for link, target in zip(_logs(params, run), (job.paths.stdout, job.paths.stderr),
                            strict=True):
        temporary = link.with_name(f".{link.name}.new")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target.name)
        os.replace(temporary, link)


def _process_alive(pid: int) -> bool:
    """Whether the local job whose controller has this pid still runs."""
    try:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False  # a job this process started, which has ended (now reaped)
    except ChildProcessError:
        pass  # started by an earlier kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: the pid was reused
    cmdline = Path(f"/proc/{pid}/cmdline")  # where there is /proc, make sure it is our job
    return not cmdline.parent.exists() or b"submitit" in cmdline.read_bytes()


def _job_alive(params: StudyParams, record: dict[str, Any]) -> bool:
    if record["launcher"] == "slurm":
        return not submitit.SlurmJob(jobs_dir(params), record["job_id"]).done()
    return _process_alive(int(record["job_id"]))


def _finished(run: StudyRun) -> bool:
    """Whether the run is complete; a run folder trained with other settings, or damaged, is
    refused here, before anything is submitted (as ``train`` refuses it)."""
    try:
        completed_run(run.config)
    except IncompleteRunError as err:
        if err.reason in ("mismatch", "damaged"):
            raise
        return False
    return True


def status(params: StudyParams, runs: Sequence[StudyRun] | None = None) -> pd.DataFrame:
    """One row per run (default: every run of the study): ``state`` (``done``; ``running``:
    its job is queued or trains; ``waiting``: not in a job), the epochs done of ``epochs`` (read
    from its history), its job's ``launcher``, ``job_id`` and local ``slot``."""
    rows = []
    for run in params.runs() if runs is None else runs:
        row = {"run": run.name, "state": "waiting", "epoch": 0, "epochs": run.config.epochs,
               "launcher": None, "job_id": None, "slot": None}
        if _finished(run):
            row.update(state="done", epoch=run.config.epochs)
        else:
            row["epoch"] = len(read_history(RunFiles(run.dir).history))
            record = _job_record(run)
            if record is not None and _job_alive(params, record):
                row.update(state="running", **record)
        rows.append(row)
    columns = ["run", "state", "epoch", "epochs", "launcher", "job_id", "slot"]
    return pd.DataFrame(rows, columns=columns).set_index("run")


def _job_config(config: TrainConfig) -> TrainConfig:
    """A run's config as a job trains it: a job sees only its own GPU, as ``cuda``."""
    return replace(config, device="cuda") if config.device.startswith("cuda:") else config


def _submit_local(params: StudyParams, runs: Sequence[StudyRun], table: pd.DataFrame
                  ) -> list[StudyRun]:
    """Submit as many runs as free slots allow, each slot on a GPU of its own when there are."""
    gpus = 0 if params.training.device == "cpu" else torch.cuda.device_count()
    busy = set(table.slot[table.state == "running"].dropna().astype(int))
    free = [slot for slot in range(params.jobs or max(gpus, 1)) if slot not in busy]
    executor = _DetachedLocalExecutor(folder=jobs_dir(params))
    submitted = []
    for run, slot in zip(runs, free, strict=False):  # as many as free slots
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=int(gpus > 0),
                                   visible_gpus=(slot % gpus,) if gpus else ())
        job = executor.submit(TrainJob(), _job_config(run.config))
        _record_job(params, run, job, "local", slot)
        submitted.append(run)
    return submitted


def _submit_slurm(params: StudyParams, runs: Sequence[StudyRun]) -> list[StudyRun]:
    """Submit the runs as one SLURM job array, ``params.jobs`` at once."""
    if shutil.which("sbatch") is None:
        raise RuntimeError("launcher slurm needs SLURM's sbatch, which this machine does not "
                           "have; run on the cluster's login node, or use -p launcher local")
    executor = submitit.SlurmExecutor(folder=jobs_dir(params))
    executor.update_parameters(**{
        "job_name": f"imlib-{params.profile}",
        "gpus_per_node": 0 if params.training.device == "cpu" else 1,
        "array_parallelism": params.jobs or len(runs),
        **(params.slurm or {})})
    jobs = executor.map_array(TrainJob(), [_job_config(run.config) for run in runs])
    for run, job in zip(runs, jobs, strict=True):
        _record_job(params, run, job, "slurm", None)
    return list(runs)


def submit(params: StudyParams, runs: Sequence[StudyRun] | None = None) -> list[StudyRun]:
    """Submit, as ``params.launcher`` says (``local`` or ``slurm``), the runs (default: every
    run of the study) that are neither complete nor in a job that still runs; ``local`` submits
    only as many as its free slots allow. Returns the runs submitted (none twice: a run whose
    job runs is left to it)."""
    if params.launcher not in ("local", "slurm"):
        raise ValueError(f"submit needs launcher local or slurm, got {params.launcher!r}")
    table = status(params, runs)
    runs = params.runs() if runs is None else runs
    waiting = [run for run in runs if table.state[run.name] == "waiting"]
    if not waiting:
        return []
    if params.launcher == "local":
        return _submit_local(params, waiting, table)
    return _submit_slurm(params, waiting)


# --- following the jobs -------------------------------------------------------------------


class _Progress:
    """The runs' states while jobs train: a table refreshed in place in a notebook a person
    watches (no widget: the saved notebook keeps the last table); otherwise a line each time a
    run's job starts, ends or fails (an executed notebook, a log)."""

    def __init__(self) -> None:
        self.live = not quiet() and "ipykernel" in sys.modules
        self.handle: Any = None
        self.shown: dict[str, str] = {}

    def __call__(self, table: pd.DataFrame) -> None:
        if self.live:
            from IPython.display import display

            view = pd.DataFrame({
                "state": table.state,
                "epoch": [f"{e} of {n}" for e, n in zip(table.epoch, table.epochs, strict=True)],
                "job": [f"{launcher} {job}" if pd.notna(job) else "" for launcher, job
                        in zip(table.launcher, table.job_id, strict=True)]}, index=table.index)
            if self.handle is None:
                self.handle = display(view, display_id=True)
            else:
                self.handle.update(view)
            return
        for name, row in table.iterrows():
            before = self.shown.get(name, "done" if row.state == "done" else "waiting")
            if row.state != before:
                job = f" as {row.launcher} job {row.job_id}" if row.state == "running" else ""
                print(f"{name}: {row.state}{job}", flush=True)
            self.shown[name] = row.state


def _failure(params: StudyParams, run: StudyRun, row: pd.Series, record: dict[str, Any]) -> str:
    """One line on a failed job: which, where it stopped, its log and its last line."""

    err = _logs(params, run)[1]
    lines = err.read_text(errors="replace").strip().splitlines() if err.exists() else []
    last = f" ({lines[-1].strip()[:300]})" if lines else ""
    return (f"{run.name}: {record['launcher']} job {record['job_id']} ended at epoch "
            f"{row.epoch} of {row.epochs}{last}; log: {project_path(err)}")


def follow(params: StudyParams, poll_s: float = 2.0) -> pd.DataFrame:
    """Submit the study's runs that need it, as free slots allow, and wait for every job,
    showing each run's epoch (from its history) every ``poll_s`` seconds. A job that ends
    without finishing its run is named, with its log, once the others end (RuntimeError);
    calling this again resubmits it. Interrupted, the jobs keep running, and calling this again
    re-attaches to them. Returns the final status table."""
    runs = params.runs()
    followed: set[str] = set()
    failed: dict[str, str] = {}
    show = _Progress()
    try:
        while True:
            table = status(params, runs)
            for run in runs:
                if run.name in followed and table.state[run.name] == "waiting":
                    failed.setdefault(run.name, _failure(params, run, table.loc[run.name],
                                                         _job_record(run)))
            followed |= set(table.index[table.state == "running"])
            submitted = submit(params, [run for run in runs if run.name not in failed])
            followed |= {run.name for run in submitted}
            if submitted:
                table = status(params, runs)
            table.loc[list(failed), "state"] = "failed"
            show(table)
            if not table.state.isin(["running", "waiting"]).any():
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print("interrupted: the submitted jobs keep running; run this again to follow them "
              "(nothing is submitted twice)", file=sys.stderr)
        raise
    if failed:
        raise RuntimeError(
            f"{len(failed)} job(s) failed:\n" + "\n".join(failed.values()) + "\nRun this "
            f"notebook again (./run_all.sh --profile {params.profile} --only 03_training, with "
            "the same -p options) to resubmit them: each resumes from its last finished epoch")
    return table


def train_runs(params: StudyParams, poll_s: float = 2.0) -> None:
    """Train every run of the study as ``params.launcher`` says: ``inline``, one after another
    in this process; ``local`` or ``slurm``, as jobs (``follow``). Complete runs are reused,
    interrupted ones resume from their last finished epoch."""
    if params.launcher == "inline":
        for run in params.runs():
            with exclusive_lock(run.dir):
                train(run.config, job={"launcher": "inline", "job_id": None})
        return
    if (status(params).state == "waiting").any():
        params.load_data()  # downloaded here if need be: jobs starting together never download it
    follow(params, poll_s)
