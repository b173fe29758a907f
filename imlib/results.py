"""The study's result tables: their types and layout, files, summaries, Table 1, histories.

What the evaluation (:mod:`imlib.evaluate`) writes and the figures (:mod:`imlib.plots`) and
reports read. Result files, in ``eval_dir``:

- ``clean_metrics.csv``: ``variant, seed, top1, top5, ece, nll, brier, ece_paper_script, n``
- ``sweeps.csv``: ``variant, seed, kind, level, subset, order, accuracy, confidence, nmi, n``
- ``reliability.csv``: ``variant, seed, condition, bin, lower, upper, count, confidence,
  accuracy``
- ``meta.json``: ``settings`` (data set, class, kinds, levels, orders, degradation constants,
  sweep seed), ``params``, ``runs`` (the config of every run evaluated), ``provenance`` (time,
  commit, versions, device) and ``files`` (each CSV's columns).

Every table a notebook shows comes from runs that are complete and trained with the settings
the profile asks for: :func:`load_histories` and :func:`load_results` (given the study) refuse
anything else, naming the run or folder and the command that fixes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from imlib.degradations import KINDS
from imlib.io import atomic_write_text, mark_created, provenance
from imlib.train import NEUTRAL_FIELDS, VARIANTS, TrainConfig, completed_run

if TYPE_CHECKING:
    from imlib.study import StudyParams, StudyRun

__all__ = [
    "METRICS",
    "ORDERS",
    "VARIANT_LABELS",
    "CLEAN_COLUMNS",
    "SWEEP_COLUMNS",
    "RELIABILITY_COLUMNS",
    "EvalResults",
    "check_frame",
    "sort_rows",
    "summarize",
    "table1",
    "table1_markdown",
    "write_table1",
    "write_tables",
    "save_results",
    "load_results",
    "run_settings",
    "load_histories",
    "run_provenance",
]

METRICS = ("top1", "top5", "ece", "nll", "brier", "ece_paper_script")  # classification_metrics
# When images are normalised: after degrading (training's order) | before (the paper's eval script)
ORDERS = ("degrade_first", "normalize_first")
VARIANT_LABELS = {"baseline": "Baseline", "ls": "LS", "im": "IM", "level": "Level"}

CLEAN_COLUMNS = ("variant", "seed", *METRICS, "n")
SWEEP_COLUMNS = ("variant", "seed", "kind", "level", "subset", "order", "accuracy", "confidence",
                 "nmi", "n")
RELIABILITY_COLUMNS = ("variant", "seed", "condition", "bin", "lower", "upper", "count",
                       "confidence", "accuracy")
_FILES = {"clean": ("clean_metrics", CLEAN_COLUMNS), "sweeps": ("sweeps", SWEEP_COLUMNS),
          "reliability": ("reliability", RELIABILITY_COLUMNS)}
_REEVALUATE = "./run_all.sh --only 04_evaluation"

# Table 1: metric -> (column title, scale, decimals). Accuracies in percent as in the paper.
_TABLE1 = {
    "top1": ("Top-1 Acc (%)", 100.0, 2),
    "top5": ("Top-5 Acc (%)", 100.0, 2),
    "ece": ("ECE", 1.0, 4),
    "nll": ("CE Loss", 1.0, 4),
    "brier": ("Brier", 1.0, 4),
    "ece_paper_script": ("ECE (paper script)", 1.0, 4),
}


@dataclass
class EvalResults:
    """The result tables of one or more trained models (each row carries variant and seed).

    ``settings`` says how they were made (data set, class, kinds, levels, degradation
    constants, sweep seed); results are only combined when their settings agree. ``runs``
    holds :func:`run_settings` of every model evaluated.
    """

    clean: pd.DataFrame
    sweeps: pd.DataFrame
    reliability: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def concat(cls, results: Sequence[EvalResults]) -> EvalResults:
        """One EvalResults holding the rows of all of ``results`` (same settings required)."""
        if not results:
            raise ValueError("results must hold at least one EvalResults")
        settings = results[0].settings
        for r in results[1:]:
            if r.settings != settings:
                raise ValueError("results must share their settings to be combined, got "
                                 f"{settings} and {r.settings}")
        return cls(*(pd.concat([getattr(r, name) for r in results], ignore_index=True)
                     for name in _FILES), settings=settings,
                   runs=[run for r in results for run in r.runs])


# --- tables -----------------------------------------------------------------------------------


def check_frame(df: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    """``df`` must be a non-empty DataFrame holding ``columns``; raises ValueError naming it."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError(f"{name} is empty")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(df.columns)}")


def sort_rows(df: pd.DataFrame, by: Sequence[str],
              orders: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """``df`` sorted by ``by`` (stable, new index): variants, kinds and evaluation orders in
    their canonical order (``VARIANTS``, ``KINDS``, ``ORDERS``; ``orders`` adds or replaces
    such a column order), unknown names after them; other columns by value."""
    known = {"variant": VARIANTS, "kind": KINDS, "order": ORDERS, **(orders or {})}

    def rank(column: pd.Series) -> pd.Series:
        order = known.get(column.name)
        if order is None:
            return column
        return column.map({v: i for i, v in enumerate(order)}).fillna(len(order))

    return df.sort_values(list(by), key=rank, kind="stable", ignore_index=True)


def summarize(df: pd.DataFrame, by: Sequence[str] = ("variant",),
              metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and sample std over seeds of each metric, per group ``by``.

    ``df`` holds one row per seed and group (a ``seed`` column is required; a group with two
    rows for the same seed means ``by`` misses a key, e.g. ``kind`` for sweeps). Returns the
    ``by`` columns, ``<metric>_mean`` and ``<metric>_std`` (ddof 1; 0 for a group of a single
    seed) for each metric, and ``n_seeds``; rows in :func:`sort_rows` order. When every group
    has a single seed there is no spread to show: only the ``<metric>_mean`` columns.
    """
    by, metrics = list(by), list(metrics)
    if not by:
        raise ValueError("by must name at least one column")
    if not metrics:
        raise ValueError("metrics must name at least one column")
    check_frame(df, "df", ["seed", *by, *metrics])
    if df.duplicated([*by, "seed"]).any():
        raise ValueError(f"df has several rows per seed in a group of by={by}; add the columns "
                         "that tell them apart (e.g. kind, level, subset, order for sweeps)")
    grouped = df.groupby(by, sort=False)[metrics]
    means, stds = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    out = pd.concat([means.add_suffix("_mean"), stds.add_suffix("_std")], axis=1)
    out = out[[f"{m}_{s}" for m in metrics for s in ("mean", "std")]]
    out["n_seeds"] = df.groupby(by, sort=False).size()
    if (out["n_seeds"] == 1).all():
        out = out[[f"{m}_mean" for m in metrics]]
    return sort_rows(out.reset_index(), by)


def _table1_metrics(num_classes: int | None) -> dict[str, tuple[str, float, int]]:
    """Table 1's columns; top-5 only with more than 10 classes (with fewer it says little)."""
    return {m: spec for m, spec in _TABLE1.items()
            if not (m == "top5" and num_classes is not None and num_classes <= 10)}


def table1(clean: pd.DataFrame, num_classes: int | None = None) -> pd.DataFrame:
    """The paper's Table 1 as strings, one row per variant: "mean ± sd" over seeds and the
    number of seeds, or the value alone when every variant has one seed.

    Index: variant (baseline, ls, im, level, those present); columns ``Model``, ``Top-1 Acc
    (%)``, ``Top-5 Acc (%)`` (percent, 2 decimals; left out when ``num_classes`` <= 10),
    ``ECE``, ``CE Loss`` (the NLL, nats), ``Brier``, ``ECE (paper script)`` (4 decimals).
    """
    metrics = _table1_metrics(num_classes)
    summary = summarize(clean, ("variant",), tuple(metrics))
    with_sd = "n_seeds" in summary
    table = pd.DataFrame({"Model": summary["variant"].map(VARIANT_LABELS)
                          .fillna(summary["variant"])})
    for metric, (title, scale, decimals) in metrics.items():
        mean = summary[f"{metric}_mean"] * scale
        table[title] = ([f"{m:.{decimals}f} ± {s:.{decimals}f}"
                         for m, s in zip(mean, summary[f"{metric}_std"] * scale, strict=True)]
                        if with_sd else [f"{m:.{decimals}f}" for m in mean])
    if with_sd:
        table["n seeds"] = summary["n_seeds"].astype(int)
    table.index = pd.Index(summary["variant"], name="variant")
    return table


def table1_markdown(clean: pd.DataFrame, num_classes: int | None = None) -> str:
    """:func:`table1` as a Markdown table (for ``table1.md``)."""
    table = table1(clean, num_classes)
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join([":---"] + ["---:"] * (len(table.columns) - 1)) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def _table1_numbers(clean: pd.DataFrame, num_classes: int | None) -> pd.DataFrame:
    """Table 1 as numbers in the table's units, rounded two digits past what :func:`table1`
    shows (no float32 noise):
    ``<metric>_mean`` (and ``<metric>_sd`` and ``n_seeds`` when a variant has several seeds)."""
    metrics = _table1_metrics(num_classes)
    summary = summarize(clean, ("variant",), tuple(metrics))
    with_sd = "n_seeds" in summary
    out = summary[["variant"]].assign(model=summary["variant"].map(VARIANT_LABELS))
    for metric, (_, scale, decimals) in metrics.items():
        out[f"{metric}_mean"] = (summary[f"{metric}_mean"] * scale).round(decimals + 2)
        if with_sd:
            out[f"{metric}_sd"] = (summary[f"{metric}_std"] * scale).round(decimals + 2)
    if with_sd:
        out["n_seeds"] = summary["n_seeds"].astype(int)
    return out


def write_table1(clean: pd.DataFrame, folder: str | Path, caption: str = "",
                 num_classes: int | None = None) -> list[Path]:
    """Write Table 1 into ``folder``: ``table1.csv`` with numbers (accuracies in percent, one
    mean and, with several seeds, one sd column per metric) and ``table1.md``, the formatted
    view under ``caption``; returns both paths."""
    folder = Path(folder)
    mark_created(folder)
    csv_path, md_path = folder / "table1.csv", folder / "table1.md"
    atomic_write_text(_table1_numbers(clean, num_classes).to_csv(index=False), csv_path)
    atomic_write_text((f"{caption}\n\n" if caption else "")
                      + table1_markdown(clean, num_classes), md_path)
    return [csv_path, md_path]


# --- files ------------------------------------------------------------------------------------


def write_tables(tables: Mapping[str, pd.DataFrame], folder: str | Path,
                 settings: Mapping[str, Any] | None = None,
                 params: Mapping[str, Any] | None = None,
                 runs: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write each table as ``<name>.csv`` and ``meta.json`` (settings, params, runs,
    provenance, each file's columns) into ``folder`` (marked as made by imlib), each
    atomically; returns ``folder``."""
    if not tables or not all(isinstance(t, pd.DataFrame) for t in tables.values()):
        raise ValueError("tables must be a non-empty mapping of names to pandas DataFrames")
    bad = [name for name in tables if not name or not name.replace("_", "").isalnum()]
    if bad:
        raise ValueError(f"table names must be letters, digits and '_', got {bad}")
    folder = Path(folder)
    mark_created(folder)
    for name, table in tables.items():
        atomic_write_text(table.to_csv(index=False), folder / f"{name}.csv")
    meta = {"settings": dict(settings or {}), "params": dict(params) if params else None,
            "runs": [dict(r) for r in runs] if runs is not None else None,
            "provenance": provenance(),
            "files": {f"{name}.csv": list(map(str, t.columns)) for name, t in tables.items()}}
    atomic_write_text(json.dumps(meta, indent=2, default=str), folder / "meta.json")
    return folder


def run_settings(config: TrainConfig) -> dict[str, Any]:
    """A run's identity for the result files: its config without the fields that do not change
    what it computes (device, folders, resuming), as JSON values."""
    values = {k: v for k, v in config.to_dict().items() if k not in NEUTRAL_FIELDS}
    return json.loads(json.dumps(values, default=str))


def save_results(results: EvalResults, eval_dir: str | Path,
                 params: Mapping[str, Any] | None = None) -> Path:
    """Write the three tables as CSV and ``meta.json`` (settings, params, the runs evaluated,
    provenance) into ``eval_dir`` (:func:`write_tables`); returns ``eval_dir``."""
    if not isinstance(results, EvalResults):
        raise ValueError(f"results must be an EvalResults, got {type(results).__name__}")
    tables = {}
    for name, (filename, columns) in _FILES.items():
        df = getattr(results, name)
        check_frame(df, f"results.{name}", columns)
        tables[filename] = df[list(columns)]
    return write_tables(tables, eval_dir, results.settings, params, results.runs)


def load_results(eval_dir: str | Path, params: StudyParams | None = None) -> EvalResults:
    """The tables written by :func:`save_results` (settings and runs from ``meta.json``).

    With ``params``, the folder must hold exactly the runs ``params.runs(params.protocol)``
    asks for, with their settings; a stale evaluation (of other runs, or runs trained with other
    settings) raises ValueError naming the difference and the command that redoes it.
    """
    eval_dir = Path(eval_dir)
    paths = [eval_dir / f"{f}.csv" for f, _ in _FILES.values()] + [eval_dir / "meta.json"]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{eval_dir} lacks {missing}; run the evaluation first "
                                f"(notebook 04_evaluation: {_REEVALUATE})")
    frames = {}
    for name, (filename, columns) in _FILES.items():
        df = pd.read_csv(eval_dir / f"{filename}.csv")
        check_frame(df, f"{filename}.csv", columns)
        frames[name] = df
    meta = json.loads((eval_dir / "meta.json").read_text(encoding="utf-8"))
    results = EvalResults(**frames, settings=meta["settings"], runs=meta.get("runs") or [])
    if params is not None:
        _check_current(results.runs, params, eval_dir)
    return results


def _check_current(recorded: list[dict[str, Any]], params: StudyParams, eval_dir: Path) -> None:
    """Raise unless ``recorded`` holds the settings of exactly the profile's runs."""
    expected = [run_settings(run.config) for run in params.runs(params.protocol)]

    def key(settings: Mapping[str, Any]) -> tuple[Any, Any]:
        return settings.get("variant"), settings.get("seed")

    by_key = {key(r): r for r in recorded}
    problems = []
    for settings in expected:
        saved = by_key.get(key(settings))
        if saved is None:
            problems.append(f"{key(settings)[0]} seed {key(settings)[1]} was not evaluated")
            continue
        differing = sorted(k for k in settings if saved.get(k) != settings[k])
        if differing:
            detail = ", ".join(f"{k}: evaluated {saved.get(k)!r}, profile {settings[k]!r}"
                               for k in differing)
            problems.append(f"{key(settings)[0]} seed {key(settings)[1]} ({detail})")
    extra = sorted(set(by_key) - {key(s) for s in expected}, key=str)
    problems += [f"{v} seed {s} is not in the profile" for v, s in extra]
    if problems:
        raise ValueError(f"the evaluation in {eval_dir} is stale: it does not match the runs "
                         f"the profile asks for ({'; '.join(problems)}). Redo it with "
                         f"{_REEVALUATE} (and the same -p options)")


# --- the runs behind the tables ---------------------------------------------------------------


def _read_history(path: Path) -> list[dict[str, Any]]:
    """Every record of a ``history.jsonl``; a line that is not a JSON object stops with the
    file and line named (a complete run's history has no torn line)."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            record = err
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}, is not a JSON record ({line[:60]!r}); the "
                             "history is damaged: delete that run's folder and train it again "
                             "(./run_all.sh --only 03_training)")
        records.append(record)
    return records


def load_histories(params: StudyParams) -> pd.DataFrame:
    """Every run's ``history.jsonl`` as one long table: ``variant``, ``seed``, then the
    history's columns (``epoch``, ``train_loss``, ``train_acc``, ``holdout_*``, ``test_*``...).

    The runs are ``params.runs(params.protocol)``, the same ones Table 1 is made of: each must
    be complete and trained with the profile's settings (:func:`imlib.train.completed_run`
    raises naming the run and the fix), and a damaged history line is an error naming the file
    and line.
    """
    frames = []
    for run in params.runs(params.protocol):
        completed_run(run.config)
        records = _read_history(run.dir / "history.jsonl")
        if not records:
            raise ValueError(f"{run.dir / 'history.jsonl'} is empty although the run is "
                             "complete: delete that run's folder and train it again "
                             "(./run_all.sh --only 03_training)")
        frames.append(pd.DataFrame(records).assign(variant=run.variant, seed=run.seed))
    df = pd.concat(frames, ignore_index=True)
    front = ["variant", "seed"]
    return df[front + [c for c in df.columns if c not in front]]


def run_provenance(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """Where each finished run came from: columns ``run`` (protocol/variant/seed),
    ``git_commit`` and ``created`` of its ``result.json``, to set beside the current code's
    :func:`imlib.io.provenance`. Every run must be complete (:func:`imlib.train.completed_run`).
    """
    rows = []
    for run in runs:
        origin = completed_run(run.config).get("provenance") or {}
        rows.append({"run": run.name,
                     "git_commit": origin.get("git_commit"), "created": origin.get("created")})
    return pd.DataFrame(rows, columns=["run", "git_commit", "created"])
