"""The runs behind the result tables: every run's history as one table (Fig. 1, the reports)
and where each run came from (its provenance), both read only from runs that are complete and
trained with the settings the profile asks for (:func:`imlib.runs.completed_run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from imlib.runs import RunFiles, completed_run, read_history

if TYPE_CHECKING:
    from imlib.study import StudyParams, StudyRun

__all__ = ["load_histories", "run_provenance"]


def load_histories(params: StudyParams, protocol: str) -> pd.DataFrame:
    """Every run's history as one long table: ``variant``, ``seed``, then the history's
    columns (``epoch``, ``train_loss``, ``train_acc``, ``holdout_*``, ``test_*``...).

    The runs are ``params.runs(protocol)``, the same ones Table 1 is made of: each must
    be complete, trained with the profile's settings and hold exactly the epochs its result
    says were trained (:func:`imlib.runs.completed_run` raises naming the run, the file and the
    fix).
    """
    frames = []
    for run in params.runs(protocol):
        completed_run(run.config)
        records = read_history(RunFiles(run.dir).history, run.config.epochs)
        frames.append(pd.DataFrame(records).assign(variant=run.variant, seed=run.seed))
    df = pd.concat(frames, ignore_index=True)
    front = ["variant", "seed"]
    return df[front + [c for c in df.columns if c not in front]]


_PROVENANCE_COLUMNS = ("git_commit", "git_dirty", "git_diff_sha256", "created")


def run_provenance(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """Where each finished run came from: columns ``run`` (protocol/variant/seed), then
    ``git_commit``, ``git_dirty`` (the code had uncommitted changes), ``git_diff_sha256`` and
    ``created`` of its result (None where a run recorded no such field), to set beside the
    current code's :func:`imlib.io.provenance`. Every run must be complete
    (:func:`imlib.runs.completed_run`)."""
    rows = []
    for run in runs:
        origin = completed_run(run.config).get("provenance") or {}
        rows.append({"run": run.name, **{k: origin.get(k) for k in _PROVENANCE_COLUMNS}})
    return pd.DataFrame(rows, columns=["run", *_PROVENANCE_COLUMNS])
