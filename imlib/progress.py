"""Progress on long work: bars for a person (a terminal, a notebook), silence for logs.

``TQDM_DISABLE=1`` (what ``run_all.sh`` gives its kernels, and CI) turns every bar off, so an
executed notebook records one line per finished run instead of hundreds of stored widgets.
tqdm's notebook bars ignore that variable on their own, hence this one switch.

In a notebook a bar is a widget while it runs and becomes plain text when it closes: its last
line, or nothing with ``leave=False``. A saved notebook then holds no widget output, which a
reopened notebook (without the kernel that drew it) would show as "model not found".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from IPython.display import display
from tqdm.auto import tqdm
from tqdm.notebook import tqdm as notebook_tqdm

__all__ = ["quiet", "progress"]


def quiet() -> bool:
    """True when no person watches: ``TQDM_DISABLE`` is set, or neither a terminal nor a
    notebook kernel is attached."""
    if os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"):
        return True
    return not (sys.stderr.isatty() or "ipykernel" in sys.modules)


class _NotebookBar(notebook_tqdm):
    """tqdm's notebook bar, displayed under a display id so that closing it replaces the widget
    by its final line of text (or by nothing with ``leave=False``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, display=False, **kwargs)
        self._handle = None if self.disable else display(self.container, display_id=True)
        self.displayed = True

    def close(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        super().close()
        if handle is not None:
            handle.update({"text/plain": str(self) if self.leave else ""}, raw=True)


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, shown only when a person watches (see :func:`quiet`)."""
    bar = _NotebookBar if issubclass(tqdm, notebook_tqdm) else tqdm
    return bar(iterable, disable=quiet(), **kwargs)
