"""Training the study's runs: in this process, as processes on this machine, or as SLURM jobs.

Notebook 03 calls ``train_runs(params)``; ``params.launcher`` says how (submitit does the
launching, no scheduler of our own):

- ``inline`` (the default): one run after another, here;
- ``local``: one process per run on this machine (submitit's local executor), ``params.jobs``
  at once (default: one per GPU, or one without GPUs), each on a GPU of its own if any;
- ``slurm``: one SLURM job array (``map_array``), ``params.jobs`` at once (default: all), with the
  ``params.slurm`` settings (submitit's SlurmExecutor parameters: ``time``, ``partition``...).

Every run trains with ``imlib.train.train``, which resumes from the run's ``last.pt``, while it
holds the run folder's lock: two jobs never train one run. A submitted job's id is kept in the
run folder (``job.json``), so a second call re-attaches to the jobs that still run and submits
only the runs that are neither complete nor in a job; interrupting the notebook leaves the jobs
running. On SLURM the job is ``Checkpointable``: preempted, or near its time limit, it is
requeued and continues from the run's last finished epoch. Each job's stdout and stderr are in
``<runs_dir>/jobs/`` (``<protocol>_<variant>_seed<k>.out`` and ``.err``, links to the files
submitit names by job id), and the run's provenance records the launcher and its job ids.
SLURM is asked through ``imlib.slurm``: one call per look at every job of the study.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import submitit
import torch

from imlib._checks import check_int
from imlib.io import FolderBusy, atomic_write_text, exclusive_lock, project_path
from imlib.progress import quiet
from imlib.runs import IncompleteRunError, RunFiles, TrainConfig, completed_run, read_history
from imlib.slurm import (NEVER_STARTS, PENDING, RUNNING, SLURM_SETTINGS, check_cluster,
                         executor_parameters, job_states, stop_when_slurm_ends)
from imlib.train import train

if TYPE_CHECKING:
    from imlib.study import StudyParams, StudyRun

__all__ = ["LAUNCHERS", "check_launcher", "TrainJob", "jobs_dir", "status", "submit", "follow",
           "train_runs"]

LAUNCHERS = ("inline", "local", "slurm")
LOCAL_TIMEOUT_MIN = 30 * 24 * 60  # submitit's local default (2 min) would stop every run
POLL_S = {"local": 2.0, "slurm": 30.0}  # seconds between two looks at the jobs
PROGRESS_S = 60.0  # seconds between two progress lines while jobs train


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
    if slurm and launcher != "slurm":
        raise ValueError(f"slurm settings are used only by launcher slurm, and launcher is "
                         f"{launcher!r}: add -p launcher slurm, or drop -p slurm")
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
    if slurm.get("signal_delay_s", 0) * 2 > slurm.get("time", 0) * 60:
        raise ValueError(f"slurm signal_delay_s must be at most half the time limit "
                         f"({slurm['time'] * 30} s), got {slurm['signal_delay_s']}")


# --- the job ------------------------------------------------------------------------------


class TrainJob(submitit.helpers.Checkpointable):
    """What each job runs: ``train(config)`` (which resumes from the run's ``last.pt`` and
    resolves ``config.device`` on the machine the job runs on) while holding the run folder's
    lock, with the launcher and the run's job ids in its provenance.

    When SLURM preempts the job or its time limit nears, submitit calls the inherited
    ``checkpoint(config)``, which returns ``DelayedSubmission(self, config)``: the same run,
    requeued, which resumes from its last finished epoch (the epoch in progress is lost).
    Cancelled or requeued by SLURM, it stops at once (``stop_when_slurm_ends``)."""

    def __call__(self, config: TrainConfig) -> None:
        environment = submitit.JobEnvironment()
        if environment.cluster == "slurm":
            stop_when_slurm_ends(environment.job_id)
        record = _read_record(RunFiles(config.out_dir).job) or {}
        with exclusive_lock(config.out_dir):
            train(config, job={"launcher": environment.cluster, "job_id": environment.job_id,
                               "job_ids": record.get("job_ids", [environment.job_id])})


class _DetachedLocalExecutor(submitit.LocalExecutor):
    """submitit's local executor with each job's controller in a session of its own. Jupyter
    interrupts a kernel, and ipykernel shuts one down, by signalling the kernel's process
    group, which would stop its jobs too; detached, they keep running, as SLURM jobs do.
    ``kill -INT -- -JOB_ID`` stops one (a local job's id is its process group; the job ignores
    SIGTERM, as submitit's jobs do). The controller is started as ``start_controller`` does."""

    def _submit_command(self, command: str) -> submitit.local.local.LocalJob:
        gpus = self.parameters.get("visible_gpus", ())[:self.parameters.get("gpus_per_node", 0)]
        environment = {**os.environ, "SUBMITIT_LOCAL_NTASKS": "1",
                       "SUBMITIT_LOCAL_COMMAND": command,
                       "SUBMITIT_LOCAL_TIMEOUT_S": str(int(60 * LOCAL_TIMEOUT_MIN)),
                       "SUBMITIT_LOCAL_SIGNAL_DELAY_S": "30", "SUBMITIT_LOCAL_NODEID": "0",
                       "SUBMITIT_LOCAL_JOB_NUM_NODES": "1", "SUBMITIT_STDERR_TO_STDOUT": "",
                       "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_WITH_SHELL": "",
                       "CUDA_VISIBLE_DEVICES": ",".join(str(gpu) for gpu in gpus)}
        process = subprocess.Popen(  # noqa: S603 (our own interpreter, no shell)
            [sys.executable, "-m", "submitit.local._local", str(self.folder)],
            env=environment, start_new_session=True)
        return submitit.local.local.LocalJob(folder=self.folder, job_id=str(process.pid),
                                             process=process, tasks=[0])


# --- the jobs of a study ------------------------------------------------------------------


def jobs_dir(params: StudyParams) -> Path:
    """<runs_dir>/jobs: submitit's files and each run's job logs."""
    return params.runs_root / "jobs"


def _logs(params: StudyParams, run: StudyRun) -> tuple[Path, Path]:
    """The run's job logs, named by run: stdout and stderr of its latest job."""
    stem = jobs_dir(params) / run.name.replace("/", "_")
    return stem.with_suffix(".out"), stem.with_suffix(".err")


def _read_record(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _job_record(run: StudyRun) -> dict[str, Any] | None:
    return _read_record(RunFiles(run.dir).job)


def _record_job(params: StudyParams, run: StudyRun, job: submitit.Job, launcher: str,
                slot: int | None) -> None:
    """Write the run's ``job.json`` (every job id that trained the run, the latest last) and
    point its named logs at the job's files."""
    before = _job_record(run) or {}
    job_ids = before.get("job_ids", [before["job_id"]] if before else []) + [job.job_id]
    atomic_write_text(json.dumps({"launcher": launcher, "job_id": job.job_id,
                                  "job_ids": job_ids, "slot": slot}), RunFiles(run.dir).job)
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
        (state, _), = job_states([record["job_id"]]).values()
        return state in PENDING | RUNNING
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


_COLUMNS = ["run", "state", "epoch", "epochs", "launcher", "job_id", "slot", "slurm_state",
            "reason"]


def status(params: StudyParams, runs: Sequence[StudyRun] | None = None) -> pd.DataFrame:
    """One row per run (default: every run of the study): ``state`` (``done``; ``pending``:
    its job is queued, SLURM's ``reason`` says why; ``running``: its job trains; ``waiting``:
    in no job, or its job ended before the run did), the epochs done of ``epochs`` (read from
    its history), its latest job's ``launcher``, ``job_id``, local ``slot`` and
    ``slurm_state``. One ``sacct`` call for all the SLURM jobs."""
    rows, records = [], {}
    for run in params.runs() if runs is None else runs:
        row = dict.fromkeys(_COLUMNS) | {"run": run.name, "state": "waiting", "epoch": 0,
                                          "epochs": run.config.epochs}
        if _finished(run):
            row.update(state="done", epoch=run.config.epochs)
        else:
            row["epoch"] = len(read_history(RunFiles(run.dir).history))
            record = _job_record(run)
            if record is not None:
                records[run.name] = record
                row.update({key: record.get(key) for key in ("launcher", "job_id", "slot")})
        rows.append(row)
    slurm = [record["job_id"] for record in records.values() if record["launcher"] == "slurm"]
    queue = job_states(slurm) if slurm else {}
    for row in rows:
        record = records.get(row["run"])
        if record is None:
            continue
        if record["launcher"] == "slurm":
            row["slurm_state"], row["reason"] = queue[record["job_id"]]
            row["state"] = ("pending" if row["slurm_state"] in PENDING else "running"
                            if row["slurm_state"] in RUNNING else "waiting")
        elif _process_alive(int(record["job_id"])):
            row["state"] = "running"
    return pd.DataFrame(rows, columns=_COLUMNS).set_index("run")


def _job_config(config: TrainConfig) -> TrainConfig:
    """A run's config as a job trains it: a job sees only its own GPU, as ``cuda``; any other
    device is kept as given, and resolved where the job runs."""
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
    """Submit the runs as one SLURM job array, ``params.jobs`` at once. A rejected sbatch
    leaves no submission files behind, and is named in one line."""
    check_cluster(params)
    folder = jobs_dir(params)
    before = set(folder.iterdir()) if folder.exists() else set()
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(**executor_parameters(params, len(runs)))
    try:
        jobs = executor.map_array(TrainJob(), [_job_config(run.config) for run in runs])
    except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError) as err:
        for path in set(folder.iterdir()) - before:
            path.unlink()
        lines = [line for line in str(err).splitlines() if "sbatch: error" in line]
        why = lines[-1].strip() if lines else str(err).strip().splitlines()[-1]
        hint = ("; this cluster has no GPUs to give: use -p slurm with gpus_per_node: 0 and "
                "-p device cpu (or auto)" if "gres" in why.lower() else "")
        raise RuntimeError(f"SLURM refused the job array ({why}){hint}; fix -p slurm and "
                           "run this again (nothing was submitted)") from None
    for run, job in zip(runs, jobs, strict=True):
        _record_job(params, run, job, "slurm", None)
    return list(runs)


def _submit_waiting(params: StudyParams, runs: Sequence[StudyRun], table: pd.DataFrame
                    ) -> list[StudyRun]:
    waiting = [run for run in runs if table.state[run.name] == "waiting"]
    if not waiting:
        return []
    if params.launcher == "local":
        return _submit_local(params, waiting, table)
    return _submit_slurm(params, waiting)


def submit(params: StudyParams, runs: Sequence[StudyRun] | None = None) -> list[StudyRun]:
    """Submit, as ``params.launcher`` says (``local`` or ``slurm``), the runs (default: every
    run of the study) that are neither complete nor in a job that is queued or runs;
    ``local`` submits only as many as its free slots allow. Returns the runs submitted (none
    twice: a run whose job is queued or runs is left to it)."""
    if params.launcher not in ("local", "slurm"):
        raise ValueError(f"submit needs launcher local or slurm, got {params.launcher!r}")
    runs = params.runs() if runs is None else runs
    return _submit_waiting(params, runs, status(params, runs))


# --- following the jobs -------------------------------------------------------------------


def _job_text(row: pd.Series) -> str:
    return f"{row.launcher} job {row.job_id}"


def _state_text(row: pd.Series) -> str:
    reason = f" ({row.reason})" if row.state == "pending" and row.reason not in (None, "") \
        else ""
    return f"{row.state}{reason}"


class _Progress:
    """The runs' states while jobs train: a table refreshed in place in a notebook a person
    watches (no widget: the saved notebook keeps the last table); otherwise a line each time a
    run's state changes (submitted, re-attached, pending with its reason, running, done,
    failed), and every ``progress_s`` seconds the epochs done of each unfinished run (an
    executed notebook, a log)."""

    def __init__(self, progress_s: float) -> None:
        self.live = not quiet() and "ipykernel" in sys.modules
        self.handle: Any = None
        self.shown: dict[str, str] = {}
        self.progress_s, self.last_progress = progress_s, time.monotonic()

    def __call__(self, table: pd.DataFrame, submitted: set[str]) -> None:
        if self.live:
            from IPython.display import display

            view = pd.DataFrame({
                "state": [_state_text(row) for _, row in table.iterrows()],
                "epoch": [f"{e} of {n}" for e, n in zip(table.epoch, table.epochs, strict=True)],
                "job": [_job_text(row) if pd.notna(row.job_id) else ""
                        for _, row in table.iterrows()]}, index=table.index)
            if self.handle is None:
                self.handle = display(view, display_id=True)
            else:
                self.handle.update(view)
            return
        first = not self.shown
        for name, row in table.iterrows():
            shown = _state_text(row)
            if name in submitted:
                print(f"{name}: submitted as {_job_text(row)}", flush=True)
            elif first and row.state in ("pending", "running"):
                print(f"{name}: re-attached to {_job_text(row)}, {shown}", flush=True)
            elif shown != self.shown.get(name, "done" if row.state == "done" else "waiting"):
                print(f"{name}: {shown}", flush=True)
            self.shown[name] = shown
        if time.monotonic() - self.last_progress >= self.progress_s:
            self.last_progress = time.monotonic()
            open_runs = table[table.state != "done"]
            runs = ", ".join(f"{name} {row.epoch}/{row.epochs} {_state_text(row)}"
                             for name, row in open_runs.iterrows())
            print(f"progress: {len(table) - len(open_runs)} of {len(table)} runs done; {runs}",
                  flush=True)


def _log_line(err: Path) -> str:
    """The line of a job's stderr that says why it ended: SLURM's ``*** JOB ... ***``, else
    the last line not from submitit's logger (the error raised), else the last."""
    lines = [line.strip() for line in err.read_text(errors="replace").splitlines()
             if line.strip()] if err.exists() else []
    slurm = [line for line in lines if "*** JOB" in line or "*** STEP" in line]
    own = [line for line in lines if not line.startswith("submitit ")]
    line = (slurm or own or lines or [""])[-1]
    return f" ({line[:300]})" if line else ""


def _wait_unlocked(folder: Path, limit_s: float = 300.0) -> None:
    """Wait until no process holds the run folder's lock (SLURM names a job ended first)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            with exclusive_lock(folder):
                return
        except FolderBusy:
            time.sleep(1.0)


def _failure(params: StudyParams, run: StudyRun, row: pd.Series) -> str | None:
    """One line on a job that ended before its run: which, its SLURM state, the epoch its run
    folder reached (read once the job let go of it), the log line that says why, its log;
    None when the run was complete by then (a job cancelled as it finished)."""
    if row.launcher == "slurm":
        _wait_unlocked(run.dir)
        if _finished(run):
            return None
    epoch = len(read_history(RunFiles(run.dir).history))
    state = f" {row.slurm_state}" if row.launcher == "slurm" else ""
    if row.slurm_state == "UNKNOWN":
        state = " (its SLURM state unknown: accounting unavailable)"
    err = _logs(params, run)[1]
    return (f"{run.name}: {_job_text(row)} ended{state} at epoch {epoch} of {row.epochs}"
            f"{_log_line(err)}; log: {project_path(err)}")


def _never_starts(params: StudyParams, name: str, row: pd.Series) -> str | None:
    """The one line for a job pending for a reason that waiting never resolves, or None."""
    why = NEVER_STARTS.get(row.reason or "") if row.state == "pending" else None
    if why is None:
        return None
    return (f"{name}: {_job_text(row)} can never start (pending, {row.reason}: {why}); "
            f"cancel the array (scancel {str(row.job_id).split('_')[0]}), fix -p slurm and "
            f"run notebook 03 again ({_rerun(params)})")


def _rerun(params: StudyParams, overrides: dict[str, Any] | None = None) -> str:
    """The command that runs notebook 03 again, with the overrides as ``-p key value``."""
    options = " ".join(f"-p {key} {shlex.quote(v if isinstance(v, str) else json.dumps(v))}"
                       for key, v in (overrides or {}).items())
    return f"./run_all.sh --profile {params.profile} --only 03_training " + (
        options or "with the same -p options")


def follow(params: StudyParams, poll_s: float | None = None, progress_s: float = PROGRESS_S,
           overrides: dict[str, Any] | None = None) -> pd.DataFrame:
    """Submit the study's runs that need it, as free slots allow, and wait for every job,
    looking at them every ``poll_s`` seconds (default: the profile's ``slurm`` poll_s, or
    ``POLL_S``; one status call a look). A job that ends without finishing its run is named,
    with its SLURM state and log, once the others end (RuntimeError); calling this again
    resubmits it. A job that can never start stops this at once. Interrupted, the jobs keep
    running, and calling this again re-attaches to them. ``overrides`` (the notebook's) make
    the resubmit command exact. Returns the final status table."""
    if poll_s is None:
        poll_s = (params.slurm or {}).get("poll_s", POLL_S[params.launcher])
    runs = params.runs()
    followed: set[str] = set()
    failed: dict[str, str] = {}
    show = _Progress(progress_s)
    try:
        while True:
            table = status(params, runs)
            for run in runs:
                row = table.loc[run.name]
                if run.name in followed and row.state == "waiting" and run.name not in failed:
                    failure = _failure(params, run, row)
                    if failure is None:
                        table.loc[run.name, ["state", "epoch"]] = ["done", row.epochs]
                        continue
                    failed[run.name] = failure
                stuck = _never_starts(params, run.name, row)
                if stuck:
                    raise RuntimeError(stuck)
            followed |= set(table.index[table.state.isin(["pending", "running"])])
            submitted = _submit_waiting(params, [run for run in runs if run.name not in failed],
                                        table)
            for run in submitted:
                record = _job_record(run)
                table.loc[run.name, ["state", "launcher", "job_id", "slot", "reason"]] = [
                    "running" if record["launcher"] == "local" else "pending",
                    record["launcher"], record["job_id"], record["slot"], "submitted"]
            followed |= {run.name for run in submitted}
            table.loc[list(failed), "state"] = "failed"
            show(table, {run.name for run in submitted})
            if not table.state.isin(["pending", "running", "waiting"]).any():
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print("interrupted: the submitted jobs keep running; run this again to follow them "
              "(nothing is submitted twice)", file=sys.stderr)
        raise
    if failed:
        raise RuntimeError(
            f"{len(failed)} job(s) failed:\n" + "\n".join(failed.values()) + "\nRun this "
            f"notebook again ({_rerun(params, overrides)}) to resubmit them: "
            "each resumes from its last finished epoch")
    return table


def train_runs(params: StudyParams, poll_s: float | None = None,
               overrides: dict[str, Any] | None = None) -> None:
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
    follow(params, poll_s, overrides=overrides)
