"""Headless execution of the notebooks, in order, on one profile (what ``run_all.sh`` runs).

Each ``notebooks/NN_name.py`` (Jupytext percent format) is converted to ``.ipynb`` with the
``python3`` kernel and executed by papermill with the profile's name and overrides as parameters,
into ``<runs_dir>/notebooks/``. Parameters are validated before any notebook runs; one run of a
profile at a time (a lock in ``runs_dir``); the folders a run writes are created and marked as
the profile's here, before the notebooks run, so ``--fresh`` deletes only what the project made.
The first failing notebook stops the run with one line: its name, the cause (a cell's error, a
dead kernel, a full disk, memory) and the fix; the failed copy is kept beside the last good one.
The terminal gets one line per notebook; the cells' output stays in the executed copies
(``--verbose`` shows it as well).

    python -m imlib.pipeline [--profile smoke] [-p KEY VALUE]... [--fresh] [--only NAME]...
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import yaml

from imlib.data import data_root, holdout_split
from imlib.io import (CREATED_MARKER, PROJECT_ROOT, FolderBusy, clean_stale_temporaries,
                      created_by, exclusive_lock, mark_created)
from imlib.runs import resolve_device
from imlib.study import TRAINING_FIELDS, StudyParams, load_params, parse_override, profiles

__all__ = ["NOTEBOOKS_DIR", "SOURCE_FOLDERS", "KERNEL_ENVIRONMENT", "NotebookFailed",
           "notebooks", "validate", "outputs", "remove_outputs", "run", "main"]

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
# Folders of the checkout that no output may be, lie in or hold (nor the checkout itself).
SOURCE_FOLDERS = (".git", "notebooks", "imlib", "tests", "benchmarks")
CIFAR_HOST = ("www.cs.toronto.edu", 443)
# Set for the notebooks' kernels: progress bars become one line per finished run (an executed
# copy stores no widgets), and Jupyter's path-migration warning stays off the terminal.
KERNEL_ENVIRONMENT = {"TQDM_DISABLE": "1", "JUPYTER_PLATFORM_DIRS": "1"}
# The kernel's own log stays quiet: its transport warning is about remote kernels, not ours,
# and a Ctrl-C leaves it writing to a closed socket. Errors in cells reach us through papermill.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
# Peak memory of generating the synthetic set, measured: about 10 bytes per stored uint8 value
# (imlib.data.synthetic draws its images in float32, a few full-size tensors at a time).
SYNTHETIC_BYTES_PER_VALUE = 10

FRESH_HELP = """\
delete, before running, what the selected notebooks wrote for this profile, so nothing is
resumed: 02 -> runs_dir/nmi, 03 -> the training runs of the selected protocols, variants and
seeds, 04 -> their evaluation folders, 05 -> their figures folders (01 and 06 write nothing);
without --only, all of these and the executed notebooks. Only folders that run_all.sh created
for this profile are deleted (their .imlib-created record names it): never a folder that
existed before, a folder above them or another profile's. Refused, deleting nothing, when a
folder to delete holds another profile's folders or is reached through a symbolic link below
runs_dir or figures_dir. A later notebook's results built on deleted ones are named as stale."""


class NotebookFailed(RuntimeError):
    """A notebook stopped; the one-line message names it, the cause, the fix and the failed
    executed copy."""


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


def _inside(folder: Path, others: Sequence[Path]) -> Path | None:
    """The first of ``others`` that ``folder`` is or lies in, or None."""
    return next((o for o in others if o == folder or o in folder.parents), None)


def _check_output_folders(params: StudyParams) -> None:
    """No output in the checkout's own place: runs_dir and figures_dir may not be the
    checkout, hold it, or be or lie in one of its source folders (``SOURCE_FOLDERS``); no
    folder the profile writes may be or lie in another profile's runs_dir or figures_dir."""
    checkout = PROJECT_ROOT.resolve()
    sources = [checkout / name for name in SOURCE_FOLDERS]
    own = {"runs_dir": params.runs_root.resolve(), "figures_dir": params.figures.parent.resolve()}
    for name, folder in own.items():
        if folder == checkout or folder in checkout.parents:
            raise ValueError(f"{name} {getattr(params, name)!r} is the checkout or holds it; give "
                             "the profile a folder of its own")
        source = _inside(folder, sources)
        if source is not None:
            raise ValueError(f"{name} {getattr(params, name)!r} lies in the checkout's source "
                             f"folder {source.name}/; give the profile a folder of its own")
    mine = [params.runs_root, params.figures.parent, *_written(params, notebooks())]
    for other in profiles():
        if other == params.profile:
            continue
        try:
            theirs = load_params(other)
        except ValueError:
            continue  # a broken profile owns no folder to protect
        roots = [theirs.runs_root.resolve(), theirs.figures.parent.resolve()]
        for folder in mine:
            their = _inside(folder.resolve(), roots)
            if their is not None:
                raise ValueError(
                    f"{_shown(folder)} lies in {_shown(their)}, a folder of profile {other!r}; "
                    f"give {params.profile!r} folders of its own (-p runs_dir, -p figures_dir)")


# What the notebooks need from the machine: a device for the models (03 trains, 04 evaluates),
# the data set (all but 05, which redraws from saved results only).
NEEDS_DEVICE = ("03_training", "04_evaluation")
NEEDS_DATA = ("01_theory", "02_nmi_validation", "03_training", "04_evaluation",
              "06_reproduction_report")


def validate(profile: str, overrides: dict[str, Any],
             selected: Sequence[str] | None = None) -> StudyParams:
    """The profile's parameters, or a ValueError that says what is allowed; also checks the
    output folders (``_check_output_folders``) and that this machine has the device, the data
    and the memory that the ``selected`` notebooks (default: all) need, so a GPU study's
    figures can be redrawn on a laptop (``--only 05_figures``)."""
    params = load_params(profile, overrides)
    _check_output_folders(params)
    selected = notebooks() if selected is None else selected
    if any(name in NEEDS_DEVICE for name in selected):
        resolve_device(params.training.device)
    if not any(name in NEEDS_DATA for name in selected):
        return params
    if params.training.dataset == "synthetic":
        _check_synthetic_set(params)
    else:
        root = data_root(params.training.data_root)
        if not _cifar100_reachable(root):
            raise ValueError(
                f"profile {profile!r} needs CIFAR-100, which is neither in {root} nor "
                f"downloadable ({CIFAR_HOST[0]} unreachable). Place cifar-100-python.tar.gz there "
                "(or set IMLIB_DATA or -p data_root to its folder), or run the 'smoke' profile.")
    return params


# --- the folders a run writes: created and marked here, deleted by --fresh ---------------------


def _executed_dir(params: StudyParams) -> Path:
    return params.runs_root / "notebooks"


def outputs(params: StudyParams, notebook: str) -> list[Path]:
    """The folders ``notebook`` writes for the profile's selected protocols, variants, seeds."""
    studies = [params.for_protocol(protocol) for protocol in params.protocols]
    if notebook == "02_nmi_validation":
        return [params.nmi_dir]
    if notebook == "03_training":
        return [run.dir for run in params.runs()]
    if notebook == "04_evaluation":
        return [s.eval_dir for s in studies]
    if notebook == "05_figures":
        return [s.figures for s in studies]
    return []


def _written(params: StudyParams, names: Sequence[str]) -> list[Path]:
    """The folders the notebooks ``names`` write; all notebooks: the executed copies too."""
    folders = [folder for name in names for folder in outputs(params, name)]
    return folders + [_executed_dir(params)] if set(names) == set(notebooks()) else folders


def _path_down(params: StudyParams, folder: Path) -> list[Path]:
    """The folders from ``folder``'s root (runs_dir or figures_dir, the nearer) down to it."""
    roots = [r for r in (params.runs_root, params.figures.parent)
             if r == folder or r in folder.parents]
    root = max(roots, key=lambda r: len(r.parts))
    steps = folder.relative_to(root).parts
    return [root] + [root.joinpath(*steps[:i]) for i in range(1, len(steps) + 1)]


def _check_owner(params: StudyParams) -> None:
    """Refuse folders that another profile's run created (their ``.imlib-created`` names it)
    anywhere on the way to what this profile writes: two profiles never share a folder."""
    for folder in _written(params, notebooks()):
        for path in _path_down(params, folder):
            owner = created_by(path)
            if owner not in (None, params.profile):
                raise ValueError(
                    f"{_shown(path)} was created by profile {owner!r}; give {params.profile!r} "
                    "folders of its own (-p runs_dir, -p figures_dir)")


def _fresh_plan(params: StudyParams, names: list[str]) -> tuple[list[Path], list[Path]]:
    """``--fresh``: the folders to delete (created by this profile's runs) and those kept
    (existing, not created by it); a ValueError, before anything is deleted, for a folder
    reached through a symbolic link below runs_dir or figures_dir or holding another
    profile's folders."""
    delete, keep = [], []
    for folder in _written(params, names):
        linked = next((p for p in _path_down(params, folder)[1:] if p.is_symlink()), None)
        if linked is not None:
            raise ValueError(f"--fresh refuses {_shown(linked)}: a symbolic link; it deletes "
                             "only folders run_all.sh created, not what a link points to")
        if not folder.is_dir():
            continue
        if created_by(folder) != params.profile:
            keep.append(folder)
            continue
        for marker in folder.rglob(CREATED_MARKER):
            owner = created_by(marker.parent)
            if owner not in (None, params.profile):
                raise ValueError(f"--fresh refuses {_shown(folder)}: it holds "
                                 f"{_shown(marker.parent)}, created by profile {owner!r}")
        delete.append(folder)
    return delete, keep


def remove_outputs(params: StudyParams, names: list[str]) -> tuple[list[Path], list[Path]]:
    """``--fresh``: delete the folders the notebooks ``names`` write (all notebooks: the
    executed copies too) that this profile's runs created; returns the deleted folders and
    those kept (not created by it). Raises ValueError, deleting nothing, as ``_fresh_plan``."""
    delete, keep = _fresh_plan(params, names)
    for folder in delete:
        shutil.rmtree(folder)
    return delete, keep


def _report_removed(params: StudyParams, names: list[str], removed: list[Path],
                    kept: list[Path]) -> None:
    print(f"--fresh: deleted {len(removed)} folder(s) under {_shown(params.runs_root)} and "
          f"{_shown(params.figures.parent)}", flush=True)
    if kept:
        print(f"--fresh: kept {len(kept)} folder(s) that run_all.sh did not create for this "
              f"profile (e.g. {_shown(kept[0])}): what they hold is reused or written over; "
              "delete them by hand to start them over", flush=True)
    if not removed:
        return
    later = [n for n in notebooks() if n > max(names) and n not in names and outputs(params, n)]
    if later:
        print(f"--fresh: {', '.join(later)} read what was deleted; their results are stale "
              "until they run again", flush=True)


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it, else absolute."""
    path = Path(path).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


# --- running ---------------------------------------------------------------------------------


def _to_ipynb(source: Path, target: Path) -> None:
    import jupytext

    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    jupytext.write(notebook, target)


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
    """One line per overridden setting, as given and as the runs get it."""
    for key, value in overrides.items():
        applied = getattr(params.training if key in TRAINING_FIELDS else params, key)
        print(f"-p {key} {given.get(key, _shown_value(value))} -> {key} = "
              f"{_shown_value(applied)}", flush=True)


_DISK_FULL = re.compile(r"No space left on device|Errno 28|PytorchStreamWriter|"
                        r"inline_container\.cc(?!.*Reader)")
_OUT_OF_MEMORY = re.compile(r"out of memory|can't allocate memory|Cannot allocate memory")


def _free(folder: Path) -> int:
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _failure(name: str, params: StudyParams, err: BaseException, failed: Path) -> str | None:
    """The one line for notebook ``name``'s failure ``err`` (a cell's error, a dead kernel, a
    full disk, memory), naming the cause, the fix and the failed copy; None for an error of
    the runner itself."""
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    kept = "finished runs and epochs are kept, the same command resumes"
    copy = f"the failed copy: {_shown(failed)}" if failed.exists() else "no executed copy"
    if isinstance(err, PapermillExecutionError):
        ename, error = err.ename, f"{err.ename}: {err.evalue}"
    elif isinstance(err, OSError) and err.errno == errno.ENOSPC:
        ename, error = "OSError", str(err)
    elif isinstance(err, DeadKernelError):
        return (f"notebook {name} stopped: its kernel died (killed, most often by the system "
                f"for lack of memory); free memory or lower -p eval_batch_size, then rerun: "
                f"{kept}; {copy}")
    else:
        return None
    if _DISK_FULL.search(error):
        folder = min((params.runs_root, params.figures.parent), key=_free)
        free = f"{_free(folder) / 1e6:.0f} MB free"
        return (f"notebook {name} stopped: disk full in {_shown(folder)} ({free}); free space "
                f"there or choose another disk with -p runs_dir, then rerun: {kept}; {copy}")
    if ename in ("MemoryError", "OutOfMemoryError") or _OUT_OF_MEMORY.search(error):
        return (f"notebook {name} stopped: out of memory ({ename}); free memory (another "
                f"process on the device?) or lower -p eval_batch_size, then rerun: {kept}; "
                f"{copy}")
    return f"notebook {name} failed in cell [{err.exec_count}]: {error}; {copy}"


def _execute(name: str, params: StudyParams, overrides: dict[str, Any],
             log_output: bool) -> None:
    """Execute notebook ``name`` into a copy that replaces ``NN_name.ipynb`` only when it
    succeeds; a failed copy is kept as ``NN_name.failed.ipynb``, the last good one untouched."""
    import papermill

    folder = _executed_dir(params)
    executed, running, failed = (folder / f"{name}{end}"
                                 for end in (".ipynb", ".running.ipynb", ".failed.ipynb"))
    print(f"{name:<28}", end="\n" if log_output else "", flush=True)
    start = time.perf_counter()
    parameters: dict[str, Any] = {"profile": params.profile, "overrides": overrides}
    try:
        _to_ipynb(NOTEBOOKS_DIR / f"{name}.py", running)
        if "interactive" in papermill.inspect_notebook(str(running)):
            parameters["interactive"] = False  # no widget frontend: the static view instead
        papermill.execute_notebook(
            _shown(running), _shown(running), kernel_name="python3", log_output=log_output,
            progress_bar=False, cwd=str(PROJECT_ROOT), extra_arguments=KERNEL_ARGUMENTS,
            parameters=parameters)
    except BaseException as err:
        if running.exists():
            os.replace(running, failed)
        if isinstance(err, KeyboardInterrupt):
            raise
        print("failed", flush=True)
        message = _failure(name, params, err, failed)
        if message is None:
            raise
        raise NotebookFailed(message) from None
    os.replace(running, executed)
    failed.unlink(missing_ok=True)
    print(f"{time.perf_counter() - start:6.0f} s", flush=True)


def run(profile: str = "smoke", overrides: dict[str, Any] | None = None, fresh: bool = False,
        only: list[str] | None = None, log_output: bool = False,
        given: Mapping[str, str] | None = None) -> StudyParams:
    """Execute the notebooks (all, or those named in ``only``) on ``profile``; ``fresh``
    deletes first what they wrote before (see ``remove_outputs``). Each override is echoed,
    as ``given`` on the command line (default: its value) and as applied."""
    overrides = dict(overrides or {})
    selected = _select(only)
    params = validate(profile, overrides, selected)
    _echo_overrides(params, overrides, given or {})
    _check_owner(params)
    if fresh:
        _fresh_plan(params, selected)  # refuses before anything is created
    roots = [params.runs_root, params.figures.parent]
    for root in roots:  # what lies above the profile's folders is no one's: never marked
        if _inside(root.parent, roots) is None:
            root.parent.mkdir(parents=True, exist_ok=True)
    mark_created(params.runs_root, profile)
    with exclusive_lock(params.runs_root):
        _check_owner(params)  # again under the lock: another profile may have started since
        executed = _executed_dir(params)
        for folder in [*_written(params, notebooks()), executed]:
            clean_stale_temporaries(folder)
        for leftover in executed.glob("*.running.ipynb"):  # of a run that was killed
            leftover.unlink()
        if fresh:
            _report_removed(params, selected, *remove_outputs(params, selected))
        for folder in [*_written(params, selected), executed]:
            mark_created(folder, profile)
        with mock.patch.dict(os.environ, KERNEL_ENVIRONMENT):
            for name in selected:
                _execute(name, params, overrides, log_output)
    return params


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke",
                        help=f"parameter set (default smoke): {', '.join(profiles())}")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"),
                        help="override one parameter; VALUE is YAML, e.g. -p lr 1e-3, "
                             "-p seeds '[0, 1]', -p protocols '[paper]'")
    parser.add_argument("--fresh", action="store_true", help=FRESH_HELP)
    parser.add_argument("--only", action="append", metavar="NOTEBOOK",
                        help="run only this notebook (repeatable), e.g. 05_figures")
    parser.add_argument("--verbose", action="store_true",
                        help="also show the cells' output on the terminal")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``run_all.sh``'s command line; exit 2 with one line on stderr for a bad parameter or a
    profile already running, 1 when a notebook fails, 130 on Ctrl-C (what finished is kept)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        overrides = {key: parse_override(value) for key, value in args.param}
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
    except KeyboardInterrupt:
        print("\nrun_all.sh: interrupted; finished runs and every run's last finished epoch are "
              "kept: the same command resumes", file=sys.stderr)
        return 130
    figures = params.figures.parent
    plain = load_params(args.profile).figures.parent
    note = ""
    if figures != plain and "figures_dir" not in overrides:
        note = f" (not {_shown(plain)}: that keeps the figures of the run without -p options)"
    print(f"results: {_shown(params.runs_root)} (executed notebooks in "
          f"{_shown(_executed_dir(params))}), figures: {_shown(figures)}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
