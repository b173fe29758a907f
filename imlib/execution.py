"""Executing one notebook headless: this checkout's code in the kernel, progress on the terminal,
and a failure said in one line.

Each ``notebooks/NN_name.py`` (Jupytext percent format) is converted to ``.ipynb`` and executed
by papermill into ``<runs_dir>/notebooks/``, through a kernel manager of our own that starts the
kernel with an explicit environment (this checkout first on ``PYTHONPATH``), its stdin closed,
in the checkout; it remembers how the kernel ended, so a kernel stopped by a signal is not
blamed on memory. The lines notebook 03 prints for progress (the launcher's states, the
engine's epochs) reach the terminal while it runs; ``--verbose`` shows every cell's output.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from imlib.io import PROJECT_ROOT
from imlib.outputs import executed_dir, shown
from imlib.study import StudyParams

__all__ = ["KERNEL_ENVIRONMENT", "PROGRESS_NOTEBOOKS", "NotebookFailed", "kernel_environment",
           "check_kernel_code", "CheckoutKernelManager", "failure", "execute", "execute_until"]

# Set for the notebooks' kernels: progress bars become one line per finished run (an executed
# copy stores no widgets), and Jupyter's path-migration warning stays off the terminal.
KERNEL_ENVIRONMENT = {"TQDM_DISABLE": "1", "JUPYTER_PLATFORM_DIRS": "1"}
# The kernel's own log stays quiet: its transport warning is about remote kernels, not ours,
# and a Ctrl-C leaves it writing to a closed socket. Errors in cells reach us through papermill.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
# The notebooks whose printed lines are progress (the launcher's states, the epochs of long
# training): shown on the terminal while they run, not only in the executed copy.
PROGRESS_NOTEBOOKS = ("03_training",)


class NotebookFailed(RuntimeError):
    """A notebook stopped; the one-line message names it, the cause, the fix and the failed
    executed copy."""


def kernel_environment() -> dict[str, str]:
    """The kernels' environment: this process's, with ``KERNEL_ENVIRONMENT`` and this checkout
    first on ``PYTHONPATH``, so the kernels import the code that validated the run."""
    path = [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, **KERNEL_ENVIRONMENT, "PYTHONPATH": os.pathsep.join(path)}


def check_kernel_code() -> None:
    """Refuse, with one line, a Python path on which the kernels would import another imlib
    than this checkout's (a ``.pth`` file or ``sitecustomize`` that puts another copy first)."""
    # As ipykernel_launcher does, without the working folder on the path: PYTHONPATH decides.
    code = "import sys; del sys.path[0]; import imlib; print(imlib.__file__)"
    done = subprocess.run([sys.executable, "-c", code],
                          env=kernel_environment(), cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    mine = PROJECT_ROOT / "imlib"
    found = Path(done.stdout.strip()).resolve().parent if done.returncode == 0 else None
    if found != mine.resolve():
        where = f"imlib from {found}" if found else "no imlib at all"
        raise ValueError(
            f"the notebooks' kernels would import {where}, not this checkout's {mine}: another "
            "copy shadows it on the Python path (a .pth file, sitecustomize, a pip-installed "
            "imlib); remove that copy (pip uninstall, or unset PYTHONPATH), then rerun")


class CheckoutKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel in the checkout with ``kernel_environment()``
    and its stdin closed, and records the kernel's exit status once it is seen dead in
    ``ended["exit_code"]`` (a negative number: the signal that ended it). nbclient creates
    the manager from its class: ``watching()`` gives a subclass with a record of its own."""

    ended: dict[str, int | None] = {}

    @classmethod
    def watching(cls) -> type[CheckoutKernelManager]:
        """A subclass whose ``ended`` record is its own, for one notebook's execution."""
        return type(cls.__name__, (cls,), {"ended": {}})

    async def start_kernel(self, **kw: Any) -> None:
        kw.update(env=kernel_environment(), stdin=subprocess.DEVNULL, cwd=str(PROJECT_ROOT))
        await super().start_kernel(**kw)

    async def is_alive(self) -> bool:
        alive = await super().is_alive()
        if not alive and self.provisioner is not None and "exit_code" not in self.ended:
            self.ended["exit_code"] = await self.provisioner.poll()
        return alive


class _TerminalLines:
    """papermill's ``stdout_file``: the cell's printed text, forwarded to the terminal line by
    line, indented under the notebook's name."""

    def __init__(self) -> None:
        self.pending = ""
        self.shown = 0

    def write(self, text: str) -> None:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self._show(line)

    def flush(self) -> None:
        sys.stdout.flush()

    def close(self) -> None:
        if self.pending:
            self._show(self.pending)
            self.pending = ""

    def _show(self, line: str) -> None:
        print(("\n" if self.shown == 0 else "") + f"  {line.rstrip()}", flush=True)
        self.shown += 1


def _read_notebook(source: Path) -> Any:
    """The percent script ``source`` as a notebook (an nbformat node) with the kernel that
    papermill starts for it."""
    import jupytext

    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def _papermill_options(params: StudyParams, overrides: dict[str, Any],
                       manager: type[CheckoutKernelManager]) -> dict[str, Any]:
    """How every notebook is executed: the run's parameters, in a kernel of ``manager``."""
    return dict(kernel_name="python3", progress_bar=False, extra_arguments=KERNEL_ARGUMENTS,
                parameters={"profile": params.profile, "overrides": overrides},
                kernel_manager_class=manager)


def execute_until(source: Path, params: StudyParams, overrides: dict[str, Any],
                  marker: str) -> Any:
    """The notebook's cells up to and including the first code cell whose source contains
    ``marker``, executed as a reader runs them in JupyterLab, in a kernel started as
    :func:`execute` starts one; returns the executed notebook and writes nothing. What a
    reader waits for before that cell (``benchmarks/bench_reading.py``), and the tests'
    look at one cell's output."""
    import papermill

    notebook = _read_notebook(source)
    found = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and marker in cell.source]
    if not found:
        raise ValueError(f"no code cell of {source.name} contains {marker!r}")
    notebook.cells = notebook.cells[:found[0] + 1]
    return papermill.execute_notebook(
        notebook, None, **_papermill_options(params, overrides, CheckoutKernelManager.watching()))


_DISK_FULL = re.compile(r"No space left on device|Errno 28|PytorchStreamWriter|"
                        r"inline_container\.cc(?!.*Reader)")
_OUT_OF_MEMORY = re.compile(r"out of memory|can't allocate memory|Cannot allocate memory")
_READ_ONLY = re.compile(r"Read-only file system|Errno 30|Permission denied|Errno 13|Errno 1\]")
_NAME_TOO_LONG = re.compile(r"File name too long|Errno 36")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)|<ipython-input-\d+-\w+>\", line (\d+)")


def _free(folder: Path) -> int:
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _source_line(source: Path, cell: str, traceback: Sequence[str]) -> str | None:
    """Where the failing ``cell`` (its code) lies in the notebook's ``source``
    (``NN_name.py``): ``file, line N``, the failing line when the traceback names it (IPython's
    ``Cell In[k], line n``), else the cell's first line; None when the cell is not there (the
    injected parameters)."""
    try:
        text = source.read_text(encoding="utf-8")
    except OSError:
        return None
    start = text.find(cell) if cell.strip() else -1
    if start < 0:
        return None
    found = _CELL_LINE.search(_ANSI.sub("", "\n".join(traceback)))
    offset = int(next(g for g in found.groups() if g)) - 1 if found else 0
    return f"{shown(source)}, line {text.count(chr(10), 0, start) + 1 + offset}"


def _dead_kernel(name: str, exit_code: int | None, kept: str, copy: str) -> str:
    """The line for a kernel that died, by how it ended."""
    if exit_code is not None and exit_code < 0 and -exit_code != signal.SIGKILL:
        how = signal.Signals(-exit_code).name
        return (f"notebook {name} stopped: its kernel was ended by {how} (sent by a person or "
                f"another program, not for lack of memory); rerun when it is intended: {kept}; "
                f"{copy}")
    return (f"notebook {name} stopped: its kernel died (killed, most often by the system for "
            f"lack of memory); free memory or lower -p eval_batch_size, then rerun: {kept}; "
            f"{copy}")


def failure(source: Path, params: StudyParams, err: BaseException, failed: Path,
            exit_code: int | None = None) -> str | None:
    """The one line for the failure ``err`` of the notebook whose percent script is
    ``source`` (a cell's error at its line in ``source``, a dead kernel and its
    ``exit_code``, a full disk, memory, a read-only folder, a name too long), naming the
    cause, the fix and the failed copy; None for an error of the runner itself."""
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    name = source.stem
    kept = "finished runs and epochs are kept, the same command resumes"
    copy = f"the failed copy: {shown(failed)}" if failed.exists() else "no executed copy"
    where = None
    if isinstance(err, PapermillExecutionError):
        ename, error = err.ename, f"{err.ename}: {err.evalue}"
        where = _source_line(source, err.source or "", err.traceback or [])
    elif isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES,
                                                     errno.EPERM, errno.ENAMETOOLONG):
        ename, error = "OSError", str(err)
    elif isinstance(err, DeadKernelError):
        return _dead_kernel(name, exit_code, kept, copy)
    else:
        return None
    folders = (params.runs_root, params.figures_root)
    if _DISK_FULL.search(error):
        folder = min(folders, key=_free)
        free = f"{_free(folder) / 1e6:.0f} MB free"
        return (f"notebook {name} stopped: disk full in {shown(folder)} ({free}); free space "
                f"there or choose another disk with -p runs_dir, then rerun: {kept}; {copy}")
    if ename in ("MemoryError", "OutOfMemoryError") or _OUT_OF_MEMORY.search(error):
        return (f"notebook {name} stopped: out of memory ({ename}); free memory (another "
                f"process on the device?) or lower -p eval_batch_size, then rerun: {kept}; "
                f"{copy}")
    if _READ_ONLY.search(error):
        return (f"notebook {name} stopped: it cannot write there ({error}); give writable "
                f"folders with -p runs_dir and -p figures_dir, then rerun: {kept}; {copy}")
    if _NAME_TOO_LONG.search(error):
        return (f"notebook {name} stopped: a file name is too long ({error}); give shorter "
                f"folders with -p runs_dir and -p figures_dir, then rerun; {copy}")
    cell = f"at {where}" if where else f"in cell [{err.exec_count}]"
    return f"notebook {name} failed {cell}: {error}; {copy}"


def execute(source: Path, params: StudyParams, overrides: dict[str, Any], verbose: bool
            ) -> None:
    """Execute the notebook whose percent script is ``source`` (``NN_name.py``) into a copy
    that replaces ``NN_name.ipynb`` only when it succeeds; a failed copy is kept as
    ``NN_name.failed.ipynb``, the last good one untouched. The terminal gets the notebook's
    name and time, the lines a ``PROGRESS_NOTEBOOKS`` one prints while it runs, and with
    ``verbose`` every cell's output (papermill's log)."""
    import jupytext
    import papermill

    name = source.stem
    folder = executed_dir(params).absolute()  # never read as an option or stdin ("-...")
    executed, running, failed = (folder / f"{name}{end}"
                                 for end in (".ipynb", ".running.ipynb", ".failed.ipynb"))
    print(f"{name:<28}", end="\n" if verbose else "", flush=True)
    start = time.perf_counter()
    lines = _TerminalLines() if name in PROGRESS_NOTEBOOKS and not verbose else None
    manager = CheckoutKernelManager.watching()
    options = _papermill_options(params, overrides, manager)
    try:
        jupytext.write(_read_notebook(source), running)
        if "interactive" in papermill.inspect_notebook(str(running)):
            options["parameters"]["interactive"] = False  # no widget frontend: the static view
        papermill.execute_notebook(str(running), str(running), log_output=verbose,
                                   stdout_file=lines, **options)
    except BaseException as err:
        if lines is not None:
            lines.close()
        if running.exists():
            os.replace(running, failed)
        if isinstance(err, KeyboardInterrupt):
            raise
        print("failed" if lines is None or not lines.shown else f"{name:<28}failed", flush=True)
        message = failure(source, params, err, failed, manager.ended.get("exit_code"))
        if message is None:
            raise
        raise NotebookFailed(message) from None
    os.replace(running, executed)
    failed.unlink(missing_ok=True)
    if lines is not None:
        lines.close()
    again = f"{name:<28}" if lines is not None and lines.shown else ""
    print(f"{again}{time.perf_counter() - start:6.0f} s", flush=True)
