"""What the runs teach about pixel information (notebooks 02, 03, 04 and 06): the NMI floor of
each kind, pixel information (NMI) against the class information the degraded images still
carry, and the prose read from those numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from imlib._checks import check_fraction, check_int
from imlib.labels import im_eps, true_class_target
from imlib.results import SWEEP_COLUMNS, check_frame, load_results, sort_rows
from imlib.study import load_params
from imlib.style import VARIANT_LABELS

__all__ = ["nmi_floor", "NMI_ZERO", "nmi_floor_summary", "CLASS_INFORMATION_COLUMNS",
           "MISCOUNT_MARGIN", "ON_TARGET", "CLEAN_NMI", "class_information", "nmi_miscount",
           "class_information_summary", "training_draws_summary", "claim_figure_reading",
           "READINGS", "readings_across", "lesson_across", "COMPARED_PROFILES",
           "saved_information"]


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


def _floor2(value: float) -> str:
    """``value`` rounded *down* to 2 decimals, so that "NMI ≥ 0.19" stays true of 0.198."""
    return f"{math.floor(100 * value) / 100:.2f}"


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
                 else f"never at the {max_eps:g} clamp (NMI ≥ {_floor2(row.lowest_nmi)} in every "
                      "draw)")
        unchanged = (f", {100 * row.unchanged:.0f} % unchanged (eps 0)" if row.unchanged > 0
                     else "")
        parts.append(f"`{kind}`: NMI {row.nmi_at_max_level:.2f} at d = {row.max_level:g}, eps "
                     f"{row.eps_q10:.2f}–{row.eps_q90:.2f} in 80 % of draws{unchanged}, {clamp}")
    lead_text = "; ".join(lead)
    return (lead_text[:1].upper() + lead_text[1:] + ". " if lead else "") + "; ".join(parts) + "."



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



# --- the lesson across data sets (notebook 06, README) ------------------------------------------

READINGS = ("under-counts", "over-counts")  # where NMI and class information part


def readings_across(information: Mapping[str, pd.DataFrame],
                    margin: float = MISCOUNT_MARGIN) -> pd.DataFrame:
    """Where NMI under- and over-counts class information, per kind (rows) and data set
    (columns), from each data set's :func:`class_information`: the degraded levels of each
    reading ("under-counts at d 0.3–1; over-counts at d 0.9–1"), or "agrees within <margin>"
    where it does neither."""
    if not isinstance(information, Mapping) or not information:
        raise ValueError("information must map each data set's name to its class_information")
    columns = {}
    for name, table in information.items():
        read = nmi_miscount(table, margin)
        degraded = read[read["level"] > 0]
        cells = {}
        for kind, rows in degraded.groupby("kind", sort=False):
            levels = {r: rows.loc[rows["reading"] == r, "level"] for r in READINGS}
            parts = [f"{r} at d {_level_ranges(levels[r], rows['level'])}"
                     for r in READINGS if len(levels[r])]
            cells[kind] = "; ".join(parts) or f"agrees within {margin:g}"
        columns[name] = cells
    return pd.DataFrame(columns).rename_axis("kind")


def lesson_across(information: Mapping[str, pd.DataFrame],
                  margin: float = MISCOUNT_MARGIN) -> str:
    """:func:`readings_across` in words (Markdown), every word from the tables: per kind,
    whether NMI under- or over-counts class information on every data set (a finding of the
    estimator and the kind, whatever the images) or only on some (a finding of the data: where
    its classes live)."""
    names = list(information)
    held: dict[str, dict[str, set[str]]] = {}
    for name, table in information.items():
        read = nmi_miscount(table, margin)
        degraded = read[read["level"] > 0]
        for kind, rows in degraded.groupby("kind", sort=False):
            held.setdefault(kind, {})[name] = set(rows["reading"]) & set(READINGS)
    lines = []
    for kind, by_data in held.items():
        for reading in READINGS:
            having = [n for n in names if reading in by_data.get(n, set())]
            if not having:
                continue
            where = ("on every data set here" if len(having) == len(names)
                     else f"on {', '.join(having)} only (not on "
                          f"{', '.join(n for n in names if n not in having)})")
            lines.append(f"- `{kind}`: NMI {reading} class information {where}.")
    if not lines:
        return f"NMI agrees with class information within {margin:g} everywhere."
    return ("Per kind, on the data sets compared (" + ", ".join(names) + "); a reading that "
            "holds on every one is the estimator's and the kind's, one that holds on some "
            "depends on where the data's classes live:\n\n" + "\n".join(lines))


# The profiles whose data sets the lesson compares: the embedded set with both cues, the real
# digits, and the synthetic set with its class in one cue only.
COMPARED_PROFILES = ("smoke", "digits", "cue-coarse", "cue-fine")


def saved_information(profiles: Sequence[str] = COMPARED_PROFILES, protocol: str = "paper"
                      ) -> dict[str, pd.DataFrame]:
    """:func:`class_information` of each of ``profiles`` whose plain run (``./run_all.sh
    --profile NAME``, no ``-p`` options) has saved a whole, current evaluation of ``protocol``
    on this machine, by profile name; the others are left out (not run here, or stale)."""
    found = {}
    for name in profiles:
        params = load_params(name)
        if protocol not in params.protocols:
            continue
        try:
            results = load_results(params.eval_dir(protocol), params, protocol)
        except (ValueError, OSError):  # no evaluation there, or not whole and current
            continue
        found[name] = class_information(results.sweeps, params.num_classes)
    return found
