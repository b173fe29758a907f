"""The verdicts of the reproduction report (notebook 06): each headline claim of the paper as
a :class:`Claim`, tested on a profile's per-image results with a 95 % interval over seeds and
test images (:mod:`imlib.intervals`), and the table, display and conclusion built on them.
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
from imlib.paper import PAPER_TABLE1
from imlib.results import PER_IMAGE_CONDITIONS, write_tables

__all__ = ["MIN_SEEDS", "VERDICTS", "Claim", "CLAIM_METRICS", "CLAIMS", "VERDICT_COLUMNS",
           "compare", "verdict_table", "verdict_display", "verdict_conclusion", "write_verdicts"]


MIN_SEEDS = 3  # fewer seeds per variant give no verdict: 2 runs say little about their spread
# A verdict is one of these; "too few seeds" carries the number: "too few seeds (2)".
VERDICTS = ("reproduced", "contradicted", "inconclusive", "too few seeds",
            "not testable on this data")
# The per-image columns of the confidence claims (Fig. 3: mosaic), low and high distortion.
LOW_DISTORTION, HIGH_DISTORTION = "mosaic_low_true_prob", "mosaic_high_true_prob"


@dataclass(frozen=True)
class Claim:
    """One headline claim: ``variant``'s ``metric`` (a key of ``CLAIM_METRICS``) is
    ``direction`` ("above" or "below") ``other``'s, on the ``subset`` of the test images ("all",
    or "class": those of the evaluation class). ``paper`` is what the paper shows where it
    gives no number; a Table 1 claim reads its numbers from ``PAPER_TABLE1``."""

    text: str
    variant: str
    other: str
    metric: str
    direction: str
    paper: str = ""
    subset: str = "all"


def _kinds(column: str) -> str:
    """The kinds a column of ``PER_IMAGE_CONDITIONS`` averages over, in words."""
    kinds = PER_IMAGE_CONDITIONS[column][1]
    return "every kind" if set(kinds) == set(KINDS) else ", ".join(kinds)


def _levels(column: str) -> str:
    """The levels a column of ``PER_IMAGE_CONDITIONS`` averages over, in words."""
    _, _, lowest, highest = PER_IMAGE_CONDITIONS[column]
    return f"0 < d ≤ {highest:g}" if lowest == 0 else f"{lowest:g} ≤ d ≤ {highest:g}"


# metric -> (what it measures, its per-image values in a per_image table, the metric of a seed)
CLAIM_METRICS: dict[str, tuple[str, Callable[[pd.DataFrame], pd.DataFrame], Callable]] = {
    "top1": ("clean top-1", lambda t: t[["clean_correct"]], intervals.mean),
    "ece": ("clean ECE, 15 bins", lambda t: t[["clean_top_prob", "clean_correct"]],
            intervals.calibration_error),
    "nll": ("clean cross-entropy", lambda t: t[["clean_nll"]], intervals.mean),
    "accuracy_degraded": (f"top-1, {_kinds('degraded_correct')}, {_levels('degraded_correct')}",
                          lambda t: t[["degraded_correct"]], intervals.mean),
    "confidence_low": (f"true-class confidence, {_kinds(LOW_DISTORTION)}, "
                       f"{_levels(LOW_DISTORTION)}", lambda t: t[[LOW_DISTORTION]],
                       intervals.mean),
    "confidence_drop": (f"true-class confidence, {_kinds(LOW_DISTORTION)}: mean at "
                        f"{_levels(LOW_DISTORTION)} minus mean at {_levels(HIGH_DISTORTION)}",
                        lambda t: (t[LOW_DISTORTION] - t[HIGH_DISTORTION]).to_frame(),
                        intervals.mean),
}

_CONFIDENT = "Fig. 3 (part 1): IM more confident than the baseline at low distortion"
# The paper's Fig. 3 (5 apple images, mosaic), read off its curves.
_FIG3_LOW = "Fig. 3, 5 apple images, read off: IM ≈ 0.47, baseline ≈ 0.37 for d < 0.25"
_FIG3_DROP = "Fig. 3, read off: IM ≈ 0.47 → ≈ 0.02, baseline ≈ 0.37 → ≈ 0.17 (IM falls more)"
_GRACEFUL = ("Fig. 3 (part 2): IM degrades more gracefully: its confidence falls less than the "
             "baseline's from low to high distortion")
CLAIMS = (
    Claim("IM's top-1 above the baseline's", "im", "baseline", "top1", "above"),
    Claim("IM's top-1 above LS's", "im", "ls", "top1", "above"),
    Claim("IM's ECE below the baseline's", "im", "baseline", "ece", "below"),
    Claim("LS calibrates best (1 of 2): LS's ECE below the baseline's", "ls", "baseline", "ece",
          "below"),
    Claim("LS calibrates best (2 of 2): LS's ECE below IM's", "ls", "im", "ece", "below"),
    Claim("IM's CE below the baseline's", "im", "baseline", "nll", "below"),
    Claim("IM's CE below LS's", "im", "ls", "nll", "below"),
    Claim("IM more robust: accuracy under degradation above the baseline's", "im", "baseline",
          "accuracy_degraded", "above", "abstract (no numbers)"),
    *(Claim(_CONFIDENT, "im", "baseline", "confidence_low", "above", _FIG3_LOW, subset)
      for subset in ("all", "class")),
    *(Claim(_GRACEFUL, "im", "baseline", "confidence_drop", "below", _FIG3_DROP, subset)
      for subset in ("all", "class")),
    Claim("IM's top-1 above the level control's (NMI adds over d)", "im", "level", "top1",
          "above", "not tested"),
    Claim("IM's ECE below the level control's", "im", "level", "ece", "below", "not tested"),
)
# The columns of verdicts.csv: differences and intervals in the metric's units (fractions for
# accuracies and confidences), as notebook 06 writes them.
VERDICT_COLUMNS = ("claim", "protocol", "metric", "subset", "variant", "other", "variant_value",
                   "other_value", "difference", "low", "high", "verdict", "seeds")


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


def compare(per_image: pd.DataFrame, claim: Claim, eval_class: int, resamples: int = 1000
            ) -> tuple[str, intervals.Interval | None]:
    """The verdict of one claim on one protocol's per-image table (``EvalResults.per_image``)
    and the interval behind it (:func:`imlib.intervals.difference_interval`; None when the
    claim is not testable: a variant not trained, no image of the evaluation class).

    The verdict: "reproduced" when the 95 % interval of ``variant - other`` lies on the
    claimed side of 0, "contradicted" when it lies on the other side, "inconclusive" when it
    holds 0, "too few seeds (n)" with fewer than ``MIN_SEEDS`` seeds of either variant.
    """
    if claim.subset == "class":
        per_image = per_image[per_image["label"] == eval_class]
    present = set(per_image["variant"].unique())
    if claim.variant not in present or claim.other not in present:
        return "not testable on this data", None
    _, values, metric = CLAIM_METRICS[claim.metric]
    a, images = _seed_rows(per_image, claim.variant, values)
    b, other_images = _seed_rows(per_image, claim.other, values)
    if bool(a.isnan().any() | b.isnan().any()):  # a condition group the sweep did not reach
        return "not testable on this data", None
    if not np.array_equal(images, other_images):
        raise ValueError(f"{claim.variant!r} and {claim.other!r} were evaluated on different "
                         "test images; evaluate every run on the same test split")
    squeeze = a.shape[-1] == 1  # a mean of one value per image; the ECE reads two
    interval = intervals.difference_interval(a[..., 0] if squeeze else a,
                                             b[..., 0] if squeeze else b, metric,
                                             resamples=resamples)
    return _verdict(interval, claim.direction), interval


# Our metric -> the column of the paper's Table 1 that reports it (its "ECE" is the script's).
_TABLE1_COLUMN = {"top1": "top1", "ece": "ece_paper_script", "nll": "nll"}


def _paper_numbers(claim: Claim) -> str:
    """The paper's two numbers for a Table 1 claim, as printed, else ``claim.paper``."""
    column = _TABLE1_COLUMN.get(claim.metric)
    if column is None or claim.variant not in PAPER_TABLE1 or claim.other not in PAPER_TABLE1:
        return claim.paper
    a, b = PAPER_TABLE1[claim.variant][column], PAPER_TABLE1[claim.other][column]
    return f"{a:g} vs {b:g}" + (" %" if column == "top1" else "")


def _measured(claim: Claim, eval_class: int) -> str:
    subset = "all test images" if claim.subset == "all" else f"test images of class {eval_class}"
    return f"{CLAIM_METRICS[claim.metric][0]}; {subset}"


def verdict_table(per_image: Mapping[str, pd.DataFrame], eval_class: int,
                  resamples: int = 1000) -> pd.DataFrame:
    """Every claim of ``CLAIMS`` on every protocol, computed: one row per (claim, protocol).

    ``per_image``: protocol -> its per-image table (``EvalResults.per_image``);
    ``eval_class``: the class of the "class" claims. Columns: ``claim``, ``protocol``,
    ``measured`` (in words), ``paper`` (its numbers or figure), then ``VERDICT_COLUMNS``:
    ``variant_value`` and ``other_value`` (means over seeds), ``difference`` and its 95 %
    interval ``low``, ``high`` (:func:`compare`; NaN where not testable, or with one seed),
    ``verdict`` and ``seeds`` (the fewer of the two variants'). Accuracies and confidences
    as fractions.
    """
    rows = []
    for claim in CLAIMS:
        for protocol, table in per_image.items():
            verdict, interval = compare(table, claim, eval_class, resamples)
            numbers = (dict.fromkeys(("variant_value", "other_value", "difference", "low",
                                      "high"), math.nan) | {"seeds": 0} if interval is None
                       else {"variant_value": interval.variant_mean,
                             "other_value": interval.other_mean,
                             "difference": interval.difference, "low": interval.low,
                             "high": interval.high, "seeds": interval.seeds})
            rows.append({"claim": claim.text, "protocol": protocol,
                         "measured": _measured(claim, eval_class),
                         "paper": _paper_numbers(claim), "metric": claim.metric,
                         "subset": claim.subset, "variant": claim.variant,
                         "other": claim.other, **numbers, "verdict": verdict})
    return pd.DataFrame(rows)


def _shown(row: pd.Series) -> str:
    """A row's difference, interval and values: accuracies and confidences in % (differences
    in points), ECE and CE as plain numbers."""
    if math.isnan(row.difference):
        return "n/a"
    percent = row.metric not in ("ece", "nll")
    scale, digits, unit = (100, 1, " pts") if percent else (1, 3, "")
    interval = ("" if math.isnan(row.low)
                else f" [{scale * row.low:+.{digits}f}, {scale * row.high:+.{digits}f}]")
    values = (f"{scale * row.variant_value:.{digits}f} vs {scale * row.other_value:.{digits}f}"
              + (" %" if percent else ""))
    return f"{scale * row.difference:+.{digits}f}{interval}{unit} ({values})"


def verdict_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`verdict_table` as notebook 06 shows it: one row per claim (in ``CLAIMS`` order),
    what is measured, the paper's numbers, and per protocol the difference with its 95 %
    interval and the two values, and the verdict."""
    names = {"ours": "difference [95 % interval] (values)", "verdict": "verdict"}
    shown = table.assign(ours=table.apply(_shown, axis=1))
    key = ["claim", "measured"]
    wide = shown.pivot(index=key, columns="protocol", values=list(names))
    wide.columns = [f"{p} protocol: {names[c]}" for c, p in wide.columns]
    columns = [f"{p} protocol: {name}" for p in dict.fromkeys(table["protocol"])
               for name in names.values()]
    order = shown.drop_duplicates(key)[[*key, "paper"]]
    return (order.merge(wide[columns].reset_index(), on=key).set_index("claim")
            .rename(columns={"measured": "measured as", "paper": "in the paper"}))


def _claims_with(rows: pd.DataFrame, verdict: str) -> str:
    """The claims of ``rows`` with ``verdict`` in Markdown italics, those measured on the
    evaluation class marked so."""
    chosen = rows[rows["verdict"] == verdict]
    return "; ".join(f"*{claim}*" + (" (evaluation class)" if subset == "class" else "")
                     for claim, subset in zip(chosen["claim"], chosen["subset"], strict=True))


def verdict_conclusion(table: pd.DataFrame) -> str:
    """A short conclusion of :func:`verdict_table` (Markdown), every word from its verdicts:
    per protocol how many claims are reproduced, contradicted and inconclusive and which ones
    are reproduced or contradicted, or the seeds it takes to judge when there are too few."""
    parts = []
    for protocol, rows in table.groupby("protocol", sort=False):
        too_few = rows["verdict"].str.startswith("too few seeds")
        if too_few.any():
            parts.append(f"Under the `{protocol}` protocol no claim is judged: "
                         f"{int(rows.loc[too_few, 'seeds'].min())} seed(s) per variant, "
                         f"{MIN_SEEDS} are needed (`-p seeds \"[0, 1, 2]\"`).")
            continue
        counts = rows["verdict"].value_counts()
        summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
        text = f"Under the `{protocol}` protocol, of {len(rows)} claims: {summary}."
        for verdict in ("reproduced", "contradicted"):
            if verdict in counts:
                text += f" {verdict.capitalize()}: {_claims_with(rows, verdict)}."
        if counts.get("inconclusive", 0) == len(rows) - counts.get(VERDICTS[-1], 0):
            text += " Every interval holds 0: these runs cannot tell the variants apart."
        parts.append(text)
    return "**Conclusion.** " + " ".join(parts)


def write_verdicts(table: pd.DataFrame, folder: str | Path, eval_class: int) -> Path:
    """Write :func:`verdict_table`'s ``VERDICT_COLUMNS`` as ``verdicts.csv`` into ``folder``
    (``runs/<profile>/eval``) through :func:`imlib.results.write_tables`, numbers rounded to 6
    decimals; returns the file's path."""
    write_tables({"verdicts": table[list(VERDICT_COLUMNS)].round(6)}, folder,
                 settings={"eval_class": eval_class, "min_seeds": MIN_SEEDS,
                           "interval": "95 %, seeds and test images (imlib.intervals)"})
    return Path(folder) / "verdicts.csv"


