"""The study's result tables: their types and layout, files, summaries, Table 1, histories.

What the evaluation (:mod:`imlib.evaluate`) writes and the figures (:mod:`imlib.plots`) and
reports read, and how it was made (:class:`EvalSettings`, built from the profile by
:func:`eval_settings`). Result files, in ``eval_dir``:

- ``clean_metrics.csv``: ``variant, seed``, every metric of ``METRIC_SPECS`` (``top1, top5,
  ece, nll, brier, ece_paper_script, ece_temperature``), ``temperature``, ``n``
- ``sweeps.csv``: ``variant, seed, kind, level, subset, order, accuracy, confidence, nmi, n``
- ``reliability.csv``: ``variant, seed, condition, bin, lower, upper, count, confidence,
  accuracy``
- ``per_image.csv``: ``variant, seed, image`` (its test index), ``label``, then per image
  ``clean_correct``, ``clean_top_prob`` (top-1 confidence; ``clean_top_prob_scaled`` after
  temperature scaling), ``clean_true_prob``, ``clean_nll``
  and the means of ``PER_IMAGE_CONDITIONS`` (5 decimals)
- ``meta.json``: ``settings`` (:class:`EvalSettings`, plus the data set, its test size and
  the class's name), ``params``, ``runs`` (the config of every run evaluated and the size and
  sha256 of the checkpoint read), ``provenance`` (time, commit, uncommitted changes, versions,
  device) and ``files``: each file's size and sha256, the folder's completion record.

Every result folder is written through :mod:`imlib.records` (a completion record every reader
checks). Every table
a notebook shows comes from runs that are complete and trained with the settings the profile
asks for: :func:`load_results` (given the study) and :func:`imlib.histories.load_histories`
refuse anything else.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from imlib._checks import check_choice, check_fraction, check_int, check_names
from imlib.degradations import (KINDS, LEVELS, PAPER_EVAL, DegradationConfig, check_kinds,
                                check_levels)
from imlib.io import atomic_write_text, file_record
from imlib.labels import SPREADS
from imlib.records import RECORD, read_tables, write_tables
from imlib.metrics import METRIC_SPECS, METRICS, Metric
from imlib.runs import NEUTRAL_FIELDS, TrainConfig
from imlib.style import VARIANT_LABELS
from imlib.variants import VARIANTS

if TYPE_CHECKING:
    from imlib.study import StudyParams

__all__ = [
    "ORDERS",
    "CLEAN_COLUMNS",
    "SWEEP_COLUMNS",
    "RELIABILITY_COLUMNS",
    "PER_IMAGE_CONDITIONS",
    "PER_IMAGE_COLUMNS",
    "EvalSettings",
    "EvalResults",
    "eval_settings",
    "check_frame",
    "sort_rows",
    "summarize",
    "table1",
    "table1_markdown",
    "write_table1",
    "save_results",
    "load_results",
    "stale_runs",
    "run_settings",
    "run_record",
]

# When images are normalised: after degrading (training's order) | before (the paper's eval script)
ORDERS = ("degrade_first", "normalize_first")

# temperature: the one fitted on the run's holdout split (NaN without one), for the scaled metrics
CLEAN_COLUMNS = ("variant", "seed", *METRICS, "temperature", "n")
SWEEP_COLUMNS = ("variant", "seed", "kind", "level", "subset", "order", "accuracy", "confidence",
                 "nmi", "n")
RELIABILITY_COLUMNS = ("variant", "seed", "condition", "bin", "lower", "upper", "count",
                       "confidence", "accuracy")
# Per test image and run, what the report's intervals resample: the clean prediction, and means
# over groups of swept conditions in training's evaluation order: column -> (the per-image value
# averaged, "correct" or the true class's "probability"; kinds; lowest and highest level d,
# both included, d = 0 never: it is the clean image).
PER_IMAGE_CONDITIONS = {
    "degraded_correct": ("correct", KINDS, 0.0, 1.0),
    "mosaic_low_true_prob": ("probability", ("mosaic",), 0.0, 0.3),
    "mosaic_high_true_prob": ("probability", ("mosaic",), 0.7, 1.0),
}
PER_IMAGE_COLUMNS = ("variant", "seed", "image", "label", "clean_correct", "clean_top_prob",
                     "clean_top_prob_scaled", "clean_true_prob", "clean_nll",
                     *PER_IMAGE_CONDITIONS)
_FILES = {"clean": ("clean_metrics", CLEAN_COLUMNS), "sweeps": ("sweeps", SWEEP_COLUMNS),
          "reliability": ("reliability", RELIABILITY_COLUMNS),
          "per_image": ("per_image", PER_IMAGE_COLUMNS)}
_REEVALUATE = "./run_all.sh --only 04_evaluation (same --profile and -p options)"



@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation is made: the class followed (Figs. 3-5), the degradation constants,
    the kinds, levels and evaluation orders swept, the seed of the sweeps' randomness, and the
    NMI bins, eps clamp and spread of the runs evaluated (the sweeps' NMI and the claim
    figure's target line). :func:`eval_settings` builds it from the profile; ``batch_size``
    changes no result. The defaults are the paper's evaluation and ``TrainConfig``'s."""

    class_index: int = 0
    degradation: DegradationConfig = PAPER_EVAL
    kinds: tuple[str, ...] = KINDS
    levels: tuple[float, ...] = LEVELS
    orders: tuple[str, ...] = ORDERS
    sweep_seed: int = 0
    nmi_bins: int = TrainConfig.nmi_bins
    max_eps: float = TrainConfig.im_max_eps
    spread: str = TrainConfig.im_spread
    batch_size: int = TrainConfig.eval_batch_size

    def __post_init__(self) -> None:
        check_int(self.class_index, "class_index", 0)
        if not isinstance(self.degradation, DegradationConfig):
            raise ValueError(f"degradation must be a DegradationConfig, "
                             f"got {type(self.degradation).__name__}")
        object.__setattr__(self, "kinds", check_kinds(self.kinds))
        object.__setattr__(self, "levels", check_levels(self.levels))
        object.__setattr__(self, "orders", check_names(self.orders, ORDERS, "orders"))
        check_int(self.sweep_seed, "sweep_seed", 0)
        check_int(self.nmi_bins, "nmi_bins", 2)
        check_fraction(self.max_eps, "max_eps")
        check_choice(self.spread, SPREADS, "spread")
        check_int(self.batch_size, "batch_size", 1)

    def to_dict(self) -> dict[str, Any]:
        """As JSON values, the way ``meta.json`` records them."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvalSettings:
        """Back from :meth:`to_dict` (other keys of a recorded ``settings`` are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"degradation"}
        return cls(degradation=DegradationConfig(**values["degradation"]),
                   **{k: v for k, v in values.items() if k in names})


# Fields of EvalSettings that change no number: an evaluation stays current when they differ.
_NEUTRAL_EVAL_FIELDS = ("batch_size",)


def eval_settings(params: StudyParams, protocol: str) -> EvalSettings:
    """The evaluation ``params`` asks for under ``protocol``: its class and degradation
    constants, and the NMI bins, eps clamp, spread and evaluation batch of the protocol's runs
    (one value per protocol: a run trained otherwise is refused before it is evaluated)."""
    # The NMI bins, clamp and spread are shared by every variant of a protocol.
    runs = params.train_config(protocol, params.variants[0], params.seeds[0])
    return EvalSettings(class_index=params.eval_class, degradation=params.eval_degradation_config,
                        nmi_bins=runs.nmi_bins, max_eps=runs.im_max_eps, spread=runs.im_spread,
                        batch_size=runs.eval_batch_size)


@dataclass
class EvalResults:
    """The result tables of one or more trained models (each row carries variant and seed).

    ``settings`` says how they were made (:meth:`EvalSettings.to_dict`, plus the data set, its
    number of test images and the class's name; :attr:`eval_settings` reads it back); results
    are only combined when their settings agree. ``runs`` holds :func:`run_record` of every
    model evaluated; ``provenance``, where saved tables were computed (:func:`load_results`
    fills it from ``meta.json``).
    """

    clean: pd.DataFrame
    sweeps: pd.DataFrame
    reliability: pd.DataFrame
    per_image: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

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

    @property
    def eval_settings(self) -> EvalSettings:
        """The :class:`EvalSettings` these tables were made with."""
        return EvalSettings.from_dict(self.settings)


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


def _table1_metrics(num_classes: int | None) -> dict[str, Metric]:
    """Table 1's metrics (``METRIC_SPECS``), less those hidden for ``num_classes`` classes."""
    return {name: spec for name, spec in METRIC_SPECS.items()
            if num_classes is None or num_classes > spec.hidden_up_to_classes}


def table1(clean: pd.DataFrame, num_classes: int | None = None) -> pd.DataFrame:
    """The paper's Table 1 as strings, one row per variant: "mean ± sd" over seeds and the
    number of seeds, or the value alone when every variant has one seed.

    Index: variant (in ``VARIANTS`` order, those present); columns ``Model`` and each metric of
    ``METRIC_SPECS`` under its title, scaled and rounded as its spec says (by default
    ``Top-1 Acc (%)``, ``Top-5 Acc (%)``: left out when ``num_classes`` <= 10, ``ECE``,
    ``CE Loss`` (the NLL, nats), ``Brier``, ``ECE (paper script)``, ``ECE after temperature
    scaling``); "–" where a metric is undefined (no holdout split to fit a temperature on).
    """
    metrics = _table1_metrics(num_classes)
    summary = summarize(clean, ("variant",), tuple(metrics))
    with_sd = "n_seeds" in summary
    table = pd.DataFrame({"Model": summary["variant"].map(VARIANT_LABELS)
                          .fillna(summary["variant"])})
    for metric, spec in metrics.items():
        mean, decimals = summary[f"{metric}_mean"] * spec.scale, spec.decimals
        table[spec.title] = (["–" if pd.isna(m) else f"{m:.{decimals}f} ± {s:.{decimals}f}"
                              for m, s in zip(mean, summary[f"{metric}_std"] * spec.scale,
                                              strict=True)]
                             if with_sd else ["–" if pd.isna(m) else f"{m:.{decimals}f}"
                                              for m in mean])
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
    for metric, spec in metrics.items():
        out[f"{metric}_mean"] = (summary[f"{metric}_mean"] * spec.scale).round(spec.decimals + 2)
        if with_sd:
            out[f"{metric}_sd"] = (summary[f"{metric}_std"] * spec.scale).round(spec.decimals + 2)
    if with_sd:
        out["n_seeds"] = summary["n_seeds"].astype(int)
    return out


def write_table1(clean: pd.DataFrame, folder: str | Path, caption: str = "",
                 num_classes: int | None = None) -> list[Path]:
    """Write Table 1 into ``folder``: ``table1.csv`` with numbers (accuracies in percent, one
    mean and, with several seeds, one sd column per metric) and ``table1.md``, the formatted
    view under ``caption``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = folder / "table1.csv", folder / "table1.md"
    atomic_write_text(_table1_numbers(clean, num_classes).to_csv(index=False), csv_path)
    atomic_write_text((f"{caption}\n\n" if caption else "")
                      + table1_markdown(clean, num_classes), md_path)
    return [csv_path, md_path]


def run_settings(config: TrainConfig) -> dict[str, Any]:
    """A run's identity for the result files: its config without the fields that do not change
    what it computes (device, folders, resuming), as JSON values."""
    values = {k: v for k, v in config.to_dict().items() if k not in NEUTRAL_FIELDS}
    return json.loads(json.dumps(values, default=str))


def run_record(config: TrainConfig, checkpoint: str | Path) -> dict[str, Any]:
    """What a result file records of a model it evaluated: :func:`run_settings` and
    ``checkpoint``, the file read (its name, size and sha256), so that a run retrained since
    makes the result stale."""
    return {**run_settings(config),
            "checkpoint": {"file": Path(checkpoint).name, **file_record(checkpoint)}}


def save_results(results: EvalResults, eval_dir: str | Path,
                 params: Mapping[str, Any] | None = None) -> Path:
    """Write the tables as CSV and ``meta.json`` (settings, params, the runs evaluated,
    provenance, completion record) into ``eval_dir`` (:func:`write_tables`); returns
    ``eval_dir``.

    The new folder is written whole beside the old one (``.<name>.<random>.partial``) and
    replaces it by renaming: a write that fails or is killed leaves the old evaluation as it
    was. What else the old folder held (its ``.imlib-created`` marker, ``cifar100c/``) moves
    into the new one; a partial folder left by a killed write is deleted at the next save."""
    if not isinstance(results, EvalResults):
        raise ValueError(f"results must be an EvalResults, got {type(results).__name__}")
    tables = {}
    for name, (filename, columns) in _FILES.items():
        df = getattr(results, name)
        check_frame(df, f"results.{name}", columns)
        tables[filename] = df[list(columns)]
    eval_dir = Path(eval_dir)
    target = eval_dir.resolve()  # a symbolic link keeps pointing at the folder it named
    written = {f"{name}.csv" for name in tables} | {RECORD}

    def retire(old: Path) -> None:
        """Move what ``old`` holds besides the tables into ``target``, then delete it."""
        for entry in old.iterdir():
            if entry.name not in written and not (target / entry.name).exists():
                entry.rename(target / entry.name)
        shutil.rmtree(old)

    target.parent.mkdir(parents=True, exist_ok=True)
    for left in sorted(target.parent.glob(f".{target.name}.*.old")):  # a killed swap
        if not target.exists():
            left.rename(target)
        else:
            retire(left)
    for left in target.parent.glob(f".{target.name}.*.partial"):  # a killed write
        shutil.rmtree(left, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".partial"))
    partial.chmod(target.parent.stat().st_mode & 0o777)  # not mkdtemp's private 0700
    try:
        write_tables(tables, partial, results.settings, params, results.runs)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = target.parent / (partial.name.removesuffix(".partial") + ".old")
    if target.exists():
        target.rename(old)
    partial.rename(target)
    if old.exists():
        retire(old)
    return eval_dir


def load_results(eval_dir: str | Path, params: StudyParams | None = None,
                 protocol: str | None = None) -> EvalResults:
    """The tables written by :func:`save_results` (settings and runs from ``meta.json``), each
    checked against the folder's completion record (:func:`read_tables`).

    With ``params`` and ``protocol``, the evaluation must be current: made with
    :func:`eval_settings` of both (class, degradation constants, kinds, levels, orders, sweep
    seed, NMI bins, eps clamp, spread), of exactly the runs ``params.runs(protocol)`` asks for,
    trained with their settings, from the checkpoints their folders hold now
    (:func:`stale_runs`). Anything else raises ValueError naming the difference and the command
    that redoes it.
    """
    if (params is None) != (protocol is None):
        raise ValueError("load_results checks an evaluation against params and protocol "
                         "together: give both (e.g. load_results(params.eval_dir(p), params, p)) "
                         "or neither")
    eval_dir = Path(eval_dir)
    asked = None
    if params is not None:
        asked = {k: v for k, v in eval_settings(params, protocol).to_dict().items()
                 if k not in _NEUTRAL_EVAL_FIELDS}
    frames, meta = read_tables(eval_dir, [f for f, _ in _FILES.values()], _REEVALUATE, asked)
    for filename, columns in _FILES.values():
        check_frame(frames[filename], f"{eval_dir / filename}.csv", columns)
    results = EvalResults(**{name: frames[f] for name, (f, _) in _FILES.items()},
                          settings=meta["settings"], runs=meta.get("runs") or [],
                          provenance=meta.get("provenance") or {})
    if params is not None:
        problems = stale_runs(results.runs, params, protocol)
        if problems:
            detail = "; ".join(f"{v} seed {s}{why}" for (v, s), why in problems.items())
            raise ValueError(f"the evaluation in {eval_dir} is stale: it does not match the runs "
                             f"the profile asks for ({detail}). Redo it with {_REEVALUATE}")
    return results


def stale_runs(recorded: Sequence[Mapping[str, Any]], params: StudyParams, protocol: str
               ) -> dict[tuple[str, int], str]:
    """What keeps each run of an evaluation from being current, by (variant, seed): a run of
    ``params.runs(protocol)`` that ``recorded`` (an evaluation's ``runs``) lacks, holds
    with other settings or from another checkpoint than its folder holds now, and a recorded run
    the profile does not ask for, each said as what follows "<variant> seed <seed>" (e.g.
    ``" was not evaluated"``). Empty when the evaluation is current."""
    runs = params.runs(protocol)

    def key(settings: Mapping[str, Any]) -> tuple[Any, Any]:
        return settings.get("variant"), settings.get("seed")

    by_key = {key(r): r for r in recorded}
    problems = {}
    for run in runs:
        settings = run_settings(run.config)
        saved = by_key.get(key(settings))
        if saved is None:
            problems[run.variant, run.seed] = " was not evaluated"
            continue
        differing = sorted(k for k in settings if saved.get(k) != settings[k])
        if differing:
            problems[run.variant, run.seed] = ": trained with other settings (" + ", ".join(
                f"{k}: evaluated {saved.get(k)!r}, profile {settings[k]!r}" for k in differing
            ) + ")"
            continue
        read = saved.get("checkpoint") or {}
        path = run.dir / str(read.get("file"))
        if not path.is_file() or file_record(path) != {k: read.get(k) for k in ("size", "sha256")}:
            problems[run.variant, run.seed] = (": its checkpoint changed since it was evaluated "
                                               "(trained again?)")
    for variant, seed in sorted(set(by_key) - {(run.variant, run.seed) for run in runs},
                                key=str):
        problems[variant, seed] = " is not in the profile"
    return problems
