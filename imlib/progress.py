"""Progress on long work: bars for a person (a terminal, a notebook), silence for logs, and one
line, not a traceback, when a person interrupts it.

``TQDM_DISABLE=1`` (what ``run_all.sh`` gives its kernels, and CI) turns every bar off, so an
executed notebook records one line per finished run instead of hundreds of stored widgets.
tqdm's notebook bars ignore that variable on their own, hence this one switch.

In a notebook a bar is a widget while it runs and becomes plain text when it closes: its last
line, cut to ``TEXT_COLUMNS`` characters (or nothing with ``leave=False``). A saved notebook
then holds no widget output, which a reopened notebook (without the kernel that drew it) would
show as "model not found".

A Ctrl-C (or JupyterLab's interrupt) inside :func:`on_interrupt` becomes :class:`Interrupted`,
which IPython shows as its one-line message: what stopped, what was kept, how to go on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from IPython.display import display
from tqdm.auto import tqdm
from tqdm.notebook import tqdm as notebook_tqdm

__all__ = ["TEXT_COLUMNS", "Interrupted", "on_interrupt", "quiet", "progress"]

TEXT_COLUMNS = 100  # the most characters of a finished bar's line: one line in a log or a cell


class Interrupted(KeyboardInterrupt):
    """A KeyboardInterrupt that says in one line what was interrupted, what was saved and how to
    resume. IPython renders an exception through its ``_render_traceback_`` when it has one, so
    a notebook cell (and the saved notebook) shows this line instead of a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


@contextlib.contextmanager
def on_interrupt(message: str | Callable[[], str]) -> Iterator[None]:
    """Turn a KeyboardInterrupt inside the block into :class:`Interrupted` with ``message``
    (a callable is asked at the moment of the interrupt, e.g. for the last epoch saved); an
    inner :class:`Interrupted` passes unchanged."""
    if not (isinstance(message, str) or callable(message)):
        raise ValueError(f"message must be a string or a callable returning one, got "
                         f"{type(message).__name__}")
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(message if isinstance(message, str) else message()) from None


def quiet() -> bool:
    """True when no person watches: ``TQDM_DISABLE`` is set, or neither a terminal nor a
    notebook kernel is attached."""
    if os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"):
        return True
    return not (sys.stderr.isatty() or "ipykernel" in sys.modules)


class _NotebookBar(notebook_tqdm):
    """tqdm's notebook bar, displayed under a display id so that closing it replaces the widget
    by its final line of text, at most ``TEXT_COLUMNS`` wide (or by nothing with
    ``leave=False``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, display=False, **kwargs)
        self._handle = None if self.disable else display(self.container, display_id=True)
        self.displayed = True

    def close(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        super().close()
        if handle is not None:
            text = self.format_meter(**{**self.format_dict, "ncols": TEXT_COLUMNS})
            handle.update({"text/plain": text if self.leave else ""}, raw=True)


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, shown only when a person watches (see :func:`quiet`); in a
    terminal at most ``TEXT_COLUMNS`` wide."""
    if issubclass(tqdm, notebook_tqdm):
        return _NotebookBar(iterable, disable=quiet(), **kwargs)
    columns = min(TEXT_COLUMNS, shutil.get_terminal_size().columns)
    return tqdm(iterable, disable=quiet(), **{"ncols": columns, **kwargs})
