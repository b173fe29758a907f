"""Files that survive interruption, and the provenance every result file carries."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["PROJECT_ROOT", "project_path", "atomic_save", "atomic_write_text",
           "atomic_write_bytes", "append_jsonl", "read_jsonl", "provenance", "file_record",
           "mark_created", "created_record", "created_by",
           "clean_stale_temporaries", "CREATED_MARKER", "exclusive_lock", "FolderBusy", "LOCK_NAME"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout
CREATED_MARKER = ".imlib-created"


def project_path(path: str | Path) -> str:
    """``path`` as notebooks and messages print it: relative to the project root when inside
    it (no user's absolute paths in outputs), else absolute."""
    path = Path(path).absolute()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)

LOCK_NAME = ".imlib-lock"


def mark_created(folder: str | Path, profile: str, runs_dir: str | Path | None = None,
                 notebook: str | None = None) -> list[Path]:
    """Create ``folder`` and its missing parents, and mark each folder this call created, and
    only those, as made by ``profile``'s run in ``runs_dir`` for ``notebook``'s outputs
    (``.imlib-created``, a JSON record; ``notebook`` None: the run's own folders). A folder
    that existed before, the user's or another program's, is never marked, so ``run_all.sh
    --fresh``, which deletes by this record, never deletes it. Returns the folders created,
    outermost first."""
    folder = Path(folder)
    record = {"profile": profile,
              "runs_dir": None if runs_dir is None else str(Path(runs_dir).resolve()),
              "notebook": notebook,
              "note": "created by run_all.sh; run_all.sh --fresh may delete this folder"}
    created = []
    for path in [*reversed(folder.parents), folder]:
        if path.is_dir():
            continue
        try:
            path.mkdir()  # not exist_ok: a folder another process made first is not ours
        except FileExistsError:
            continue
        atomic_write_text(json.dumps(record), path / CREATED_MARKER)
        created.append(path)
    return created


def created_record(folder: str | Path) -> dict[str, Any] | None:
    """``folder``'s ``mark_created`` record (``profile``, ``runs_dir``, ``notebook``; the last
    two None in an older version's record), or None: no record, or an unreadable one (an older
    version's marker, which named no profile)."""
    try:
        record = json.loads((Path(folder) / CREATED_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("profile"), str):
        return None
    return {"profile": record["profile"], "runs_dir": record.get("runs_dir"),
            "notebook": record.get("notebook")}


def created_by(folder: str | Path) -> str | None:
    """The profile whose run created ``folder`` (its ``mark_created`` record), or None."""
    record = created_record(folder)
    return None if record is None else record["profile"]


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
    atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path``, atomically."""
    _atomic(Path(path), lambda f: f.write(data))


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





def _git(*args: str) -> bytes | None:
    """The output of ``git args`` in the project root, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, timeout=10, cwd=PROJECT_ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


# What shapes a result: the library, the notebooks, the package's settings; tracked files only,
# so a user's own profile or notebook copy (untracked) never marks the code as edited. A
# profile is recorded as a profile (``provenance(profile_file)``), not as code.
_CODE_PATHS = ("imlib", ":(glob)notebooks/*.py", "pyproject.toml")


def _git_state() -> dict[str, Any]:
    """HEAD's commit, whether the tracked code differs from it (``git diff HEAD`` under
    ``_CODE_PATHS``) and a sha256 of that difference (None when there is none)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None, "git_diff_sha256": None}
    change = _git("diff", "--no-ext-diff", "--no-color", "--binary", "HEAD", "--", *_CODE_PATHS)
    change = change or b""
    return {"git_commit": commit.decode().strip() or None, "git_dirty": bool(change),
            "git_diff_sha256": hashlib.sha256(change).hexdigest() if change else None}


def file_record(path: str | Path) -> dict[str, Any]:
    """``{"size", "sha256"}`` of a file: what a completion record keeps to prove a file is the
    one that was written."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def provenance(profile_file: str | Path | None = None) -> dict[str, Any]:
    """Where a result came from: time, git commit, whether the tracked code had uncommitted
    changes (``git_dirty``, and ``git_diff_sha256`` to tell two edited trees apart), library
    versions, device; with ``profile_file``, that profile's path and sha256 (a profile is
    settings, not code: editing or adding one leaves ``git_dirty`` alone)."""
    import numpy

    profile = {} if profile_file is None else {
        "profile_file": project_path(profile_file),
        "profile_sha256": file_record(profile_file)["sha256"]}
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **_git_state(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a TorchVersion, which weights-only loading refuses
        "torchvision": metadata.version("torchvision"),  # without importing it (seconds)
        "numpy": numpy.__version__,
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "host": platform.node(),
        **profile,
    }
