"""Files that survive interruption, and the provenance every result file carries."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_save", "atomic_write_text", "append_jsonl", "read_jsonl", "provenance",
           "mark_created", "created_by_imlib", "clean_stale_temporaries", "CREATED_MARKER",
           "exclusive_lock", "FolderBusy", "LOCK_NAME"]

CREATED_MARKER = ".imlib-created"
LOCK_NAME = ".imlib-lock"


def mark_created(folder: str | Path) -> None:
    """Create ``folder`` (if needed) and mark it as made by imlib, so that ``run_all.sh --fresh``
    deletes only folders the project itself wrote."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / CREATED_MARKER
    if not marker.is_file():
        marker.write_text("created by imlib; run_all.sh --fresh may delete this folder\n",
                          encoding="utf-8")


def created_by_imlib(folder: str | Path) -> bool:
    """Whether ``folder`` carries the marker written by ``mark_created``."""
    return (Path(folder) / CREATED_MARKER).is_file()


# The temporary file of an atomic write: ".<name>.<8 random characters>.tmp" (tempfile.mkstemp).
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename it over ``path``: a crash
    leaves either the old file or the new one, never half of one. The file gets the permissions
    of any new file (0666 less the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in ``folder`` (not in its
    sub-folders); returns them. Call it only while no other process writes there (run_all.sh
    does, under its lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _TEMPORARY.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically."""
    _atomic(Path(path), lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write ``text`` (UTF-8) to ``path``, atomically."""
    _atomic(Path(path), lambda f: f.write(text.encode("utf-8")))


def append_jsonl(record: dict, path: str | Path) -> None:
    """Append one JSON line and flush it to disk. A torn last line (no newline: a crash cut it
    short, and ``read_jsonl`` skips it) is cut off first, so the record starts a line of its own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(0)
            content = f.read()
            if not content.endswith(b"\n"):
                f.truncate(content.rfind(b"\n") + 1)
        f.write((json.dumps(record) + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file; a record is complete once its newline is written.
    A last line without one (a crash mid-append) is skipped; any other line that is not JSON is
    a ValueError naming the file and the line."""
    path = Path(path)
    *lines, _torn = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not a JSON record ({err.msg}); the file is "
                             "damaged: delete the run's folder to train it again") from None
    return records


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock; the message names it and what to do."""


@contextmanager
def exclusive_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``folder/.imlib-lock`` while the block runs, or raise ``FolderBusy`` naming the
    holder (pid, host, start time). The lock is an ``flock`` on the open file, so the kernel
    releases it when the holder ends, even when it is killed: it never stays stuck."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "a process that is just starting"
            raise FolderBusy(f"{folder} is in use by another run ({holder}); wait until it "
                             "ends, or stop that process") from None
        lock.truncate(0)
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        lock.write(f"pid {os.getpid()} on {platform.node()}, started {started}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """Where a result came from: time, git commit, library versions, device."""
    import numpy
    import torchvision

    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a TorchVersion, which weights-only loading refuses
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "host": platform.node(),
    }
