"""Headless execution of the notebooks, in order, on one profile (what ``run_all.sh`` runs).

Parameters are validated before any notebook runs (``validate``), with the output folders
(``imlib.outputs``) and this checkout's code in the kernels (``imlib.execution``); one run of a
profile at a time (a lock in ``runs_dir``); the folders a run writes are created and recorded
as the run's here, before the notebooks run, so ``--fresh`` deletes only what the run made.
Each notebook runs as ``imlib.execution.execute`` says; the first failing one stops the run
with one line. Relative paths given with ``-p`` are read from the caller's folder
(``$IMLIB_CALLER_CWD``, which ``run_all.sh`` sets before it changes to the checkout).

    python -m imlib.pipeline [--profile smoke] [-p KEY VALUE]... [--fresh] [--only NAME]...
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from imlib.data import data_root, holdout_split
from imlib.execution import NotebookFailed, check_kernel_code, execute
from imlib.io import PROJECT_ROOT, FolderBusy, clean_stale_temporaries, exclusive_lock, mark_created
from imlib.outputs import (RUN_WRITER, WRITERS, check_output_folders, check_owner,
                           executed_dir, fresh_plan, outputs, remove_outputs, report_removed,
                           shown, written)
from imlib.runs import resolve_device
from imlib.slurm import check_cluster
from imlib.study import (PATH_FIELDS, TRAINING_FIELDS, StudyParams, load_params,
                         parse_override, profiles)

__all__ = ["NOTEBOOKS_DIR", "CALLER_CWD", "notebooks", "validate", "run", "main"]

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
CALLER_CWD = "IMLIB_CALLER_CWD"  # the folder run_all.sh was called from
CIFAR_HOST = ("www.cs.toronto.edu", 443)
# Peak memory of generating the synthetic set, measured: about 10 bytes per stored uint8 value
# (imlib.data.synthetic draws its images in float32, a few full-size tensors at a time).
SYNTHETIC_BYTES_PER_VALUE = 10

FRESH_HELP = """\
delete, before running, what the selected notebooks wrote for this profile and runs_dir, so
nothing is resumed: 02 -> runs_dir/nmi, 03 -> the training runs of the selected protocols,
variants and seeds, 04 -> their evaluation folders, 05 -> their figures folders (01 and 06
write nothing); without --only, all of these and the executed notebooks. A folder is deleted
only when its .imlib-created record says that this profile's run in this runs_dir created it
for that notebook: never a folder that existed before, a folder above them, another profile's
or another run's. Refused, deleting nothing, when a folder to delete holds folders recorded
otherwise, is reached through a symbolic link below runs_dir or figures_dir, or holds a run
whose job still runs or whose lock is held (the message names the job and the command that
stops it). A later notebook's results built on deleted ones are named as stale."""


def notebooks() -> list[str]:
    """The notebooks' names in execution order (``01_theory``, ...)."""
    return sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


# --- validation: everything a run needs, before anything runs ----------------------------------


def _cifar100_reachable(root: Path, timeout: float = 5.0) -> bool:
    if (root / "cifar-100-python").is_dir() or (root / "cifar-100-python.tar.gz").is_file():
        return True
    try:
        socket.create_connection(CIFAR_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


def _available_memory() -> int | None:
    """Bytes this machine can still give a process (Linux's MemAvailable, capped by a cgroup
    v2 limit); None where that is not known."""
    try:
        found = re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    except OSError:
        return None
    if found is None:
        return None
    available = int(found.group(1)) * 1024
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return available
    return available if limit == "max" else min(available, int(limit) - used)


def _check_synthetic_set(params: StudyParams) -> None:
    """The synthetic set the profile sizes must fit in memory, hold images to select the epoch
    with and at least one full batch of training images under every selected protocol."""
    config = params.training
    per_class, classes = config.synthetic_per_class, config.synthetic_classes
    test_per_class = config.synthetic_test_per_class or max(1, per_class // 5)
    needed = classes * (per_class + test_per_class) * 3 * 32 * 32 * SYNTHETIC_BYTES_PER_VALUE
    available = _available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"synthetic_classes {classes} with {per_class + test_per_class} images per class "
            f"needs about {needed / 1e9:.1f} GB of memory to generate; this machine has "
            f"{available / 1e9:.1f} GB available: lower synthetic_classes or synthetic_per_class")
    for run in params.runs():
        fraction, batch = run.config.holdout_fraction, run.config.batch_size
        held = 0
        if fraction > 0:  # every class is split alike: one class's split says it all
            held = len(holdout_split(torch.zeros(per_class, dtype=torch.long), fraction)[1])
            if held == 0:
                raise ValueError(
                    f"synthetic_per_class {per_class} leaves no image per class to hold out "
                    f"(holdout_fraction {fraction}, {run.protocol} protocol); give "
                    "synthetic_per_class >= 2")
        if classes * (per_class - held) < batch:
            raise ValueError(
                f"synthetic_per_class {per_class} with holdout_fraction {fraction} leaves "
                f"{classes * (per_class - held)} training images, fewer than one batch of "
                f"{batch} ({run.protocol} protocol, {run.variant}); raise synthetic_per_class")


# What the notebooks need from the machine: a device for the models (03 trains, 04 evaluates),
# the data set (all but 05, which redraws from saved results only). With launcher slurm, 03's
# runs train on the cluster's nodes, which resolve the device and the data where they run.
NEEDS_DEVICE = ("03_training", "04_evaluation")
NEEDS_DATA = ("01_theory", "02_nmi_validation", "03_training", "04_evaluation",
              "06_reproduction_report")


def _check_nmi_memory(params: StudyParams) -> None:
    """The NMI's joint histograms of the largest batch (training's ``batch_size`` x
    ``augment_batches`` images, or evaluation's ``eval_batch_size``) must fit in this
    machine's memory: ``nmi_bins``^2 counters per image and channel, and a few values per
    pixel."""
    config = params.training
    device = resolve_device(config.device)
    images = max(config.batch_size * config.augment_batches, config.eval_batch_size)
    counter = 2 if device.type == "cpu" else 4  # imlib.nmi's counters: int16 on the CPU
    needed = images * 3 * (config.nmi_bins ** 2 * counter + 32 * 32 * 20)
    if device.type == "cpu":
        available = _available_memory()
    else:
        available = torch.cuda.mem_get_info(device)[0]
    if available is not None and needed > available:
        raise ValueError(
            f"nmi_bins {config.nmi_bins} with batches of {images} images needs about "
            f"{needed / 1e9:.1f} GB for the NMI's joint histograms; {device.type} has "
            f"{available / 1e9:.1f} GB available: lower -p eval_batch_size (or batch_size) "
            "or nmi_bins")


def _check_name_lengths(params: StudyParams) -> None:
    """No folder name the run writes may exceed the file system's limit (255 bytes on most)."""
    folders = {"runs_dir": params.runs_root, "figures_dir": params.figures_root}
    for name, folder in folders.items():
        existing = Path(folder.anchor)  # the deepest existing folder on the way: its limit
        for part in folder.parts[1:]:
            if len(os.fsencode(part)) > 255 or not (existing / part).is_dir():
                break
            existing = existing / part
        limit = os.pathconf(existing, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
        long = next((part for part in folder.parts if len(os.fsencode(part)) > limit), None)
        if long is not None:
            raise ValueError(f"{name} {shown(folder)} has a folder name of "
                             f"{len(os.fsencode(long))} bytes, over this file system's "
                             f"{limit}: give a shorter -p {name}")


def validate(profile: str, overrides: dict[str, Any],
             selected: Sequence[str] | None = None) -> StudyParams:
    """The profile's parameters, or a ValueError that says what is allowed; also checks the
    output folders (``imlib.outputs.check_output_folders``), their names' lengths, that the
    kernels import this checkout's code, and that this machine has the device, the data and
    the memory that the ``selected`` notebooks (default: all) need here, so a GPU study's
    figures can be redrawn on a laptop (``--only 05_figures``) and a SLURM study submitted
    from a login node without a GPU."""
    params = load_params(profile, overrides)
    check_output_folders(params)
    _check_name_lengths(params)
    check_kernel_code()
    selected = notebooks() if selected is None else selected
    if "03_training" in selected:
        try:  # with launcher slurm: sbatch here, the partition and account known to SLURM
            check_cluster(params)
        except RuntimeError as err:
            raise ValueError(str(err)) from None
    here = [name for name in selected
            if not (params.launcher == "slurm" and name == "03_training")]
    if any(name in NEEDS_DEVICE for name in here):
        resolve_device(params.training.device)
        _check_nmi_memory(params)
    if not any(name in NEEDS_DATA for name in here):
        return params
    if params.training.dataset == "synthetic":
        _check_synthetic_set(params)
    elif params.training.dataset == "cifar100":
        root = data_root(params.training.data_root)
        if not _cifar100_reachable(root):
            raise ValueError(
                f"profile {profile!r} needs CIFAR-100, which is neither in {root} nor "
                f"downloadable ({CIFAR_HOST[0]} unreachable). Place cifar-100-python.tar.gz there "
                "(or set IMLIB_DATA or -p data_root to its folder), or run the 'smoke' profile.")
    return params


# --- running ---------------------------------------------------------------------------------


def _select(only: list[str] | None) -> list[str]:
    available = notebooks()
    if not only:
        return available
    missing = sorted(set(only) - set(available))
    if missing:
        raise ValueError(f"unknown notebook(s) {missing}; available: {available}")
    return [name for name in available if name in only]


def _shown_value(value: Any) -> str:
    """A setting as a profile would spell it (YAML): [0, 1], true, null, 0.002."""
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(map(_shown_value, value))}]"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def _echo_overrides(params: StudyParams, overrides: Mapping[str, Any],
                    given: Mapping[str, str]) -> None:
    """One line per overridden setting, as given and as the runs get it (paths absolute)."""
    for key, value in overrides.items():
        applied = getattr(params.training if key in TRAINING_FIELDS else params, key)
        print(f"-p {key} {given.get(key, _shown_value(value))} -> {key} = "
              f"{_shown_value(applied)}", flush=True)


def _from_caller(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides with each relative path (runs_dir, figures_dir, data_root,
    cifar100c_dir) made absolute from the caller's folder (``$IMLIB_CALLER_CWD``, else the
    working folder): ``-p runs_dir runs/x`` means the folder where the command was typed."""
    caller = Path(os.environ.get(CALLER_CWD) or os.getcwd())
    resolved = dict(overrides)
    for key in PATH_FIELDS:
        value = resolved.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # YAML reads a folder called 5 as a number
        if isinstance(value, str) and value.strip() and not value.startswith("~"):
            resolved[key] = str(caller / value) if not Path(value).is_absolute() else value
    return resolved


def _create_folders(params: StudyParams, names: Sequence[str], every: bool) -> None:
    """Create and record the folders the notebooks ``names`` write; a folder that cannot be
    made (read-only, no permission, a name too long) is one line (ValueError)."""
    runs_dir = params.runs_root
    try:
        for writer, folder in written(params, names, every):
            mark_created(folder, params.profile, runs_dir, writer)
        mark_created(executed_dir(params), params.profile, runs_dir, RUN_WRITER)
    except OSError as err:
        raise _unwritable(err) from None


def _unwritable(err: OSError) -> Exception:
    """A ValueError in one line for a folder that cannot be written; other errors unchanged."""
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ValueError(f"cannot write {err.filename} ({err.strerror}); give writable "
                          "folders with -p runs_dir and -p figures_dir")
    if err.errno == errno.ENAMETOOLONG:
        return ValueError(f"cannot create {err.filename}: a name is too long for the file "
                          "system; give shorter -p runs_dir and -p figures_dir")
    return err


def run(profile: str = "smoke", overrides: dict[str, Any] | None = None, fresh: bool = False,
        only: list[str] | None = None, log_output: bool = False,
        given: Mapping[str, str] | None = None) -> StudyParams:
    """Execute the notebooks (all, or those named in ``only``) on ``profile``; ``fresh``
    deletes first what they wrote before (see ``imlib.outputs.remove_outputs``). Each
    override is echoed, as ``given`` on the command line (default: its value) and as
    applied; ``log_output`` (``--verbose``) shows every cell's output."""
    overrides = dict(overrides or {})
    selected = _select(only)
    every = set(selected) == set(notebooks())
    params = validate(profile, overrides, selected)
    _echo_overrides(params, overrides, given or {})
    check_owner(params)
    if fresh:
        fresh_plan(params, selected, every)  # refuses before anything is created
    roots = [params.runs_root, params.figures_root]
    try:
        for root in roots:  # what lies above the profile's folders is no one's: never marked
            if not any(r == root.parent or r in root.parent.parents for r in roots):
                root.parent.mkdir(parents=True, exist_ok=True)
        mark_created(params.runs_root, profile, params.runs_root, RUN_WRITER)
    except OSError as err:
        raise _unwritable(err) from None
    with exclusive_lock(params.runs_root):
        check_owner(params)  # again under the lock: another run may have started since
        executed = executed_dir(params)
        for _, folder in [*written(params, WRITERS, every=True)]:
            clean_stale_temporaries(folder)
        clean_stale_temporaries(executed)
        for leftover in executed.glob("*.running.ipynb"):  # of a run that was killed
            leftover.unlink()
        if fresh:
            removed, kept = remove_outputs(params, selected, every)
            later = [n for n in notebooks() if n > max(selected) and n not in selected
                     and outputs(params, n)]
            report_removed(params, selected, removed, kept, later)
        _create_folders(params, selected, every)
        for name in selected:
            execute(NOTEBOOKS_DIR / f"{name}.py", params, overrides, log_output)
    return params


def _parse(argv: list[str]) -> argparse.Namespace:
    """The command line; each ``-p KEY VALUE`` takes the two words after it as they are, so a
    value that begins with ``-`` (``-p runs_dir -runs``, ``-p lr -1``) is a value, not an
    option."""
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke",
                        help=f"parameter set (default smoke): {', '.join(profiles())}")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"),
                        help="override one parameter; VALUE is YAML 1.2, e.g. -p lr 1e-3, "
                             "-p seeds '[0, 1]', -p protocols '[paper]'; a relative path is "
                             "read from the folder the command is typed in")
    parser.add_argument("--fresh", action="store_true", help=FRESH_HELP)
    parser.add_argument("--only", action="append", metavar="NOTEBOOK",
                        help="run only this notebook (repeatable), e.g. 05_figures")
    parser.add_argument("--verbose", action="store_true",
                        help="also show every cell's output on the terminal")
    params, rest, words = [], [], iter(argv)
    for word in words:
        if word in ("-p", "--param"):
            pair = [next(words, None), next(words, None)]
            if None in pair:
                parser.error(f"{word} needs a KEY and a VALUE, e.g. -p epochs 3")
            params.append(pair)
        else:
            rest.append(word)
    args = parser.parse_args(rest)
    args.param = params
    return args


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the runner is, so it stops as a Ctrl-C does (the failed copy
    kept, the kernel shut down)."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated


@contextlib.contextmanager
def _cell_output_shown(shown: bool) -> Iterator[None]:
    """``--verbose``: papermill logs every cell's output through ``logging``; print it while
    the run lasts (the handler is removed after, so no later logging writes to a stream that
    has gone)."""
    if not shown:
        yield
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("papermill")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def main(argv: list[str] | None = None) -> int:
    """``run_all.sh``'s command line; exit 2 with one line on stderr for a bad parameter or a
    profile already running, 1 when a notebook fails, 130 on Ctrl-C and 143 on SIGTERM (what
    finished is kept)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        overrides = _from_caller({key: parse_override(value) for key, value in args.param})
        with _cell_output_shown(args.verbose):
            params = run(args.profile, overrides, fresh=args.fresh, only=args.only,
                         log_output=args.verbose, given=dict(args.param))
    except (ValueError, yaml.YAMLError, FolderBusy) as err:
        print(f"run_all.sh: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except NotebookFailed as err:
        print(f"run_all.sh: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(f"run_all.sh: disk full ({err}); free space there, then rerun the same command",
              file=sys.stderr)
        return 1
    except _Terminated:
        print("\nrun_all.sh: terminated (SIGTERM); finished runs and every run's last finished "
              "epoch are kept: the same command resumes", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("\nrun_all.sh: interrupted; finished runs and every run's last finished epoch are "
              "kept: the same command resumes", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    figures = params.figures_root
    plain = load_params(args.profile).figures_root
    note = ""
    if figures != plain and "figures_dir" not in overrides:
        note = f" (not {shown(plain)}: that keeps the figures of the run without -p options)"
    print(f"results: {shown(params.runs_root)} (executed notebooks in "
          f"{shown(executed_dir(params))}), figures: {shown(figures)}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
