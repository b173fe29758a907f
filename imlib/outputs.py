"""Which folders a run owns: where the notebooks write, checks that no two outputs overlap, and
``--fresh``, which deletes only what the selected notebooks wrote, by their record.

Every folder a run creates carries an ``.imlib-created`` record (``imlib.io.mark_created``): the
profile, the run's ``runs_dir`` and the notebook whose outputs it holds. ``--fresh`` deletes a
folder only when that record names this profile, this runs_dir and a selected notebook, and
everything marked inside it says the same; never a folder because of where it lies. Before it
deletes a training run it holds the run's lock and makes sure no job trains it.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from imlib.io import (CREATED_MARKER, LOCK_NAME, PROJECT_ROOT, FolderBusy, created_record,
                      exclusive_lock)
from imlib.launch import _job_alive, _job_record
from imlib.runs import RunFiles
from imlib.study import StudyParams, load_params, profiles

__all__ = ["SOURCE_FOLDERS", "RUN_WRITER", "WRITERS", "shown", "executed_dir", "outputs", "written",
           "check_output_folders", "check_owner", "fresh_plan", "remove_outputs",
           "report_removed"]

# Folders of the checkout that no output may be, lie in or hold (nor the checkout itself).
SOURCE_FOLDERS = (".git", "notebooks", "imlib", "tests", "benchmarks")
# The writer a record names for the run's own folders (runs_dir, the executed notebooks).
RUN_WRITER = "run_all.sh"
# The notebooks that write folders (``outputs``); every run checks all of them.
WRITERS = ("02_nmi_validation", "03_training", "04_evaluation", "05_figures")
# The folders under runs_dir that the notebooks write, and who writes each.
RUNS_DIR_AREAS = {"train": "03_training", "jobs": "03_training", "eval": "04_evaluation",
                  "nmi": "02_nmi_validation", "notebooks": RUN_WRITER}


def shown(path: Path) -> str:
    """``path`` as messages print it: absolute (``run_all.sh`` runs in the checkout, its
    caller may be anywhere)."""
    return str(Path(path).absolute())


def executed_dir(params: StudyParams) -> Path:
    """<runs_dir>/notebooks: the executed copies of the notebooks."""
    return params.runs_root / "notebooks"


def outputs(params: StudyParams, notebook: str) -> list[Path]:
    """The folders ``notebook`` writes for the profile's selected protocols, variants, seeds;
    ``RUN_WRITER``: the executed notebooks' folder."""
    return {"02_nmi_validation": [params.nmi_dir],
            "03_training": [run.dir for run in params.runs()],
            "04_evaluation": [params.eval_dir(p) for p in params.protocols],
            "05_figures": [params.figures(p) for p in params.protocols],
            RUN_WRITER: [executed_dir(params)]}.get(notebook, [])


def written(params: StudyParams, names: Sequence[str], every: bool = False
            ) -> list[tuple[str, Path]]:
    """(writer, folder) of what the notebooks ``names`` write; ``every`` (all notebooks
    selected): the executed copies too."""
    writers = [*names, RUN_WRITER] if every else list(names)
    return [(name, folder) for name in writers for folder in outputs(params, name)]


# --- folders that never overlap --------------------------------------------------------------


def _overlap(a: Path, b: Path) -> str | None:
    """How ``a`` overlaps ``b`` ("is", "lies in", "holds"), or None when they are disjoint."""
    if a == b:
        return "is"
    if b in a.parents:
        return "lies in"
    return "holds" if a in b.parents else None


def _areas(params: StudyParams) -> dict[str, Path]:
    """Each folder the profile writes as a whole, by name: runs_dir's train, jobs, eval, nmi
    and notebooks, and figures_dir (resolved: links followed)."""
    root = params.runs_root.resolve()
    areas = {f"runs_dir's {name}/ ({writer})": root / name
             for name, writer in RUNS_DIR_AREAS.items()}
    return {**areas, "figures_dir (05_figures)": params.figures_root.resolve()}


def check_output_folders(params: StudyParams) -> None:
    """Outputs that cannot overlap, refused with one line (ValueError): runs_dir and
    figures_dir may not be the checkout, hold it or lie in its source folders
    (``SOURCE_FOLDERS``); figures_dir may not be, lie in or hold a folder that another
    notebook writes under runs_dir (train, jobs, eval, nmi, notebooks); and no folder the
    profile writes may be, lie in or hold another profile's runs_dir or folders."""
    checkout = PROJECT_ROOT.resolve()
    sources = [checkout / name for name in SOURCE_FOLDERS]
    for name, folder in (("runs_dir", params.runs_root), ("figures_dir", params.figures_root)):
        folder = folder.resolve()
        if folder == checkout or folder in checkout.parents:
            raise ValueError(f"{name} {shown(folder)} is the checkout or holds it; give the "
                             "profile a folder of its own")
        source = next((s for s in sources if _overlap(folder, s) in ("is", "lies in")), None)
        if source is not None:
            raise ValueError(f"{name} {shown(folder)} lies in the checkout's source folder "
                             f"{source.name}/; give the profile a folder of its own")
    areas = _areas(params)
    figures = areas.pop("figures_dir (05_figures)")
    for label, area in areas.items():
        relation = _overlap(figures, area)
        if relation is not None:
            raise ValueError(
                f"figures_dir {shown(figures)} {relation} {shown(area)}, {label}: the two would "
                "overwrite or delete each other's files; give -p figures_dir a folder of its own, "
                f"e.g. {shown(params.runs_root / 'figures')}")
    mine = _areas(params)
    for other in profiles():
        if other == params.profile:
            continue
        try:
            theirs = load_params(other)
        except ValueError:
            continue  # a broken profile owns no folder to protect
        their_folders = {**_areas(theirs), "runs_dir": theirs.runs_root.resolve()}
        for label, folder in mine.items():
            for their_label, their in their_folders.items():
                relation = _overlap(folder, their)
                if relation is not None:
                    raise ValueError(
                        f"{label.split(' (')[0]} {shown(folder)} {relation} {shown(their)}, "
                        f"a folder of profile {other!r} ({their_label.split(' (')[0]}); give "
                        f"{params.profile!r} folders of its own (-p runs_dir, -p figures_dir)")


def _path_down(params: StudyParams, folder: Path) -> list[Path]:
    """The folders from ``folder``'s root (runs_dir or figures_dir, the nearer) down to it."""
    roots = [r for r in (params.runs_root, params.figures_root)
             if r == folder or r in folder.parents]
    root = max(roots, key=lambda r: len(r.parts))
    steps = folder.relative_to(root).parts
    return [root] + [root.joinpath(*steps[:i]) for i in range(1, len(steps) + 1)]


def check_owner(params: StudyParams) -> None:
    """Refuse folders that another run created (their ``.imlib-created`` record names another
    profile, or this profile's run in another runs_dir) anywhere on the way to what this run
    writes: two runs never share a folder."""
    runs_dir = str(params.runs_root.resolve())
    for _, folder in written(params, WRITERS, every=True):
        for path in _path_down(params, folder):
            record = created_record(path)
            if record is None:
                continue
            if record["profile"] != params.profile:
                raise ValueError(
                    f"{shown(path)} was created by profile {record['profile']!r}; give "
                    f"{params.profile!r} folders of its own (-p runs_dir, -p figures_dir)")
            if record["runs_dir"] not in (None, runs_dir):
                raise ValueError(
                    f"{shown(path)} holds the outputs of profile {params.profile!r}'s run in "
                    f"{record['runs_dir']}, not {runs_dir}; give this run a figures folder of "
                    "its own (-p figures_dir)")


# --- --fresh ---------------------------------------------------------------------------------


def _stop_command(launcher: str, job_id: str) -> str:
    """What stops a job: submitit's local jobs ignore SIGTERM ("Bypassing signal SIGTERM") and
    stop on SIGINT, sent to the job's process group (its id)."""
    if launcher == "slurm":
        return f"scancel {job_id}"
    return f"kill -INT -- -{job_id} (if it still runs a minute later: kill -KILL -- -{job_id})"


def _refuse_live_jobs(params: StudyParams, folders: Sequence[Path]) -> None:
    """A ValueError naming the first run inside ``folders`` whose lock is held or whose job
    still runs, and the command that stops it."""
    for run in params.runs():
        if not any(run.dir == f or f in run.dir.parents for f in folders) or not run.dir.is_dir():
            continue
        if (run.dir / LOCK_NAME).exists():
            try:
                with exclusive_lock(run.dir):
                    pass
            except FolderBusy as err:
                raise ValueError(f"--fresh refuses {shown(run.dir)}: {err}; nothing was "
                                 "deleted") from None
        try:
            record = _job_record(run)
        except ValueError:
            raise ValueError(
                f"--fresh refuses {shown(run.dir)}: {shown(RunFiles(run.dir).job)} is damaged, "
                "so whether its job still runs is unknown; make sure no job trains it (squeue, "
                "ps), delete that file, then rerun; nothing was deleted") from None
        if record is not None and _job_alive(params, record):
            launcher, job_id = record["launcher"], record["job_id"]
            raise ValueError(
                f"--fresh refuses {shown(run.dir)}: its {launcher} job {job_id} still runs; "
                f"stop it first ({_stop_command(launcher, job_id)}), or rerun without --fresh "
                "to follow it; nothing was deleted")


def fresh_plan(params: StudyParams, names: Sequence[str], every: bool = False
               ) -> tuple[list[Path], list[Path]]:
    """``--fresh``: the folders to delete (their record: this profile, this runs_dir, the
    notebook that writes them) and those kept (existing, recorded otherwise or not at all); a
    ValueError, before anything is deleted, for a folder reached through a symbolic link below
    runs_dir or figures_dir, holding folders recorded otherwise, or holding a run whose job
    still runs."""
    runs_dir = str(params.runs_root.resolve())
    delete, keep = [], []
    for writer, folder in written(params, names, every):
        linked = next((p for p in _path_down(params, folder)[1:] if p.is_symlink()), None)
        if linked is not None:
            raise ValueError(f"--fresh refuses {shown(linked)}: a symbolic link; it deletes "
                             "only folders run_all.sh created, not what a link points to")
        if not folder.is_dir():
            continue
        expected = {"profile": params.profile, "runs_dir": runs_dir, "notebook": writer}
        if created_record(folder) != expected:
            keep.append(folder)
            continue
        for marker in folder.rglob(CREATED_MARKER):
            record = created_record(marker.parent)
            if record != expected:
                owner = "no run" if record is None else (
                    f"profile {record['profile']!r}" if record["profile"] != params.profile
                    else f"{record['notebook']} of the run in {record['runs_dir']}")
                raise ValueError(f"--fresh refuses {shown(folder)}: it holds "
                                 f"{shown(marker.parent)}, created by {owner}; nothing was "
                                 "deleted")
        delete.append(folder)
    _refuse_live_jobs(params, delete)
    return delete, keep


def remove_outputs(params: StudyParams, names: Sequence[str], every: bool = False
                   ) -> tuple[list[Path], list[Path]]:
    """``--fresh``: delete what ``fresh_plan`` says, holding the lock of every run folder
    inside while it deletes (a job that trains one holds it: refused, nothing deleted);
    returns the deleted folders and those kept."""
    delete, keep = fresh_plan(params, names, every)
    with ExitStack() as locks:
        for folder in delete:
            for lock in sorted(folder.rglob(LOCK_NAME)):
                try:
                    locks.enter_context(exclusive_lock(lock.parent))
                except FolderBusy as err:
                    raise ValueError(f"--fresh refuses {shown(folder)}: {err}; nothing was "
                                     "deleted") from None
        for folder in delete:
            shutil.rmtree(folder)
    return delete, keep


def report_removed(params: StudyParams, names: Sequence[str], removed: Sequence[Path],
                   kept: Sequence[Path], later: Sequence[str]) -> None:
    """The lines ``--fresh`` prints: what it deleted, what it kept, which later notebooks
    (``later``) read what was deleted."""
    print(f"--fresh: deleted {len(removed)} folder(s) under {shown(params.runs_root)} and "
          f"{shown(params.figures_root)}", flush=True)
    if kept:
        print(f"--fresh: kept {len(kept)} folder(s) that run_all.sh did not record as written "
              f"by this run (e.g. {shown(kept[0])}): what they hold is reused or written over; "
              "delete them by hand to start them over", flush=True)
    if removed and later:
        print(f"--fresh: {', '.join(later)} read what was deleted; their results are stale "
              "until they run again", flush=True)
