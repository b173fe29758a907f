"""Measurements behind the reproduction report (notebook 06): where the paper's text, its public
code and this implementation differ, and what each difference does on a profile's runs.

Each function reads saved results (histories, evaluation tables) or runs a small, fast
computation that needs no trained model; the notebook only assembles them. The last section
measures what the runs teach (notebooks 03, 04 and 06): pixel information (NMI) against the
class information the degraded images still carry, and the prose read from those numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from imlib._checks import check_fraction, check_int
from imlib import intervals
from imlib.degradations import KINDS, PAPER_EVAL, TRAIN
from imlib.labels import im_eps, true_class_target
from imlib.metrics import ece, ece_paper_script
from imlib.nmi_study import nmi_by_level
from imlib.paper import PAPER_TABLE1
from imlib.results import (PER_IMAGE_CONDITIONS, SWEEP_COLUMNS, check_frame, sort_rows,
                           summarize, write_tables)
from imlib.style import VARIANT_LABELS
from imlib.variants import VARIANT_SPECS

if TYPE_CHECKING:
    from imlib.study import StudyParams

__all__ = ["selection_effect", "spread_effect", "calibration_estimators",
           "degradation_settings_effect", "protocol_comparison", "order_effect",
           "MIN_SEEDS", "VERDICTS", "Claim", "CLAIM_METRICS", "CLAIMS", "VERDICT_COLUMNS",
           "compare", "verdict_table", "verdict_display", "verdict_conclusion",
           "write_verdicts", "class_accuracy", "median_accuracy_class", "eval_class_note",
           "nmi_floor", "nmi_floor_summary", "study_banner", "provenance_note",
           "CLASS_INFORMATION_COLUMNS", "class_information", "nmi_miscount",
           "class_information_summary", "training_draws_summary", "claim_figure_reading"]


def selection_effect(histories: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy of the epoch chosen on the holdout split against the best test accuracy
    over all epochs (choosing the epoch on the test set, as the paper did), per run.

    ``histories``: :func:`imlib.results.load_histories`. Returns per (variant, seed) the
    ``holdout_selected`` and ``test_selected`` test accuracies (in %, as every accuracy the
    notebooks show), the ``last`` epoch's, and ``optimism`` = test_selected - holdout_selected
    (percentage points, >= 0 by construction: the bias that selecting on the test set adds).
    """
    rows = []
    for (variant, seed), run in histories.groupby(["variant", "seed"], sort=False):
        has_holdout = run["holdout_acc"].notna().any()
        chosen = run.loc[run["holdout_acc"].idxmax()] if has_holdout else None
        rows.append({"variant": variant, "seed": seed,
                     "holdout_selected": 100 * chosen["test_acc"] if has_holdout
                     else float("nan"),
                     "test_selected": 100 * run["test_acc"].max(),
                     "last": 100 * run.sort_values("epoch")["test_acc"].iloc[-1]})
    table = pd.DataFrame(rows)
    table["optimism"] = table["test_selected"] - table["holdout_selected"]
    return table


def spread_effect(histories: pd.DataFrame, num_classes: Sequence[int]) -> pd.DataFrame:
    """What the public code's IM spread (``(1 - eps) onehot + eps / K``) changes against the
    paper's formula (true class ``1 - eps``, others ``eps / (K - 1)``), at the mean eps the
    runs of the variants that follow ``im_spread`` (``im``, ``level``...) trained with, for
    each K of ``num_classes``.

    The true class's target rises by ``eps / K``: the shift shrinks as K grows, so a
    difference visible on 10 classes is ten times smaller on CIFAR-100.
    """
    spread_by_run = [v for v, spec in VARIANT_SPECS.items() if spec.spread is None]
    im_like = histories[histories["variant"].isin(spread_by_run)]
    mean_eps = im_like.groupby("variant", sort=False)["mean_eps"].mean()
    rows = [{"variant": variant, "K": k, "mean_eps": eps,
             "true_class_paper": true_class_target(eps, k, "others"),
             "true_class_code": true_class_target(eps, k, "all"), "shift": eps / k}
            for variant, eps in mean_eps.items() for k in num_classes]
    return pd.DataFrame(rows)


def calibration_estimators(n: int = 20_000, num_classes: int = 10, seed: int = 0
                           ) -> pd.DataFrame:
    """Standard ECE (15 bins, whole set) and the paper script's ECE on synthetic predictions
    whose calibration is known: ``calibrated`` (labels drawn from the predicted
    probabilities: the true ECE is 0) and ``overconfident`` (the same labels, probabilities
    sharpened by a temperature of 0.5)."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, num_classes, generator=g)
    probs = torch.softmax(logits, dim=1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    sharp = torch.softmax(logits / 0.5, dim=1)
    rows = [{"predictions": name, "ece": float(ece(p, labels)),
             "ece_paper_script": float(ece_paper_script(p, labels))}
            for name, p in (("calibrated", probs), ("overconfident", sharp))]
    return pd.DataFrame(rows)


def degradation_settings_effect(x: torch.Tensor, bins: int, seed: int = 0) -> pd.DataFrame:
    """Mean NMI (with the run's ``bins``) against level under the training constants (blur
    sigma 50 d, kernel cap 51, dropout patch 8) and the paper's evaluation constants (sigma
    10 d, cap 11, patch 4), on images ``x``: how much the same level d degrades in training and
    in the evaluation."""
    frames = [nmi_by_level(x, kinds=("blur", "dropout"), bins=bins, seed=seed, config=config)
              .assign(settings=name)
              for name, config in (("train", TRAIN), ("paper_eval", PAPER_EVAL))]
    table = pd.concat(frames, ignore_index=True)
    return table.pivot_table(index=["kind", "level"], columns="settings", values="mean")


def protocol_comparison(clean: dict[str, pd.DataFrame], metric: str = "top1") -> pd.DataFrame:
    """``metric`` (mean, and std over seeds when there are several) per variant, one column
    group per protocol; accuracies (``top1``, ``top5``) in %.

    ``clean``: protocol name -> its ``clean_metrics`` table (:func:`imlib.results.load_results`).
    """
    scale = 100 if metric in ("top1", "top5") else 1
    tables = {protocol: summarize(table.assign(**{metric: scale * table[metric]}), ("variant",),
                                  (metric,)).set_index("variant")
              for protocol, table in clean.items()}
    return pd.concat(tables, axis=1)


def order_effect(sweeps: pd.DataFrame) -> pd.DataFrame:
    """Mean true-class confidence (%) on the whole test split (over levels and seeds) per kind
    and variant, degrading before normalising (training's order) and after (the paper's
    evaluation script), and their difference (points)."""
    rows = sweeps[sweeps["subset"] == "all"]
    table = 100 * rows.pivot_table(index=["kind", "variant"], columns="order",
                                   values="confidence", aggfunc="mean")
    table["difference"] = table["normalize_first"] - table["degrade_first"]
    return table


# --- the verdicts of notebook 06 --------------------------------------------------------------

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


def class_accuracy(per_image: pd.DataFrame) -> pd.Series:
    """Mean clean top-1 per class (index: the label) over every run in ``per_image``."""
    return per_image.groupby("label")["clean_correct"].mean()


def median_accuracy_class(per_image: pd.DataFrame) -> int:
    """The class of median clean top-1 over every run in ``per_image`` (the more accurate of the
    two middle classes for an even number of classes; ties in class order): the rule that
    picks the smoke profile's evaluation class, neither the easiest nor the hardest."""
    accuracy = class_accuracy(per_image).sort_values(kind="stable")
    return int(accuracy.index[len(accuracy) // 2])


def eval_class_note(per_image: pd.DataFrame, eval_class: int, class_names: Sequence[str]
                    ) -> str:
    """Markdown: the evaluation class's clean top-1 and rank among the classes over every run
    in ``per_image`` (one table, or several stacked with a ``protocol`` column), the class of
    median accuracy, and whether they are the same."""
    accuracy = class_accuracy(per_image)
    median = median_accuracy_class(per_image)
    rank = int((accuracy > accuracy[eval_class]).sum()) + 1
    runs = len(per_image.drop_duplicates([c for c in ("protocol", "variant", "seed")
                                          if c in per_image]))
    text = (f"The evaluation class is {eval_class} (`{class_names[eval_class]}`): "
            f"{100 * accuracy[eval_class]:.1f} % clean top-1 over the {runs} runs, rank "
            f"{rank} of {len(accuracy)} classes (1: the most accurate). ")
    if median == eval_class:
        return text + "It is the class of median accuracy."
    return text + (f"The class of median accuracy is {median} (`{class_names[median]}`, "
                   f"{100 * accuracy[median]:.1f} %).")


def nmi_floor(eps: pd.DataFrame, by_level: pd.DataFrame, max_eps: float = 0.9) -> pd.DataFrame:
    """Where each kind's NMI ends and how IM's eps falls, per kind, from notebook 02's tables.

    ``eps``: IM's training draws (:func:`imlib.nmi_study.eps_distribution`); ``by_level``: NMI
    per kind and level (:func:`imlib.nmi_study.nmi_by_level`, one number of bins). Columns:
    ``nmi_at_max_level`` (mean NMI over the images at the highest level of ``by_level``, d = 1
    in the notebooks) and ``max_level``; over the draws, ``lowest_nmi``, ``mean_eps``, the 10 %
    and 90 % quantiles of eps (``eps_q10``, ``eps_q90``: how graded the kind's eps is),
    ``unchanged`` (share of draws with eps = 0, the image not changed at all), ``at_clamp``
    (share with ``1 - NMI >= max_eps``, eps cut to ``max_eps``) and ``draws``.
    """
    check_frame(eps, "eps", ("kind", "nmi", "eps"))
    check_frame(by_level, "by_level", ("kind", "level", "mean"))
    check_fraction(max_eps, "max_eps")
    if "bins" in by_level and by_level["bins"].nunique() > 1:
        raise ValueError(f"by_level must hold one number of bins, got "
                         f"{sorted(set(by_level['bins']))}; select one, e.g. "
                         "by_level[by_level['bins'] == 64]")
    top = by_level[by_level["level"] == by_level.groupby("kind")["level"].transform("max")]
    draws = eps.assign(unchanged=eps["eps"] <= 1e-6, at_clamp=1 - eps["nmi"] >= max_eps)
    table = draws.groupby("kind", sort=False).agg(
        lowest_nmi=("nmi", "min"), mean_eps=("eps", "mean"),
        eps_q10=("eps", lambda e: e.quantile(0.1)), eps_q90=("eps", lambda e: e.quantile(0.9)),
        unchanged=("unchanged", "mean"), at_clamp=("at_clamp", "mean"), draws=("eps", "size"))
    end = top.groupby("kind")[["mean", "level"]].mean()
    table.insert(0, "max_level", end["level"].reindex(table.index))
    table.insert(0, "nmi_at_max_level", end["mean"].reindex(table.index))
    return sort_rows(table.reset_index(), ["kind"]).set_index("kind")


NMI_ZERO = 0.05  # NMI at or below this reads as "no information left" in the prose


def nmi_floor_summary(floor: pd.DataFrame, max_eps: float = 0.9) -> str:
    """:func:`nmi_floor` in words (Markdown), every number from the table: which kinds keep
    NMI above ``NMI_ZERO`` at their strongest level, and per kind how graded eps is and how
    often it is unchanged or at the ``max_eps`` clamp ("most" only above half the draws)."""
    check_frame(floor.reset_index(), "floor", ("kind", "nmi_at_max_level", "max_level",
                                               "lowest_nmi", "eps_q10", "eps_q90", "unchanged",
                                               "at_clamp"))
    kept = [k for k, row in floor.iterrows() if row.nmi_at_max_level > NMI_ZERO]
    gone = [k for k in floor.index if k not in kept]

    def names(kinds: list[str]) -> str:
        return ", ".join(f"`{k}`" for k in kinds)

    lead = []
    if kept:
        lead.append(f"at the strongest level NMI stays above {NMI_ZERO} for {names(kept)}")
    if gone:
        lead.append(f"falls to {NMI_ZERO} or below for {names(gone)}")
    parts = []
    for kind, row in floor.iterrows():
        clamp = (f"most draws ({100 * row.at_clamp:.0f} %) at the {max_eps:g} clamp"
                 if row.at_clamp > 0.5 else
                 f"{100 * row.at_clamp:.0f} % of draws at the {max_eps:g} clamp" if row.at_clamp > 0
                 else f"never at the {max_eps:g} clamp (NMI ≥ {row.lowest_nmi:.2f} in every draw)")
        unchanged = (f", {100 * row.unchanged:.0f} % unchanged (eps 0)" if row.unchanged > 0
                     else "")
        parts.append(f"`{kind}`: NMI {row.nmi_at_max_level:.2f} at d = {row.max_level:g}, eps "
                     f"{row.eps_q10:.2f}–{row.eps_q90:.2f} in 80 % of draws{unchanged}, {clamp}")
    lead_text = "; ".join(lead)
    return (lead_text[:1].upper() + lead_text[1:] + ". " if lead else "") + "; ".join(parts) + "."


def study_banner(params: StudyParams, n_test: int) -> str:
    """The report's opening line, from the run's actual settings (Markdown); on data other
    than CIFAR-100 it says plainly that the paper's numbers cannot be confirmed by it."""
    training = params.training
    data = (f"CIFAR-100 ({n_test:,} test images)" if training.dataset == "cifar100"
            else f"the synthetic data set ({params.num_classes} classes, {n_test:,} test images)")
    seeds = len(params.seeds)
    text = (f"**This run:** profile `{params.profile}`, {data}, model `{training.model}`, "
            f"{training.epochs} epochs, {seeds} seed{'s' if seeds > 1 else ''} "
            f"({', '.join(map(str, params.seeds))}), protocols {', '.join(params.protocols)}, "
            f"variants {', '.join(params.variants)}.")
    if training.dataset != "cifar100" or training.model != "resnet18":
        text += ("\n\n**The paper's CIFAR-100 numbers cannot be confirmed by this run.** It "
                 "is not the paper's data set or model; each verdict below says only whether "
                 "a claim's *direction* holds on this data.")
    return text


def _code(commit: str | None, diff: str | None) -> str:
    """A version of the code in prose: its commit, and whether it had uncommitted changes."""
    shown = f"commit `{str(commit)[:10]}`"
    return f"{shown} plus uncommitted changes (diff `{diff[:10]}`)" if diff else shown


def provenance_note(origins: pd.DataFrame, current: Mapping[str, Any]) -> str:
    """One Markdown line on where the runs came from (``results.run_provenance``) against the
    code now (``current``: :func:`imlib.io.provenance`): all from the current code, or which
    ones were trained by other code, grouped by code. Code with uncommitted changes (an edited
    tree, which no commit holds) is said so, never called "the current code" of a commit."""
    commit = current.get("git_commit")
    if commit is None:
        return "The current code is not a git checkout: runs cannot be matched to a commit."
    here = (commit, current.get("git_diff_sha256"))
    others: dict[tuple[Any, Any], list[str]] = {}
    for r in origins.itertuples():
        code = (r.git_commit, r.git_diff_sha256 if isinstance(r.git_diff_sha256, str) else None)
        if code != here:
            others.setdefault(code, []).append(r.run)
    if not others and here[1] is None:
        return f"All {len(origins)} runs were trained by the current code ({_code(*here)})."
    if not others:
        return (f"**All {len(origins)} runs were trained from an edited tree:** {_code(*here)}, "
                "as the current code. No commit holds that code: commit the changes to keep "
                "the runs reproducible.")
    n_others = sum(map(len, others.values()))
    listed = "; ".join(f"{'all of them' if len(runs) == len(origins) else ', '.join(runs)} by "
                       f"{_code(*code)}" for code, runs in others.items())
    return (f"**{n_others} of {len(origins)} runs were trained by other code than the current "
            f"one** ({_code(*here)}): {listed}. Their numbers are those of that code; "
            "`--fresh --only 03_training` retrains them.")


# --- pixel information against class information (notebooks 03, 04, 06) ------------------------
#
# NMI measures how much of an image's pixels survive a degradation; IM uses it as if it measured
# how much of its *class* survives. These functions measure the second from the sweeps and say,
# from the numbers, where the two part.

CLASS_INFORMATION_COLUMNS = ("kind", "level", "nmi", "best_accuracy", "best_variant",
                             "clean_accuracy", "chance", "class_information")
MISCOUNT_MARGIN = 0.2  # NMI under- or over-counts class information by more than this
ON_TARGET = 0.05  # a confidence within 5 points of IM's target sits "on" its line
CLEAN_NMI = 0.9  # a training draw with NMI above this looks nearly clean


def _conditions(sweeps: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, kind, level), the mean over seeds of accuracy, confidence and NMI on the
    whole test split in training's evaluation order (``degrade_first``)."""
    check_frame(sweeps, "sweeps", SWEEP_COLUMNS)
    rows = sweeps[(sweeps["subset"] == "all") & (sweeps["order"] == "degrade_first")]
    if rows.empty:
        raise ValueError("sweeps has no rows of subset 'all' in order 'degrade_first'; pass the "
                         "evaluation's sweeps.csv (imlib.results.load_results(...).sweeps)")
    means = rows.groupby(["variant", "kind", "level"], as_index=False)[
        ["accuracy", "confidence", "nmi"]].mean()
    return sort_rows(means, ["variant", "kind", "level"])


def class_information(sweeps: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """The class information the degraded test images still carry, per (kind, level), beside
    their mean NMI(clean, degraded).

    Measured on the sweeps (whole test split, training's order ``degrade_first``) as the best
    accuracy any variant reaches on the condition (each variant's mean over its seeds: the
    luckiest single seed would add its own test-set noise), scaled from chance (1/K) = 0 to
    the clean reference = 1 and clipped to [0, 1]. The clean reference is the best variant's
    accuracy on clean images (the level-0 rows, where every kind is the identity), one number
    for every condition: 1 means "as recognisable as clean images are to the best model", and
    a degraded condition where some variant beats that is clipped to 1.

    Columns ``CLASS_INFORMATION_COLUMNS``: ``nmi`` (mean over images), ``best_accuracy`` and
    ``best_variant``, ``clean_accuracy`` (the reference), ``chance``, ``class_information``.
    """
    check_int(num_classes, "num_classes", 2)
    means = _conditions(sweeps)
    clean = means[means["level"] == 0]
    if clean.empty:
        raise ValueError("sweeps has no level-0 rows: class information is scaled by the clean "
                         "accuracy, so the sweep must include d = 0")
    reference = float(clean.groupby("variant")["accuracy"].mean().max())
    chance = 1 / num_classes
    if reference <= chance:
        raise ValueError(f"the best clean accuracy {reference:.3f} is not above chance "
                         f"{chance:.3f}: no model learned the classes, so class information "
                         "cannot be scaled (train longer)")
    best = means.loc[means.groupby(["kind", "level"])["accuracy"].idxmax()]
    table = best.rename(columns={"accuracy": "best_accuracy", "variant": "best_variant"})
    table = table.drop(columns=["nmi", "confidence"]).merge(
        means.groupby(["kind", "level"], as_index=False)["nmi"].mean(), on=["kind", "level"])
    table["clean_accuracy"], table["chance"] = reference, chance
    table["class_information"] = ((table["best_accuracy"] - chance)
                                  / (reference - chance)).clip(0, 1)
    return sort_rows(table[list(CLASS_INFORMATION_COLUMNS)], ["kind", "level"])


def nmi_miscount(information: pd.DataFrame, margin: float = MISCOUNT_MARGIN) -> pd.DataFrame:
    """:func:`class_information` plus ``reading``: ``"under-counts"`` where the class
    information exceeds the NMI by more than ``margin`` (images still recognisable at low NMI),
    ``"over-counts"`` where it falls short of it by more than ``margin``, else ``"agrees"``."""
    check_frame(information, "information", CLASS_INFORMATION_COLUMNS)
    check_fraction(margin, "margin")
    gap = information["class_information"] - information["nmi"]
    reading = pd.Series("agrees", index=information.index)
    reading[gap > margin] = "under-counts"
    reading[gap < -margin] = "over-counts"
    return information.assign(reading=reading)


def _span(values: pd.Series, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``low–high`` of ``values`` (one number when they round alike), scaled, with a unit."""
    low, high = (f"{scale * v:.{digits}f}" for v in (values.min(), values.max()))
    return (low if low == high else f"{low}–{high}") + unit


def _level_ranges(chosen: pd.Series, grid: pd.Series) -> str:
    """The levels ``chosen`` as runs of consecutive levels of ``grid``: "0.1–0.4, 0.7"."""
    levels = sorted(set(grid))
    picked = [level in set(chosen) for level in levels]
    runs, start = [], None
    for i, (level, on) in enumerate(zip(levels, picked, strict=True)):
        if on and start is None:
            start = level
        if start is not None and (not on or i == len(levels) - 1):
            end = level if on else levels[i - 1]
            runs.append(f"{start:g}" if end == start else f"{start:g}–{end:g}")
            start = None
    return ", ".join(runs)


def _percent(value: float) -> str:
    return f"{100 * value:.0f} %"


def class_information_summary(information: pd.DataFrame, sweeps: pd.DataFrame, *,
                              max_eps: float, spread: str, num_classes: int,
                              margin: float = MISCOUNT_MARGIN, variant: str = "im") -> str:
    """What :func:`class_information` shows, in words (Markdown), every number from the tables.

    Per kind, at the degraded levels (d > 0): where NMI under-counts class information, where it
    over-counts it (:func:`nmi_miscount`, beyond ``margin``) and where they agree, with the
    ranges of NMI, class information and best accuracy there. Then what that does to IM:
    its target true-class mass at those conditions (at their mean NMI, with ``max_eps`` and
    ``spread``) against the best accuracy, and ``variant``'s own mean true-class confidence
    against its accuracy (from ``sweeps``), when ``variant`` was evaluated.
    """
    check_fraction(max_eps, "max_eps")
    read = nmi_miscount(information, margin)
    degraded = read[read["level"] > 0]
    chance = _percent(float(read["chance"].iloc[0]))
    counts = degraded["reading"].value_counts()
    lines = [f"**Over the {len(degraded)} degraded conditions (kind × level, d > 0), NMI "
             f"under-counts class information at {counts.get('under-counts', 0)} and "
             f"over-counts it at {counts.get('over-counts', 0)}.** "
             f"Class information: the best accuracy any variant reaches, scaled from chance "
             f"({chance}) = 0 to the best clean accuracy "
             f"({_percent(float(read['clean_accuracy'].iloc[0]))}) = 1. NMI *under-counts* it "
             f"where class information exceeds NMI by more than {margin:g}, *over-counts* it "
             f"where it falls short by more than {margin:g}:", ""]
    verbs = {"under-counts": "**under-counts**", "over-counts": "**over-counts**",
             "agrees": f"agrees within {margin:g}"}
    for kind, rows in degraded.groupby("kind", sort=False):
        parts = [f"{verb} at d = {_level_ranges(part['level'], rows['level'])} "
                 f"(NMI {_span(part['nmi'])}, class information "
                 f"{_span(part['class_information'])}, best accuracy "
                 f"{_span(part['best_accuracy'], 100, 0, ' %')})"
                 for reading, verb in verbs.items()
                 if not (part := rows[rows["reading"] == reading]).empty]
        lines.append(f"- `{kind}`: NMI " + "; ".join(parts) + ".")
    means = _conditions(sweeps)
    own = means[means["variant"] == variant].set_index(["kind", "level"])
    if own.empty:
        return "\n".join(lines)
    lines += ["", f"**What this does to {variant.upper()}.** Its target gives the true class "
              f"1 − ε, ε = clamp(1 − NMI, 0, {max_eps:g}) ({spread!r} spread), here at each "
              "condition's mean NMI."]
    for reading in ("under-counts", "over-counts"):
        part = degraded[degraded["reading"] == reading]
        if part.empty:
            lines.append(f"NMI {reading.replace('-', ' ')} class information at no degraded "
                         "condition.")
            continue
        target = true_class_target(im_eps(part["nmi"], max_eps), num_classes, spread).mean()
        keys = list(zip(part["kind"], part["level"], strict=True))
        mine = own.reindex(keys)
        lines.append(
            f"Where NMI {reading} it ({len(part)} conditions), {variant.upper()} is taught to "
            f"be about {_percent(target)} sure (its mean target there) of images the best model "
            f"classifies {_percent(part['best_accuracy'].mean())} right; {variant.upper()} "
            f"itself gives their true class {_percent(mine['confidence'].mean())}, at an "
            f"accuracy of {_percent(mine['accuracy'].mean())}.")
    return "\n".join(lines)


def training_draws_summary(draws: pd.DataFrame, max_eps: float,
                           clean_nmi: float = CLEAN_NMI) -> str:
    """What a sample of training draws (:func:`imlib.nmi_study.training_draws`) shows, in
    words (Markdown): how the levels and kinds fall, how few images look nearly clean (NMI
    above ``clean_nmi``) or come out unchanged, and the eps and true-class target they train
    with (how many at the ``max_eps`` clamp)."""
    check_frame(draws, "draws", ("kind", "level", "nmi", "eps", "target"))
    check_fraction(max_eps, "max_eps")
    n = len(draws)
    shares = draws["kind"].value_counts(normalize=True)
    kinds = ", ".join(f"`{kind}` {_percent(share)}" for kind, share in shares.items())
    return (f"**Every training image goes through a degradation.** Of {n:,} training draws, "
            f"{int((draws['level'] == 0).sum())} have d = 0: d spans "
            f"{draws['level'].min():.2f}–{draws['level'].max():.2f} (mean "
            f"{draws['level'].mean():.2f}), kinds {kinds}. Only "
            f"{_percent((draws['nmi'] > clean_nmi).mean())} keep NMI > {clean_nmi:g} (look "
            f"nearly clean), {_percent((draws['nmi'] >= 1 - 1e-6).mean())} come out unchanged "
            f"(NMI = 1). eps: mean {draws['eps'].mean():.2f}, median "
            f"{draws['eps'].median():.2f}, {_percent((draws['eps'] >= max_eps - 1e-6).mean())} "
            f"at the {max_eps:g} clamp; the target's mass on the true class averages "
            f"{_percent(draws['target'].mean())}.")


def claim_figure_reading(sweeps: pd.DataFrame, draws: pd.DataFrame, *, num_classes: int,
                         max_eps: float, spread: str, clean_nmi: float = CLEAN_NMI,
                         on_target: float = ON_TARGET) -> str:
    """What the claim figure (:func:`imlib.plots.confidence_vs_nmi`) shows, in words
    (Markdown), every number from its tables.

    Where each variant's points sit against IM's target line over the degraded conditions
    (within ``on_target`` of it counts as on it); each variant's clean-image confidence against
    its clean accuracy; why (from ``draws``, IM's training draws,
    :func:`imlib.nmi_study.training_draws`: the share that looks nearly clean, NMI above
    ``clean_nmi``, and the mean target mass); and what follows for the paper's story.
    """
    check_int(num_classes, "num_classes", 2)
    check_fraction(max_eps, "max_eps")
    check_frame(draws, "draws", ("nmi", "target"))
    means = _conditions(sweeps)
    means["target"] = true_class_target(im_eps(means["nmi"], max_eps), num_classes,
                                         spread)
    means["gap"] = means["confidence"] - means["target"]
    degraded, clean = means[means["level"] > 0], means[means["level"] == 0]
    names = {v: VARIANT_LABELS.get(v, v) for v in means["variant"].unique()}
    lines = [f"**Against IM's target line** (the true-class mass 1 − ε(NMI) IM trains towards; "
             f"within {100 * on_target:.0f} points counts as on it), over the "
             f"{degraded.groupby(['kind', 'level']).ngroups} degraded conditions:", ""]
    above = {}
    for variant, rows in degraded.groupby("variant", sort=False):
        above[variant] = int((rows["gap"] > on_target).sum())
        lines.append(f"- {names[variant]}: above the line at {above[variant]}, on it at "
                     f"{int((rows['gap'].abs() <= on_target).sum())}, below at "
                     f"{int((rows['gap'] < -on_target).sum())} (confidence − target from "
                     f"{100 * rows['gap'].min():+.0f} to {100 * rows['gap'].max():+.0f} points, "
                     f"mean {100 * rows['gap'].mean():+.0f}).")
    clean = clean.groupby("variant", sort=False)[["accuracy", "confidence"]].mean()
    under = clean[clean["confidence"] < clean["accuracy"]]
    who = ("Every variant" if len(under) == len(clean) else
           "No variant" if under.empty else ", ".join(names[v] for v in under.index))
    each = ", ".join(f"{names[v]} {_percent(r.confidence)} at {_percent(r.accuracy)}"
                     for v, r in clean.iterrows())
    verb = "are" if 1 < len(under) < len(clean) else "is"
    lines += ["", f"**Clean images** (d = 0, NMI = 1, IM's target 100 %). {who} {verb} "
              f"under-confident there, mean true-class confidence below accuracy ({each})."]
    near_clean = draws[draws["nmi"] > clean_nmi]
    lines += ["", f"**Why.** Every training image goes through a degradation at a level "
              f"d ~ U(0, 1) before any model sees it: of {len(draws):,} of IM's training draws "
              f"only {_percent(len(near_clean) / len(draws))} keep NMI > {clean_nmi:g} and "
              f"{_percent((draws['nmi'] >= 1 - 1e-6).mean())} come out unchanged"
              + (f" (IM's target on those above {clean_nmi:g} averages "
                 f"{_percent(near_clean['target'].mean())})" if len(near_clean) else "")
              + f"; over all draws IM's target puts {_percent(draws['target'].mean())} on the "
              "true class. The likely reason: a clean test image resembles only the rare top "
              "end of what each model learned from, so its confidence there follows what it "
              "learned for degraded images, and IM's targets ask for less still."]
    if {"baseline", "im"} <= set(clean.index):
        base, im = clean.loc["baseline"], clean.loc["im"]
        n = degraded.groupby(["kind", "level"]).ngroups
        story = (f"**For the paper's story.** The paper argues that hard labels force \"full "
                 f"confidence regardless of degradation\" and that IM's targets bring confidence "
                 f"down with the NMI. "
                 f"Here the baseline sits above IM's line at {above.get('baseline', 0)} of "
                 f"{n} degraded conditions and IM at {above.get('im', 0)}. ")
        if base.confidence < base.accuracy and im.confidence < base.confidence:
            story += (f"On clean images the baseline is already under-confident "
                      f"({_percent(base.confidence)} at {_percent(base.accuracy)} accuracy) and "
                      f"IM less confident still ({_percent(im.confidence)} at "
                      f"{_percent(im.accuracy)}): there IM's targets move confidence further "
                      "from accuracy, not closer.")
        elif base.confidence > base.accuracy:
            story += (f"On clean images the baseline is over-confident "
                      f"({_percent(base.confidence)} at {_percent(base.accuracy)} accuracy), "
                      f"as the paper's argument assumes; IM gives {_percent(im.confidence)} at "
                      f"{_percent(im.accuracy)}.")
        else:
            story += (f"On clean images IM gives {_percent(im.confidence)} at "
                      f"{_percent(im.accuracy)} accuracy, the baseline "
                      f"{_percent(base.confidence)} at {_percent(base.accuracy)}.")
        lines += ["", story]
    return "\n".join(lines)
