"""Headless execution of the notebooks, in order, on one profile (what ``run_all.sh`` runs).

Each ``notebooks/NN_name.py`` (Jupytext percent format) is converted to ``.ipynb`` with the
``python3`` kernel and executed by papermill with the profile's name and overrides as parameters,
into ``<runs_dir>/notebooks/``. Parameters are validated before any notebook runs; one run of a
profile at a time (a lock in ``runs_dir``); the first failing notebook stops the run with its
name, the failing cell and the executed copy's path. The terminal gets one line per notebook;
the cells' output stays in the executed copies (``--verbose`` shows it as well).

    python -m imlib.pipeline [--profile smoke] [-p KEY VALUE]... [--fresh] [--only NAME]...
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from imlib import study
from imlib.data import data_root
from imlib.io import (FolderBusy, clean_stale_temporaries, created_by_imlib, exclusive_lock,
                      mark_created)
from imlib.study import StudyParams, load_params, parse_override, profiles
from imlib.train import resolve_device

__all__ = ["NOTEBOOKS_DIR", "KERNEL_ENVIRONMENT", "NotebookFailed", "notebooks", "validate",
           "outputs", "remove_outputs", "run", "main"]

NOTEBOOKS_DIR = study.PROJECT_ROOT / "notebooks"
CIFAR_HOST = ("www.cs.toronto.edu", 443)
# Set for the notebooks' kernels: progress bars become one line per finished run (an executed
# copy stores no widgets), and Jupyter's path-migration warning stays off the terminal.
KERNEL_ENVIRONMENT = {"TQDM_DISABLE": "1", "JUPYTER_PLATFORM_DIRS": "1"}
# The kernel's own log stays quiet: its transport warning is about remote kernels, not ours,
# and a Ctrl-C leaves it writing to a closed socket. Errors in cells reach us through papermill.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]

FRESH_HELP = """\
delete, before running, what the selected notebooks wrote for this profile, so nothing is
resumed: 02 -> runs_dir/nmi, 03 -> the training runs of the selected protocols, variants and
seeds, 04 -> their evaluation folders, 05 -> their figures folders (01 and 06 write nothing);
without --only, all of these and the executed notebooks. Only folders imlib created (they hold
a .imlib-created marker) are deleted, never a folder above them or another profile's; a later
notebook's results built on deleted ones are named as stale. Refused when runs_dir or
figures_dir is the checkout, holds it, or overlaps another profile's folders."""


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names it, the failing cell and the executed copy."""


def notebooks() -> list[str]:
    """The notebooks' names in execution order (``01_theory``, ...)."""
    return sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


def _cifar100_reachable(timeout: float = 5.0) -> bool:
    root = data_root()
    if (root / "cifar-100-python").is_dir() or (root / "cifar-100-python.tar.gz").is_file():
        return True
    try:
        socket.create_connection(CIFAR_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


# What the notebooks need from the machine: a device for the models (03 trains, 04 evaluates),
# the data set (all but 05, which redraws from saved results only).
NEEDS_DEVICE = ("03_training", "04_evaluation")
NEEDS_DATA = ("01_theory", "02_nmi_validation", "03_training", "04_evaluation",
              "06_reproduction_report")


def validate(profile: str, overrides: dict[str, Any],
             selected: Sequence[str] | None = None) -> StudyParams:
    """The profile's parameters, or a ValueError that says what is allowed; also checks that
    this machine has the device and the data that the ``selected`` notebooks (default: all)
    need, so a GPU study's figures can be redrawn on a laptop (``--only 05_figures``)."""
    params = load_params(profile, overrides)
    selected = notebooks() if selected is None else selected
    if any(name in NEEDS_DEVICE for name in selected):
        resolve_device(params.training.device)
    needs_data = any(name in NEEDS_DATA for name in selected)
    if needs_data and params.training.dataset == "cifar100" and not _cifar100_reachable():
        raise ValueError(
            f"profile {profile!r} needs CIFAR-100, which is neither in {data_root()} nor "
            f"downloadable ({CIFAR_HOST[0]} unreachable). Place cifar-100-python.tar.gz there "
            "(or set IMLIB_DATA to its folder), or run the 'smoke' profile.")
    return params


# --- what each notebook writes, and --fresh --------------------------------------------------


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


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it, else absolute."""
    path = Path(path).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _check_own_folders(params: StudyParams) -> None:
    """Refuse a runs_dir or figures_dir that --fresh must not clear: the checkout, a folder
    holding it, or one that overlaps another profile's folders."""
    checkout = study.PROJECT_ROOT.resolve()
    own = {"runs_dir": params.runs_root.resolve(), "figures_dir": params.figures.parent.resolve()}
    for name, folder in own.items():
        if folder == checkout or folder in checkout.parents:
            raise ValueError(
                f"--fresh refuses {name} {getattr(params, name)!r}: it is the checkout or holds "
                f"it; give the profile a folder of its own (its default is runs/{params.profile} "
                f"or paper_figures/{params.profile})")
    for other in profiles():
        if other == params.profile:
            continue
        try:
            theirs = load_params(other)
        except ValueError:
            continue  # a broken profile owns no folder to protect
        their_folders = (theirs.runs_root.resolve(), theirs.figures.parent.resolve())
        for name, folder in own.items():
            clash = next((f for f in their_folders if _overlap(folder, f)), None)
            if clash is not None:
                raise ValueError(
                    f"--fresh refuses {name} {getattr(params, name)!r}: it overlaps profile "
                    f"{other!r}'s folder {_shown(clash)}; give {params.profile!r} a folder of "
                    "its own")


def remove_outputs(params: StudyParams, names: list[str]) -> list[Path]:
    """``--fresh``: delete the folders the notebooks ``names`` write (all notebooks: the
    executed copies too), only those carrying imlib's marker; returns the deleted folders.
    Raises ValueError, deleting nothing, when runs_dir or figures_dir is not the profile's own."""
    _check_own_folders(params)
    folders = [folder for name in names for folder in outputs(params, name)]
    if set(names) == set(notebooks()):
        folders.append(_executed_dir(params))
    removed = []
    for folder in folders:
        if created_by_imlib(folder) and not folder.is_symlink():
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def _report_removed(params: StudyParams, names: list[str], removed: list[Path]) -> None:
    print(f"--fresh: deleted {len(removed)} folder(s) under {_shown(params.runs_root)} and "
          f"{_shown(params.figures.parent)}", flush=True)
    if not removed:
        return
    later = [n for n in notebooks() if n > max(names) and n not in names and outputs(params, n)]
    if later:
        print(f"--fresh: {', '.join(later)} read what was deleted; their results are stale "
              "until they run again", flush=True)


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


def _execute(name: str, params: StudyParams, overrides: dict[str, Any],
             log_output: bool) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed = _executed_dir(params) / f"{name}.ipynb"
    _to_ipynb(NOTEBOOKS_DIR / f"{name}.py", executed)
    print(f"{name:<28}", end="\n" if log_output else "", flush=True)
    start = time.perf_counter()
    parameters: dict[str, Any] = {"profile": params.profile, "overrides": overrides}
    if "interactive" in papermill.inspect_notebook(str(executed)):
        parameters["interactive"] = False  # no widget frontend: the static view instead
    try:
        papermill.execute_notebook(
            _shown(executed), _shown(executed), kernel_name="python3", log_output=log_output,
            progress_bar=False, cwd=str(study.PROJECT_ROOT), extra_arguments=KERNEL_ARGUMENTS,
            parameters=parameters)
    except PapermillExecutionError as err:
        print("failed", flush=True)
        raise NotebookFailed(
            f"notebook {name} failed in cell [{err.exec_count}]: {err.ename}: {err.evalue}\n"
            f"the executed copy with the error: {_shown(executed)}") from None
    print(f"{time.perf_counter() - start:6.0f} s", flush=True)


def run(profile: str = "smoke", overrides: dict[str, Any] | None = None, fresh: bool = False,
        only: list[str] | None = None, log_output: bool = False) -> StudyParams:
    """Execute the notebooks (all, or those named in ``only``) on ``profile``; ``fresh``
    deletes first what they wrote before (see ``remove_outputs``)."""
    overrides = dict(overrides or {})
    selected = _select(only)
    params = validate(profile, overrides, selected)
    if fresh:
        _check_own_folders(params)
    with exclusive_lock(params.runs_root):
        every_output = [f for name in notebooks() for f in outputs(params, name)]
        for folder in [*every_output, _executed_dir(params)]:
            clean_stale_temporaries(folder)
        if fresh:
            _report_removed(params, selected, remove_outputs(params, selected))
        mark_created(_executed_dir(params))
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
                     log_output=args.verbose)
    except (ValueError, yaml.YAMLError, FolderBusy) as err:
        print(f"run_all.sh: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except NotebookFailed as err:
        print(f"run_all.sh: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nrun_all.sh: interrupted; finished runs and every run's last finished epoch are "
              "kept: the same command resumes", file=sys.stderr)
        return 130
    print(f"results: {_shown(params.runs_root)} (executed notebooks in "
          f"{_shown(_executed_dir(params))}), figures: {_shown(params.figures.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
