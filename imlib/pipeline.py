"""Headless execution of the notebooks, in order, on one profile (what ``run_all.sh`` runs).

Each ``notebooks/NN_name.py`` (Jupytext percent format) is converted to ``.ipynb`` with the
``python3`` kernel and executed by papermill with the profile's name and overrides as parameters,
into ``<runs_dir>/notebooks/``. Parameters are validated before any notebook runs; the first
failing notebook stops the run with its name, the failing cell and the executed copy's path.

    python -m imlib.pipeline [--profile smoke] [-p KEY VALUE]... [--fresh] [--only NAME]...
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from imlib.data import data_root
from imlib.study import PROJECT_ROOT, StudyParams, load_params, profiles

__all__ = ["NOTEBOOKS_DIR", "notebooks", "validate", "run", "main"]

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
CIFAR_HOST = ("www.cs.toronto.edu", 443)


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


def validate(profile: str, overrides: dict[str, Any]) -> StudyParams:
    """The profile's parameters, or a ValueError that says what is allowed."""
    params = load_params(profile, overrides)
    if params.dataset == "cifar100" and not _cifar100_reachable():
        raise ValueError(
            f"profile {profile!r} needs CIFAR-100, which is neither in {data_root()} nor "
            f"downloadable ({CIFAR_HOST[0]} unreachable). Place cifar-100-python.tar.gz there "
            "(or set IMLIB_DATA to its folder), or run the 'smoke' profile.")
    return params


def _to_ipynb(source: Path, target: Path) -> None:
    import jupytext

    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    target.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, target)


def run(profile: str = "smoke", overrides: dict[str, Any] | None = None, fresh: bool = False,
        only: list[str] | None = None, log_output: bool = True) -> StudyParams:
    """Execute the notebooks (all, or those named in ``only``) on ``profile``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    overrides = dict(overrides or {})
    params = validate(profile, overrides)
    selected = notebooks()
    if only:
        missing = sorted(set(only) - set(selected))
        if missing:
            raise ValueError(f"unknown notebook(s) {missing}; available: {selected}")
        selected = [name for name in selected if name in only]
    if fresh:
        for folder in (params.runs, params.figures):
            shutil.rmtree(folder, ignore_errors=True)
    out_dir = params.runs / "notebooks"
    for name in selected:
        source, executed = NOTEBOOKS_DIR / f"{name}.py", out_dir / f"{name}.ipynb"
        _to_ipynb(source, executed)
        print(f"== {name} ({profile}) -> {executed}", flush=True)
        try:
            papermill.execute_notebook(
                str(executed), str(executed), kernel_name="python3", log_output=log_output,
                progress_bar=False, cwd=str(PROJECT_ROOT),
                parameters={"profile": profile, "overrides": overrides})
        except PapermillExecutionError as err:
            raise NotebookFailed(
                f"notebook {name} failed in cell [{err.exec_count}]: {err.ename}: {err.evalue}\n"
                f"the executed copy with the error: {executed}") from None
    return params


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names it, the failing cell and the executed copy."""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke",
                        help=f"parameter set (default smoke): {', '.join(profiles())}")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"), help="override one parameter (YAML value)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the profile's runs and figures first (no resume)")
    parser.add_argument("--only", action="append", metavar="NOTEBOOK",
                        help="run only this notebook (repeatable), e.g. 05_figures")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    overrides = {key: yaml.safe_load(value) for key, value in args.param}
    try:
        params = run(args.profile, overrides, fresh=args.fresh, only=args.only)
    except (ValueError, NotebookFailed) as err:
        print(f"run_all.sh: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 1
    print(f"done: results in {params.runs}, figures in {params.figures.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
