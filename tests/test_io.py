"""Files that survive interruption: atomic writes, JSON lines, markers, the run lock."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imlib.io import (CREATED_MARKER, LOCK_NAME, FolderBusy, append_jsonl, atomic_save,
                      atomic_write_text, clean_stale_temporaries, created_by, created_record,
                      exclusive_lock,
                      mark_created, read_jsonl)


def test_mark_created_marks_only_the_folders_it_creates_with_the_profile(tmp_path):
    users = tmp_path / "users"
    (users / "b").mkdir(parents=True)
    (users / "b" / "notes.txt").write_text("mine")
    assert mark_created(users / "b" / "c" / "d", "smoke") == [users / "b" / "c",
                                                              users / "b" / "c" / "d"]
    assert [created_by(f) for f in (users, users / "b", users / "b" / "c", users / "b" / "c" / "d")
            ] == [None, None, "smoke", "smoke"]
    assert not (users / "b" / CREATED_MARKER).exists()  # the user's folder is never marked
    assert mark_created(users / "b" / "c", "cpu") == []  # existing: left as it is
    assert created_by(users / "b" / "c") == "smoke"
    assert mark_created(users, "smoke") == [] and created_by(users) is None


def test_created_by_reads_no_profile_from_an_older_or_damaged_marker(tmp_path):
    (tmp_path / CREATED_MARKER).write_text("created by imlib; run_all.sh --fresh may delete this")
    assert created_by(tmp_path) is None  # an older version marked folders it had not created
    (tmp_path / CREATED_MARKER).write_text('{"profile": 3}')
    assert created_by(tmp_path) is None
    assert created_by(tmp_path / "missing") is None


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_honour_the_umask_like_open_does(tmp_path, umask):
    previous = os.umask(umask)
    try:
        (tmp_path / "plain.txt").write_text("x")  # what any program would create
        atomic_write_text("x", tmp_path / "text.txt")
        atomic_save({"a": 1}, tmp_path / "saved.pt")
    finally:
        os.umask(previous)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~umask
    for name in ("text.txt", "saved.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_an_interrupted_atomic_write_leaves_the_old_file_and_a_temporary_cleaned_later(tmp_path):
    target = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, target)

    with pytest.raises(Exception, match="pickle"):  # fails half-way through writing
        atomic_save({"epoch": 2, "hook": lambda: None}, target)
    assert torch.load(target) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # its temporary went too
    # A process killed mid-write cannot clean up; its temporaries look like these.
    stale = [tmp_path / ".last.pt.k3j_x9a2.tmp", tmp_path / ".history.jsonl.abcdefgh.tmp"]
    kept = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / ".x.tmp"]
    for path in stale + kept:
        path.write_bytes(b"partial")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".best.pt.abcdefgh.tmp").write_bytes(b"partial")
    assert sorted(clean_stale_temporaries(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    assert (tmp_path / "sub" / ".best.pt.abcdefgh.tmp").exists()  # one folder only
    assert clean_stale_temporaries(tmp_path / "missing") == []


def test_read_jsonl_skips_only_a_torn_last_line(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    path.write_text("")
    assert read_jsonl(path) == []


@pytest.mark.parametrize("content, line", [
    ('{"epoch": 1}\n{"epo\n{"epoch": 3}\n', 2),
    ('{"epoch": 1}\n\n{"epoch": 3}\n', 2),
    ('garbage\n{"epoch": 2}\n', 1),
    ('{"epoch": 1}\n{"epoch": 2}\n{"ep\n', 3),  # ends with a newline: not torn, damaged
])
def test_read_jsonl_names_file_and_line_of_a_damaged_record(tmp_path, content, line):
    path = tmp_path / "history.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"history.jsonl, line {line}: not a JSON record"):
        read_jsonl(path)


def test_append_after_a_crash_mid_append_starts_a_clean_line(tmp_path):
    path = tmp_path / "history.jsonl"
    append_jsonl({"epoch": 1}, path)
    with open(path, "a") as f:
        f.write('{"epoch": 2, "train_lo')  # the crash
    append_jsonl({"epoch": 2}, path)
    append_jsonl({"epoch": 3}, path)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"epoch": 1}, {"epoch": 2}, {"epoch": 3}]
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]


HOLDER = """
import sys, time
from imlib.io import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def _hold_lock_in_subprocess(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_lock_is_refused_naming_the_holder_and_a_killed_holder_frees_it(tmp_path):
    holder = _hold_lock_in_subprocess(tmp_path)
    try:
        with pytest.raises(FolderBusy, match=rf"in use by another run \(pid {holder.pid} on .*"
                                             r"started \d{4}-\d\d-\d\dT"):
            with exclusive_lock(tmp_path):
                pytest.fail("the lock was taken twice")
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # the file stays, the lock does not
    with exclusive_lock(tmp_path):
        assert f"pid {os.getpid()}" in (tmp_path / LOCK_NAME).read_text()
    with exclusive_lock(tmp_path):  # released on leaving the block
        pass


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(KeyError):
        with exclusive_lock(tmp_path):
            raise KeyError("boom")
    with exclusive_lock(tmp_path):  # would raise FolderBusy if still held
        pass


# --- provenance ----------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


def test_provenance_records_uncommitted_changes_to_the_code(tmp_path, monkeypatch):
    """Runs trained from an edited tree must not pass for the commit's code."""
    import imlib.io as io_module
    from imlib.io import provenance

    repo = tmp_path / "checkout"
    (repo / "imlib").mkdir(parents=True)
    (repo / "imlib" / "train.py").write_text("lr = 1e-3\n")
    (repo / "README.md").write_text("prose\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "start")
    monkeypatch.setattr(io_module, "PROJECT_ROOT", repo)

    def state() -> tuple:
        record = provenance()
        return record["git_commit"], record["git_dirty"], record["git_diff_sha256"]

    commit, dirty, diff = state()
    assert len(commit) == 40 and (dirty, diff) == (False, None)
    (repo / "README.md").write_text("other prose\n")  # not code: results cannot change
    assert state() == (commit, False, None)
    (repo / "imlib" / "train.py").write_text("lr = 2e-3\n")
    edited = state()
    assert edited[:2] == (commit, True) and len(edited[2]) == 64
    assert state() == edited  # the same edit, the same hash
    (repo / "imlib" / "train.py").write_text("lr = 5e-4\n")
    assert state()[2] not in (None, edited[2])
    (repo / "imlib" / "train.py").write_text("lr = 1e-3\n")
    (repo / "imlib" / "new.py").write_text("")  # untracked: no tracked code imports it
    assert state() == (commit, False, None)
    monkeypatch.setattr(io_module, "PROJECT_ROOT", tmp_path)  # no checkout at all
    assert state() == (None, None, None)


def test_the_provenance_note_says_when_runs_came_from_an_edited_tree():
    import pandas as pd

    from imlib.report import provenance_note

    def origins(*codes):
        return pd.DataFrame([{"run": f"paper/im/seed{i}", "git_commit": commit,
                              "git_diff_sha256": diff} for i, (commit, diff) in enumerate(codes)])

    clean, edited = ("a" * 40, None), ("a" * 40, "d" * 64)
    here = {"git_commit": "a" * 40, "git_diff_sha256": None}
    assert "trained by the current code (commit `aaaaaaaaaa`)" in provenance_note(
        origins(clean, clean), here)
    note = provenance_note(origins(edited, edited), {**here, "git_diff_sha256": "d" * 64})
    assert "trained from an edited tree" in note and "uncommitted changes" in note
    assert "trained by the current code" not in note
    note = provenance_note(origins(clean, edited), here)
    assert note.startswith("**1 of 2 runs were trained by other code")
    assert "paper/im/seed1 by commit `aaaaaaaaaa` plus uncommitted changes (diff `dddd" in note
    note = provenance_note(origins(edited, edited), here)
    assert "all of them by commit `aaaaaaaaaa` plus uncommitted changes" in note
    assert "not a git checkout" in provenance_note(origins(clean), {"git_commit": None})


def test_only_tracked_code_marks_the_tree_as_edited_and_a_profile_is_recorded_as_one(
        tmp_path, monkeypatch):
    """A checkout in tmp_path: a user's own profile or notebook copy (untracked), or an edited
    profile, leaves git_dirty False; an edited library module or notebook sets it."""
    import hashlib

    import imlib.io as io

    repo = tmp_path / "checkout"
    for path, text in {"imlib/a.py": "x = 1\n", "notebooks/01_a.py": "y = 1\n",
                       "notebooks/profiles/smoke.yaml": "epochs: 1\n",
                       "pyproject.toml": "[project]\n"}.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "start")
    monkeypatch.setattr(io, "PROJECT_ROOT", repo)
    assert io.provenance()["git_dirty"] is False
    mine = repo / "notebooks" / "profiles" / "mine.yaml"
    mine.write_text("epochs: 2\n")
    (repo / "notebooks" / "01_a copy.py").write_text("y = 2\n")
    (repo / "notebooks" / "profiles" / "smoke.yaml").write_text("epochs: 3\n")
    record = io.provenance(mine)
    assert record["git_dirty"] is False and record["git_diff_sha256"] is None
    assert record["profile_sha256"] == hashlib.sha256(b"epochs: 2\n").hexdigest()
    for edited in ("imlib/a.py", "notebooks/01_a.py", "pyproject.toml"):
        (repo / edited).write_text((repo / edited).read_text() + "# edited\n")
        assert io.provenance()["git_dirty"] is True, edited
        _git(repo, "checkout", "--", edited)


def test_mark_created_records_the_runs_dir_and_the_writer(tmp_path):
    runs = tmp_path / "runs"
    made = mark_created(runs / "train" / "x", "smoke", runs, "03_training")
    assert [p.name for p in made] == ["runs", "train", "x"]
    assert created_record(runs / "train") == {"profile": "smoke", "runs_dir": str(runs.resolve()),
                                              "notebook": "03_training"}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / CREATED_MARKER).write_text('{"profile": "smoke"}')  # an older version's
    assert created_record(tmp_path / "old") == {"profile": "smoke", "runs_dir": None,
                                                "notebook": None}
