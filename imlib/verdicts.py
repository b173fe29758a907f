"""The verdicts of the reproduction report (notebook 06): each headline claim of the paper, and
each question the companion asks of its own controls, as comparisons (:class:`Claim`) tested on
a profile's per-image results with a 95 % interval over seeds and test images
(:mod:`imlib.intervals`), and the table, display and conclusion built on them.

A paper claim is one line (``Claim.group``) that may need several comparisons: "IM's top-1 is
the highest" is IM above the baseline *and* above LS. Its verdict is the comparisons' together
(:func:`claim_verdicts`): reproduced when every testable one is, contradicted when any is, and
so on. The companion's own questions (``question == "companion"``) are listed apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from imlib import intervals
from imlib.degradations import KINDS
from imlib.metrics import METRIC_SPECS
from imlib.paper import PAPER_TABLE1
from imlib.records import write_tables
from imlib.results import PER_IMAGE_CONDITIONS

__all__ = ["MIN_SEEDS", "VERDICTS", "QUESTIONS", "Claim", "CLAIM_METRICS", "CLAIMS",
           "VERDICT_COLUMNS", "compare", "verdict_table", "claim_verdicts", "verdict_display",
           "verdict_conclusion", "write_verdicts"]


MIN_SEEDS = 3  # fewer seeds per variant give no verdict: 2 runs say little about their spread
# A verdict is one of these; "too few seeds" carries the number: "too few seeds (2)".
VERDICTS = ("reproduced", "contradicted", "inconclusive", "too few seeds",
            "not testable on this data")
# A claim of several comparisons whose testable ones do not all agree and none contradicts.
PARTLY = "partly reproduced"
QUESTIONS = ("paper", "companion")  # the paper's claims | the companion's questions of its controls
# The per-image columns of the confidence claims (Fig. 3: mosaic), low and high distortion.
LOW_DISTORTION, HIGH_DISTORTION = "mosaic_low_true_prob", "mosaic_high_true_prob"


@dataclass(frozen=True)
class Claim:
    """One comparison: ``variant``'s ``metric`` (a key of ``CLAIM_METRICS``) is ``direction``
    ("above" or "below") ``other``'s, on the ``subset`` of the test images ("all", or "class":
    those of the evaluation class). ``group`` is the claim (or question) it tests, one line of
    the report; ``question`` says whose (``QUESTIONS``). ``paper`` is what the paper shows
    where it gives no number; a Table 1 claim reads its numbers from ``PAPER_TABLE1``."""

    text: str
    variant: str
    other: str
    metric: str
    direction: str
    paper: str = ""
    subset: str = "all"
    group: str = ""
    question: str = "paper"


def _kinds_in_words(column: str) -> str:
    """The kinds a column of ``PER_IMAGE_CONDITIONS`` averages over, in words."""
    kinds = PER_IMAGE_CONDITIONS[column][1]
    return "every kind" if set(kinds) == set(KINDS) else ", ".join(kinds)


def _levels_in_words(column: str) -> str:
    """The levels a column of ``PER_IMAGE_CONDITIONS`` averages over, in words."""
    _, _, lowest, highest = PER_IMAGE_CONDITIONS[column]
    return f"0 < d ≤ {highest:g}" if lowest == 0 else f"{lowest:g} ≤ d ≤ {highest:g}"


# metric -> (what it measures, its per-image values in a per_image table, the metric of a seed,
# what NaN among those values means)
_UNSWEPT = "the sweep reached none of its conditions"
CLAIM_METRICS: dict[str, tuple[str, Callable[[pd.DataFrame], pd.DataFrame], Callable, str]] = {
    "top1": ("clean top-1", lambda t: t[["clean_correct"]], intervals.mean, ""),
    "top5": ("clean top-5", lambda t: t[["clean_top5_correct"]], intervals.mean, ""),
    "ece": ("clean ECE, 15 bins", lambda t: t[["clean_top_prob", "clean_correct"]],
            intervals.calibration_error, ""),
    "ece_temperature": ("clean ECE, 15 bins, after temperature scaling on the holdout split",
                        lambda t: t[["clean_top_prob_scaled", "clean_correct"]],
                        intervals.calibration_error,
                        "no holdout split to fit a temperature on"),
    "nll": ("clean cross-entropy", lambda t: t[["clean_nll"]], intervals.mean, ""),
    "accuracy_degraded": (f"top-1, {_kinds_in_words('degraded_correct')}, "
                          f"{_levels_in_words('degraded_correct')}",
                          lambda t: t[["degraded_correct"]], intervals.mean, _UNSWEPT),
    "confidence_low": (f"true-class confidence, {_kinds_in_words(LOW_DISTORTION)}, "
                       f"{_levels_in_words(LOW_DISTORTION)}", lambda t: t[[LOW_DISTORTION]],
                       intervals.mean, _UNSWEPT),
    "confidence_drop": (f"true-class confidence, {_kinds_in_words(LOW_DISTORTION)}: mean at "
                        f"{_levels_in_words(LOW_DISTORTION)} minus mean at "
                        f"{_levels_in_words(HIGH_DISTORTION)}",
                        lambda t: (t[LOW_DISTORTION] - t[HIGH_DISTORTION]).to_frame(),
                        intervals.mean, _UNSWEPT),
}

# The paper's Fig. 3 (5 apple images, mosaic), read off its curves.
_FIG3_LOW = "Fig. 3, 5 apple images, read off: IM ≈ 0.47, baseline ≈ 0.37 for d < 0.25"
_FIG3_DROP = "Fig. 3, read off: IM ≈ 0.47 → ≈ 0.02, baseline ≈ 0.37 → ≈ 0.17 (IM falls more)"
_TOP1 = "IM has the highest top-1 accuracy (Table 1)"
_TOP5 = "IM has the highest top-5 accuracy (Table 1)"
_LS_CALIBRATES = "LS calibrates best (Table 1: its ECE below both others')"
_IM_CALIBRATES = "IM calibrates better than the baseline (Table 1)"
_CE = "IM has the lowest cross-entropy (Table 1)"
_ROBUST = "IM is more robust: higher accuracy under degradation (abstract)"
_CONFIDENT = "IM keeps a higher confidence at low distortion (Fig. 3, mosaic)"
_GRACEFUL = "IM degrades more gracefully: its confidence falls less (Fig. 3, mosaic)"
_LEVEL = "Does NMI add anything over the degradation level d? (IM against the level control)"
_PER_IMAGE = ("Does IM's per-image eps matter, beyond its mean per kind and level? (IM against "
              "im-binned)")
_COST = "What do the degradations cost on clean images? (the clean reference against the baseline)"
_BUY = "What do the degradations buy under degradation? (the baseline against the clean reference)"
_TEMPERATURE = ("Is IM's calibration more than a temperature? (ECE after temperature scaling, "
                "IM against the baseline and LS)")


def _pair(group: str, metric: str, direction: str, others: tuple[str, ...] = ("baseline", "ls"),
          variant: str = "im", question: str = "paper", paper: str = "",
          subsets: tuple[str, ...] = ("all",)) -> tuple[Claim, ...]:
    """The comparisons of one claim: ``variant`` against each of ``others`` on each subset."""
    word = "above" if direction == "above" else "below"
    return tuple(Claim(f"{variant} {word} {other}" + ("" if subset == "all" else ", class"),
                       variant, other, metric, direction, paper, subset, group, question)
                 for other in others for subset in subsets)


CLAIMS = (
    *_pair(_TOP1, "top1", "above"),
    *_pair(_TOP5, "top5", "above"),
    *_pair(_LS_CALIBRATES, "ece", "below", ("baseline", "im"), variant="ls"),
    *_pair(_IM_CALIBRATES, "ece", "below", ("baseline",)),
    *_pair(_CE, "nll", "below"),
    *_pair(_ROBUST, "accuracy_degraded", "above", paper="abstract (no numbers)"),
    *_pair(_CONFIDENT, "confidence_low", "above", paper=_FIG3_LOW, subsets=("all", "class")),
    *_pair(_GRACEFUL, "confidence_drop", "below", paper=_FIG3_DROP, subsets=("all", "class")),
    *_pair(_LEVEL, "top1", "above", ("level",), question="companion"),
    *_pair(_LEVEL, "ece", "below", ("level",), question="companion"),
    *_pair(_PER_IMAGE, "top1", "above", ("im-binned",), question="companion"),
    *_pair(_PER_IMAGE, "ece", "below", ("im-binned",), question="companion"),
    *_pair(_COST, "top1", "above", ("baseline",), variant="clean", question="companion"),
    *_pair(_BUY, "accuracy_degraded", "above", ("clean",), variant="baseline",
           question="companion"),
    *_pair(_TEMPERATURE, "ece_temperature", "below", question="companion"),
)
# The columns of verdicts.csv: differences and intervals in the metric's units (fractions for
# accuracies and confidences), as notebook 06 writes them.
VERDICT_COLUMNS = ("dataset", "question", "group", "claim", "protocol", "metric", "subset",
                   "variant", "other", "variant_value", "other_value", "difference", "low", "high",
                   "df", "verdict", "seeds")


def _seed_rows(per_image: pd.DataFrame, variant: str, values: Callable
               ) -> tuple[Tensor, np.ndarray]:
    """A variant's per-image values, one row per seed (n_seeds, N, columns), and its images."""
    rows = per_image[per_image["variant"] == variant].sort_values(["seed", "image"])
    n_seeds = rows["seed"].nunique()
    if len(rows) % n_seeds:
        raise ValueError(f"the seeds of {variant!r} hold different numbers of test images in "
                         "the per-image table; evaluate every run on the same test split")
    images = rows["image"].to_numpy().reshape(n_seeds, -1)
    if (images != images[:1]).any():
        raise ValueError(f"the per-image table holds other test images for each seed of "
                         f"{variant!r}; evaluate every run on the same test split")
    table = torch.tensor(values(rows).to_numpy(dtype="float64"))
    return table.reshape(n_seeds, images.shape[1], -1), images[0]


def _verdict(interval: intervals.Interval, direction: str) -> str:
    """reproduced | contradicted | inconclusive, by where the interval lies against 0, or too
    few seeds (never reproduced)."""
    if interval.seeds < MIN_SEEDS:
        return f"too few seeds ({interval.seeds})"
    low, high = ((interval.low, interval.high) if direction == "above"
                 else (-interval.high, -interval.low))
    return "reproduced" if low > 0 else "contradicted" if high < 0 else "inconclusive"


# A claim of top-5 accuracy says little with this many classes or fewer: every model is near 100 %.
TOP5_MIN_CLASSES = 11


def compare(per_image: pd.DataFrame, claim: Claim, eval_class: int, num_classes: int,
            resamples: int = 1000) -> tuple[str, intervals.Interval | None, str]:
    """The verdict of one comparison on one protocol's per-image table
    (``EvalResults.per_image``), the interval behind it
    (:func:`imlib.intervals.difference_interval`) and why it is not testable ("" when it is;
    the interval is then None: a variant not trained, no image of the evaluation class, a
    column this evaluation did not save, top-5 of too few classes).

    The verdict: "reproduced" when the 95 % interval of ``variant - other`` lies on the
    claimed side of 0, "contradicted" when it lies on the other side, "inconclusive" when it
    holds 0, "too few seeds (n)" with fewer than ``MIN_SEEDS`` seeds of either variant.
    """
    untestable = "not testable on this data"
    if claim.metric == "top5" and num_classes < TOP5_MIN_CLASSES:
        return untestable, None, f"top-5 of {num_classes} classes is near 100 % for any model"
    if claim.subset == "class":
        per_image = per_image[per_image["label"] == eval_class]
    present = set(per_image["variant"].unique())
    missing = [v for v in (claim.variant, claim.other) if v not in present]
    if missing:
        return untestable, None, f"{', '.join(missing)} not trained under this protocol"
    _, values, metric, nan_means = CLAIM_METRICS[claim.metric]
    try:
        a, images = _seed_rows(per_image, claim.variant, values)
        b, other_images = _seed_rows(per_image, claim.other, values)
    except KeyError as err:
        return untestable, None, f"the evaluation saved no {err.args[0]} column"
    if bool(a.isnan().any() | b.isnan().any()):
        return untestable, None, nan_means or "its per-image values hold NaN"
    if not np.array_equal(images, other_images):
        raise ValueError(f"{claim.variant!r} and {claim.other!r} were evaluated on different "
                         "test images; evaluate every run on the same test split")
    squeeze = a.shape[-1] == 1  # a mean of one value per image; the ECE reads two
    interval = intervals.difference_interval(a[..., 0] if squeeze else a,
                                             b[..., 0] if squeeze else b, metric,
                                             resamples=resamples)
    return _verdict(interval, claim.direction), interval, ""


def _paper_numbers(claim: Claim) -> str:
    """The paper's two numbers for a Table 1 claim, as printed (the column of the metric's
    spec), else ``claim.paper``."""
    spec = METRIC_SPECS.get(claim.metric)
    column = spec.paper_column if spec is not None else None
    if column is None or claim.variant not in PAPER_TABLE1 or claim.other not in PAPER_TABLE1:
        return claim.paper
    a, b = PAPER_TABLE1[claim.variant][column], PAPER_TABLE1[claim.other][column]
    return f"{a:g} vs {b:g}" + (" %" if spec.scale == 100 else "")


def _measured(claim: Claim, eval_class: int) -> str:
    subset = "all test images" if claim.subset == "all" else f"test images of class {eval_class}"
    return f"{CLAIM_METRICS[claim.metric][0]}; {subset}"


def verdict_table(per_image: Mapping[str, pd.DataFrame], eval_class: int, num_classes: int,
                  dataset: str, resamples: int = 1000) -> pd.DataFrame:
    """Every comparison of ``CLAIMS`` on every protocol, computed: one row per (comparison,
    protocol).

    ``per_image``: protocol -> its per-image table (``EvalResults.per_image``);
    ``eval_class``: the class of the "class" comparisons; ``num_classes`` and ``dataset``: the
    data's. Columns: ``VERDICT_COLUMNS`` (``dataset``, ``question``, ``group``: the claim's
    line; ``claim``: the comparison; ``variant_value`` and ``other_value``: means over seeds,
    ``difference`` and its 95 % interval ``low``, ``high`` and degrees of freedom ``df``
    (:func:`compare`; NaN where not testable, or with one seed), ``verdict`` and ``seeds``, the
    fewer of the two variants'), then ``measured`` (in words), ``paper`` (its numbers or
    figure) and ``why`` (why not testable). Accuracies and confidences as fractions.
    """
    rows = []
    for claim in CLAIMS:
        for protocol, table in per_image.items():
            verdict, interval, why = compare(table, claim, eval_class, num_classes, resamples)
            numbers = (dict.fromkeys(("variant_value", "other_value", "difference", "low",
                                      "high", "df"), math.nan) | {"seeds": 0}
                       if interval is None
                       else {"variant_value": interval.variant_mean,
                             "other_value": interval.other_mean,
                             "difference": interval.difference, "low": interval.low,
                             "high": interval.high, "df": interval.df, "seeds": interval.seeds})
            rows.append({"dataset": dataset, "question": claim.question, "group": claim.group,
                         "claim": claim.text, "protocol": protocol, "metric": claim.metric,
                         "subset": claim.subset, "variant": claim.variant,
                         "other": claim.other, **numbers, "verdict": verdict,
                         "measured": _measured(claim, eval_class),
                         "paper": _paper_numbers(claim), "why": why})
    return pd.DataFrame(rows)


def _together(verdicts: list[str]) -> str:
    """The verdict of a claim from its comparisons' verdicts: not testable when none is
    testable; too few seeds when any testable one has too few; contradicted when any is;
    reproduced when all testable ones are; partly reproduced when some are; else
    inconclusive."""
    testable = [v for v in verdicts if v != VERDICTS[-1]]
    if not testable:
        return VERDICTS[-1]
    for verdict in testable:
        if verdict.startswith("too few seeds"):
            return verdict
    if "contradicted" in testable:
        return "contradicted"
    reproduced = testable.count("reproduced")
    if reproduced == len(testable):
        return "reproduced"
    return PARTLY if reproduced else "inconclusive"


def claim_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """One row per claim (``group``) and protocol of :func:`verdict_table`, in ``CLAIMS``
    order: ``question``, ``group``, ``protocol``, ``verdict`` (the comparisons' together, see
    :func:`_together`), ``comparisons`` (how many) and ``testable`` (how many could be
    tested)."""
    rows = []
    for (question, group, protocol), part in table.groupby(["question", "group", "protocol"],
                                                           sort=False):
        verdicts = list(part["verdict"])
        rows.append({"question": question, "group": group, "protocol": protocol,
                     "verdict": _together(verdicts), "comparisons": len(verdicts),
                     "testable": sum(v != VERDICTS[-1] for v in verdicts)})
    return pd.DataFrame(rows)


def _comparison_text(row: pd.Series) -> str:
    """A comparison's difference, interval and values: accuracies and confidences in %
    (differences in points), ECE and CE as plain numbers; why, when not testable."""
    if math.isnan(row.difference):
        return f"{row.claim}: not testable ({row.why})"
    spec = METRIC_SPECS.get(row.metric)  # Table 1's metrics say their scale; the rest are rates
    percent = spec is None or spec.scale == 100
    scale, digits, unit = (100, 1, " pts") if percent else (1, 3, "")
    interval = ("" if math.isnan(row.low)
                else f" [{scale * row.low:+.{digits}f}, {scale * row.high:+.{digits}f}]")
    values = (f"{scale * row.variant_value:.{digits}f} vs {scale * row.other_value:.{digits}f}"
              + (" %" if percent else ""))
    return (f"{row.claim}: {scale * row.difference:+.{digits}f}{interval}{unit} ({values}), "
            f"{row.verdict}")


def verdict_display(table: pd.DataFrame, question: str = "paper") -> pd.DataFrame:
    """:func:`verdict_table` as notebook 06 shows it, for one ``question`` (the paper's claims
    or the companion's questions): one row per claim (in ``CLAIMS`` order), what is measured,
    the paper's numbers, and per protocol the claim's verdict and each comparison with its
    difference, 95 % interval, values and verdict."""
    table = table[table["question"] == question]
    shown = table.assign(shown=table.apply(_comparison_text, axis=1))
    together = claim_verdicts(table).set_index(["group", "protocol"])["verdict"]
    columns: dict[str, list[str]] = {}
    for protocol in dict.fromkeys(table["protocol"]):
        columns[f"{protocol} protocol: verdict"] = []
        columns[f"{protocol} protocol: comparisons"] = []
    index, measured, paper = [], [], []
    for group, part in shown.groupby("group", sort=False):
        index.append(group)
        measured.append("; ".join(dict.fromkeys(part["measured"])))
        paper.append("; ".join(p for p in dict.fromkeys(part["paper"]) if p) or "–")
        for protocol, rows in part.groupby("protocol", sort=False):
            columns[f"{protocol} protocol: verdict"].append(together[(group, protocol)])
            columns[f"{protocol} protocol: comparisons"].append("; ".join(rows["shown"]))
    out = pd.DataFrame({"measured as": measured, "in the paper": paper, **columns},
                       index=pd.Index(index, name="claim" if question == "paper"
                                      else "question"))
    return out if question == "paper" else out.drop(columns="in the paper")


def _listed(rows: pd.DataFrame, verdict: str) -> str:
    """The claims of ``rows`` with ``verdict``, in Markdown italics."""
    return "; ".join(f"*{group}*" for group in rows.loc[rows["verdict"] == verdict, "group"])


def verdict_conclusion(table: pd.DataFrame) -> str:
    """A short conclusion of :func:`verdict_table` (Markdown), every word from its verdicts:
    per protocol how many of the paper's claims are reproduced, partly reproduced,
    contradicted, inconclusive or not testable, which ones are reproduced or contradicted,
    then the companion's questions, and how many intervals it took (none corrected for
    multiplicity); or the seeds it takes to judge when there are too few."""
    claims = claim_verdicts(table)
    parts = []
    for protocol, rows in claims.groupby("protocol", sort=False):
        too_few = rows["verdict"].str.startswith("too few seeds")
        if too_few.any():
            seeds = int(table.loc[(table["protocol"] == protocol)
                                  & table["verdict"].str.startswith("too few"), "seeds"].min())
            parts.append(f"Under the `{protocol}` protocol no claim is judged: {seeds} seed(s) "
                         f"per variant, {MIN_SEEDS} are needed (`-p seeds \"[0, 1, 2]\"`).")
            continue
        for question, label in (("paper", "of the paper's {n} claims"),
                                ("companion", "of the companion's {n} questions")):
            chosen = rows[rows["question"] == question]
            if chosen.empty:
                continue
            if (chosen["verdict"] == VERDICTS[-1]).all():
                parts.append(f"Under the `{protocol}` protocol none "
                             f"{label.format(n=len(chosen))} is testable (its variants are not "
                             "trained under it).")
                continue
            counts = chosen["verdict"].value_counts()
            order = ("reproduced", PARTLY, "contradicted", "inconclusive", VERDICTS[-1])
            summary = ", ".join(f"{counts[v]} {v}" for v in order if v in counts)
            text = (f"Under the `{protocol}` protocol, {label.format(n=len(chosen))}: "
                    f"{summary}.")
            for verdict in ("reproduced", "contradicted"):
                if verdict in counts:
                    text += f" {verdict.capitalize()}: {_listed(chosen, verdict)}."
            parts.append(text)
    tested = table[table["verdict"] != VERDICTS[-1]]
    parts.append(f"These rest on {len(tested)} intervals at 95 % each, not corrected for "
                 f"multiplicity: were no variant different from another, about "
                 f"{0.05 * len(tested):.0f} of them would still exclude 0 by chance.")
    return "**Conclusion.** " + " ".join(parts)


def write_verdicts(table: pd.DataFrame, folder: str | Path, eval_class: int,
                   study: Mapping[str, object] | None = None) -> Path:
    """Write :func:`verdict_table`'s ``VERDICT_COLUMNS`` as ``verdicts.csv`` into ``folder``
    (``runs/<profile>/eval``) through :func:`imlib.results.write_tables`, numbers rounded to 6
    decimals, with ``study`` (the profile's parameters) in its ``meta.json``; returns the
    file's path."""
    write_tables({"verdicts": table[list(VERDICT_COLUMNS)].round(6)}, folder,
                 settings={"eval_class": eval_class, "min_seeds": MIN_SEEDS,
                           "interval": "95 %, seeds and test images (imlib.intervals)",
                           "df": "Welch-Satterthwaite, capped at n_a + n_b - 2"},
                 params=dict(study or {}))
    return Path(folder) / "verdicts.csv"
