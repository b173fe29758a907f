"""Progress on long work: bars for a person (a terminal, a notebook), silence for logs.

``TQDM_DISABLE=1`` (what ``run_all.sh`` gives its kernels, and CI) turns every bar off, so an
executed notebook records one line per finished run instead of hundreds of stored widgets.
tqdm's notebook bars ignore that variable on their own, hence this one switch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

__all__ = ["quiet", "progress"]


def quiet() -> bool:
    """True when no person watches: ``TQDM_DISABLE`` is set, or neither a terminal nor a
    notebook kernel is attached."""
    if os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"):
        return True
    return not (sys.stderr.isatty() or "ipykernel" in sys.modules)


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, shown only when a person watches (see :func:`quiet`)."""
    return tqdm(iterable, disable=quiet(), **kwargs)
