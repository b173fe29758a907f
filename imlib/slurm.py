"""Asking SLURM: the settings a profile's ``slurm`` mapping takes, the checks of a cluster
before anything is submitted, the state of a study's jobs from one call for them all, and, in
a job, whether SLURM is ending it (to stop at its SIGTERM).

``imlib.launch`` submits and follows the jobs; this module only asks. Every call to SLURM is a
single command (``sinfo``, ``sacctmgr``, ``sacct``, ``squeue``) that never raises for its exit
status: a failed answer is named in one line, with the fix.
"""

from __future__ import annotations

import getpass
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imlib.study import StudyParams

__all__ = ["SLURM_SETTINGS", "MIN_TIME_MIN", "PENDING", "RUNNING", "NEVER_STARTS",
           "signal_delay_s", "executor_parameters", "check_cluster", "job_states", "ending",
           "stop_when_slurm_ends"]

MIN_TIME_MIN = 2  # shorter SLURM limits leave no time to train an epoch between two requeues


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_int_from(minimum: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) \
        and value >= minimum


def _is_positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _is_shell_lines(value: Any) -> bool:
    return isinstance(value, list) and all(_is_name(line) for line in value)


def _is_sbatch_options(value: Any) -> bool:
    return isinstance(value, dict) and all(
        _is_name(k) and isinstance(v, (str, int, float, bool)) for k, v in value.items())


# The keys of a profile's `slurm` mapping: submitit's SlurmExecutor parameters of the same name
# (sbatch's options), and imlib's poll_s, checked here so that a typo stops before anything is
# submitted.
SLURM_SETTINGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "time": (_is_int_from(MIN_TIME_MIN),
             f"each job's time limit in minutes, an int >= {MIN_TIME_MIN}"),
    "partition": (_is_name, "a partition's name"),
    "gpus_per_node": (_is_int_from(0), "the GPUs of each job, an int >= 0 (default 1 with "
                                       "device cuda, 0 with cpu or auto)"),
    "cpus_per_task": (_is_int_from(1), "the CPU cores of each job, an int >= 1"),
    "mem": (_is_name, "the memory of each job, e.g. 32G"),
    "account": (_is_name, "an account's name"),
    "qos": (_is_name, "a quality of service's name"),
    "constraint": (_is_name, "a node feature, e.g. a100"),
    "exclude": (_is_name, "nodes to avoid, e.g. node[01-03]"),
    "setup": (_is_shell_lines,
              "a list of shell lines run before each job, e.g. [module load cuda]"),
    "signal_delay_s": (_is_int_from(10),
                       "the seconds before the time limit at which submitit requeues the job, "
                       "an int >= 10 (default: signal_delay_s())"),
    "poll_s": (_is_positive_number,
               "the seconds between two looks at the queue, a number > 0 (default 30)"),
    "additional_parameters": (_is_sbatch_options,
                              "a mapping of any other sbatch option to its value, "
                              "e.g. {mail-type: END}"),
}


def signal_delay_s(time_min: int) -> int:
    """Seconds before the time limit at which submitit's signal requeues a job: 20 % of the
    limit, between 10 and 90 s (submitit's fixed 90 s would signal a short job at once)."""
    return max(10, min(90, int(12 * time_min)))


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    """Run one SLURM command, its output as text (never raises for its exit status)."""
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


def _first_line(answer: subprocess.CompletedProcess[str]) -> str:
    lines = (answer.stderr or answer.stdout).strip().splitlines()
    return lines[0].strip() if lines else f"exit status {answer.returncode}"


def executor_parameters(params: StudyParams, runs: int) -> dict[str, Any]:
    """What the SlurmExecutor gets: one GPU per job with device cuda (none with cpu or auto,
    unless ``gpus_per_node`` says), and the requeue signal set from the time limit."""
    settings = {key: value for key, value in (params.slurm or {}).items() if key != "poll_s"}
    gpus = settings.pop("gpus_per_node", int(params.training.device.startswith("cuda")))
    return {"job_name": f"imlib-{params.profile}", "array_parallelism": params.jobs or runs,
            "signal_delay_s": signal_delay_s(settings["time"]),
            **({"gpus_per_node": gpus} if gpus else {}), **settings}


def check_cluster(params: StudyParams) -> None:
    """With launcher slurm, that this machine can submit (sbatch), and that the partition and
    account exist (``sinfo``, ``sacctmgr`` where there is one): one line naming the fix,
    before the first notebook runs (the pipeline calls this) and before anything is submitted."""
    if params.launcher != "slurm":
        return
    if shutil.which("sbatch") is None:
        raise RuntimeError("launcher slurm needs SLURM's sbatch, which this machine does not "
                           "have; run on the cluster's login node, or use -p launcher local")
    settings = params.slurm or {}
    partition, account = settings.get("partition"), settings.get("account")
    if partition and not _command("sinfo", "-h", "-p", partition, "-o", "%P").stdout.strip():
        known = _command("sinfo", "-h", "-o", "%P").stdout.split()
        raise RuntimeError(f"SLURM has no partition {partition!r} (sinfo knows {known}); fix "
                           "-p slurm's partition")
    if account and shutil.which("sacctmgr"):
        answer = _command("sacctmgr", "-n", "-P", "show", "associations",
                          f"user={getpass.getuser()}", f"account={account}", "format=account")
        if answer.returncode == 0 and not answer.stdout.strip():
            raise RuntimeError(f"SLURM account {account!r} is not one of "
                               f"{getpass.getuser()}'s (sacctmgr show associations); fix -p "
                               "slurm's account")


# SLURM's job states (sacct's and squeue's names) by what they mean for a run.
PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
            "SPECIAL_EXIT", "SUBMITTED"}
RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "SIGNALING",
            "STAGE_OUT", "STOPPED"}
# Pending reasons that never resolve by waiting, and what to change.
NEVER_STARTS = {
    "PartitionConfig": "it asks for more than the partition has (cpus_per_task, mem, "
                       "gpus_per_node)",
    "PartitionNodeLimit": "it asks for more nodes, or more per node, than the partition allows",
    "PartitionTimeLimit": "its time is over the partition's limit",
    "ReqNodeNotAvail": "the nodes it may use are not available (exclude, constraint)",
    "BadConstraints": "no node has its constraint with its resources",
    "InvalidAccount": "its account is not valid for this user",
    "InvalidQOS": "its qos is not valid for this user or account",
    "QOSMaxWallDurationPerJobLimit": "its time is over the qos's limit",
    "AssocMaxWallDurationPerJobLimit": "its time is over the account's limit",
}
_said: set[str] = set()  # one-line notices already printed by this process


def _say_once(line: str) -> None:
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr, flush=True)


def _array_ids(job_id: str) -> list[str]:
    """The job ids in one of SLURM's JobID fields: ``12_3``, or ``12_[0-4,7%2]``."""
    ranges = re.fullmatch(r"(\d+)_\[([\d,-]+)(%\d+)?\]", job_id)
    if ranges is None:
        return [job_id]
    main, spans = ranges.group(1), ranges.group(2).split(",")
    bounds = [[int(b) for b in span.split("-")] for span in spans]
    return [f"{main}_{k}" for b in bounds for k in range(b[0], b[-1] + 1)]


def _parse_jobs(text: str) -> dict[str, tuple[str, str]]:
    """``JobID|State|Reason`` lines into {job id: (state, reason)}. A line of one array
    element wins over a line of a range (sacct keeps listing an element that started in the
    range of the still pending ones)."""
    jobs: dict[str, tuple[str, str]] = {}
    ranges: dict[str, tuple[str, str]] = {}
    for line in text.strip().splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        ids = _array_ids(job_id.strip())
        for one in ids:
            (ranges if len(ids) > 1 or "[" in job_id else jobs)[one] = (
                state.split()[0] if state.strip() else "UNKNOWN", reason.strip())
    return ranges | jobs


def job_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """SLURM's state and pending reason of each job, from one ``sacct`` call for them all;
    a job sacct does not know (yet), or every job when accounting is unavailable, from one
    ``squeue`` call; a job neither knows has ended, ``UNKNOWN``."""
    arrays = ",".join(sorted({job_id.split("_")[0] for job_id in job_ids}))
    answer = _command("sacct", "-n", "-X", "-P", "-o", "JobID,State,Reason", "-j", arrays)
    jobs = _parse_jobs(answer.stdout) if answer.returncode == 0 else {}
    if answer.returncode != 0:
        _say_once(f"SLURM accounting is unavailable (sacct: {_first_line(answer)}): queued and "
                  "running jobs are followed with squeue, an ended job is judged by its run "
                  "folder; ask the cluster's admins to enable accounting (slurmdbd)")
    if any(job_id not in jobs for job_id in job_ids):
        queue = _command("squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T|%r")
        if queue.returncode != 0:
            raise RuntimeError(f"SLURM does not answer (squeue: {_first_line(queue)}); run "
                               "this again when it does (the jobs are kept)")
        queued = _parse_jobs(queue.stdout)
        jobs |= {job_id: queued.get(job_id, ("UNKNOWN", "")) for job_id in job_ids
                 if job_id not in jobs}
    return jobs


def ending(job_id: str) -> bool:
    """Whether SLURM is ending the job, asked of slurmctld (``squeue``; accounting may lag): a
    cancelled, requeued or timed-out job is ``COMPLETING`` from the moment SLURM sends it
    SIGTERM; a job only signalled (``scancel --signal``, a preemption's grace time) still runs.
    False when squeue fails."""
    answer = _command("squeue", "-h", "-j", job_id, "-o", "%T")
    return answer.returncode == 0 and answer.stdout.strip() not in RUNNING - {"COMPLETING"}


def stop_when_slurm_ends(job_id: str) -> None:
    """In SLURM job ``job_id``: stop at SIGTERM when SLURM is ending the job (``ending``).

    SLURM sends SIGTERM when it ends a job (``scancel``, ``scontrol requeue``, the time limit)
    and SIGKILL ``KillWait`` seconds later. submitit ignores SIGTERM, so a cancelled job would
    train on through that grace, past the moment SLURM names it ended, and change its run
    folder after the launcher read it. Stopped at once, the run keeps its last finished epoch,
    from which a requeued or resubmitted job resumes (the epoch in progress is lost, as it
    would be at SIGKILL). A SIGTERM while SLURM still runs the job goes to the handler it had
    (submitit's: it logs the signal and trains on, so that submitit's requeue signal finds the
    job)."""
    before = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        if ending(job_id):
            raise SystemExit(f"imlib: SLURM is ending job {job_id} (SIGTERM): stopped, its run "
                             "kept at its last finished epoch")
        if callable(before):
            before(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
