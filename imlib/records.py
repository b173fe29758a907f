"""Checked result records: how every result folder is written and read (the evaluation,
notebook 02's NMI study, CIFAR-100-C, the figures, the verdicts).

A folder is written by :func:`write_record` or :func:`write_tables`: the files first, each
atomically, then ``meta.json``, whose ``files`` (each file's size and sha256) prove them whole.
:func:`check_record` refuses a file cut short, damaged or left by another, interrupted write,
:func:`read_tables` also a folder made with other settings, in one line naming the file and the
command that remakes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from imlib.io import atomic_write_text, file_record, provenance

__all__ = ["RECORD", "write_record", "write_tables", "check_record", "read_tables"]

RECORD = "meta.json"  # a result folder's settings, provenance and completion record


def write_record(folder: str | Path, names: Sequence[str], **meta: Any) -> Path:
    """Write ``folder/meta.json``: ``meta`` (settings, params, provenance...) and ``files``,
    the size and sha256 of each file ``names`` of ``folder``, already written. Written last and
    atomically, it is the folder's completion record: :func:`read_tables` trusts a file only
    when it is the one recorded here. Returns the path of ``meta.json``."""
    folder = Path(folder)
    missing = [name for name in names if not (folder / name).is_file()]
    if not names or missing:
        raise ValueError(f"names must list files already written in {folder}; missing {missing}")
    record = {**meta, "files": {name: file_record(folder / name) for name in names}}
    path = folder / RECORD
    atomic_write_text(json.dumps(record, indent=2, default=str), path)
    return path


def write_tables(tables: Mapping[str, pd.DataFrame], folder: str | Path,
                 settings: Mapping[str, Any] | None = None,
                 params: Mapping[str, Any] | None = None,
                 runs: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write each table as ``<name>.csv`` into ``folder``, each atomically, then ``meta.json``
    (settings, params, runs, provenance and the completion record, :func:`write_record`);
    returns ``folder``. A kill before ``meta.json`` is written leaves files that
    :func:`read_tables` refuses."""
    if not tables or not all(isinstance(t, pd.DataFrame) for t in tables.values()):
        raise ValueError("tables must be a non-empty mapping of names to pandas DataFrames")
    bad = [name for name in tables if not name or not name.replace("_", "").isalnum()]
    if bad:
        raise ValueError(f"table names must be letters, digits and '_', got {bad}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        atomic_write_text(table.to_csv(index=False), folder / f"{name}.csv")
    write_record(folder, [f"{name}.csv" for name in tables], settings=dict(settings or {}),
                 params=dict(params) if params else None,
                 runs=[dict(r) for r in runs] if runs is not None else None,
                 provenance=provenance())
    return folder


def check_record(folder: str | Path, names: Sequence[str], remake: str) -> dict[str, Any]:
    """``folder``'s ``meta.json`` (:func:`write_record`), after checking that each file
    ``names`` is the one it records: same size and sha256, so not cut short, not damaged, not
    left by another, interrupted write. Anything else raises ValueError in one line naming the
    file and ``remake``, the command that writes the folder again; a missing folder or
    ``meta.json`` raises FileNotFoundError."""
    folder = Path(folder)
    meta_path = folder / RECORD
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} holds no finished results ({meta_path.name} is "
                                f"missing); make them with {remake}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        records = meta["files"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{meta_path} is damaged ({type(err).__name__}); remake the folder "
                         f"with {remake}") from None
    for name in names:
        path = folder / name
        recorded = records.get(name) if isinstance(records, dict) else None
        if not isinstance(recorded, dict) or "sha256" not in recorded:
            raise ValueError(f"{meta_path} holds no completion record of {name} (written by "
                             f"another notebook or an older imlib); remake it with {remake}")
        if not path.is_file():
            raise ValueError(f"{path} is missing although {meta_path.name} records it; remake "
                             f"it with {remake}")
        if file_record(path) != {"size": recorded.get("size"), "sha256": recorded["sha256"]}:
            raise ValueError(f"{path} is not the file {meta_path.name} records (cut short, "
                             f"damaged, or left by an interrupted write); remake it with {remake}")
    return meta


def read_tables(folder: str | Path, names: Sequence[str], remake: str,
                settings: Mapping[str, Any] | None = None
                ) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The tables ``names`` (``<name>.csv``) of a folder written by :func:`write_tables`, and
    its ``meta.json``: each file checked by :func:`check_record`, and with ``settings`` the
    folder must have been made with them (each key compared with the recorded ``settings``).
    Anything else raises in one line naming the file or the settings and ``remake``."""
    folder = Path(folder)
    meta = check_record(folder, [f"{name}.csv" for name in names], remake)
    if settings is not None:
        made_with = meta.get("settings") or {}
        asked = json.loads(json.dumps(dict(settings), default=str))
        differing = [k for k in asked if made_with.get(k) != asked[k]]
        if differing:
            detail = "; ".join(f"{k}: made with {made_with.get(k)!r}, profile {asked[k]!r}"
                               for k in differing)
            raise ValueError(f"{folder} was made with other settings than the profile's "
                             f"({detail}); remake it with {remake}")
    return {name: pd.read_csv(folder / f"{name}.csv") for name in names}, meta
