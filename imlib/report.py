"""Measurements behind the reproduction report (notebook 06): where the paper's text, its public
code and this implementation differ, and what each difference does on a profile's runs.

Each function reads saved results (histories, evaluation tables) or runs a small, fast
computation that needs no trained model; the notebook only assembles them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import torch

from imlib.degradations import PAPER_EVAL, TRAIN
from imlib.metrics import ece, ece_paper_script
from imlib.nmi_study import nmi_by_level
from imlib.paper import PAPER_TABLE1
from imlib.results import summarize

if TYPE_CHECKING:
    from imlib.study import StudyParams

__all__ = ["selection_effect", "spread_effect", "calibration_estimators",
           "degradation_settings_effect", "protocol_comparison", "order_effect",
           "CLAIMS", "VERDICTS", "Claim", "claim_values", "compare", "verdict_table",
           "nmi_floor", "nmi_floor_summary", "study_banner", "provenance_note"]


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
    ``im`` and ``level`` runs trained with, for each K of ``num_classes``.

    The true class's target rises by ``eps / K``: the shift shrinks as K grows, so a
    difference visible on 10 classes is ten times smaller on CIFAR-100.
    """
    im_like = histories[histories["variant"].isin(["im", "level"])]
    mean_eps = im_like.groupby("variant", sort=False)["mean_eps"].mean()
    rows = [{"variant": variant, "K": k, "mean_eps": eps, "true_class_paper": 1 - eps,
             "true_class_code": 1 - eps + eps / k, "shift": eps / k}
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


def degradation_settings_effect(x: torch.Tensor, seed: int = 0) -> pd.DataFrame:
    """Mean NMI against level under the training constants (blur sigma 50 d, kernel cap 51,
    dropout patch 8) and the paper's evaluation constants (sigma 10 d, cap 11, patch 4), on
    images ``x``: how much the same level d degrades in training and in the evaluation."""
    frames = [nmi_by_level(x, kinds=("blur", "dropout"), seed=seed, config=config)
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

VERDICTS = ("reproduced", "not reproduced", "within seed noise", "not testable on this data")


@dataclass(frozen=True)
class Claim:
    """One headline claim: ``variant``'s ``metric`` is ``direction`` ("above" or "below")
    ``other``'s; ``measured`` says how the runs measure it. ``paper`` is what the paper shows
    where it gives no number; a Table 1 claim reads its numbers from ``PAPER_TABLE1``."""

    text: str
    variant: str
    other: str
    metric: str
    direction: str
    paper: str
    measured: str


CLAIMS = (
    Claim("IM's top-1 above the baseline's", "im", "baseline", "top1", "above", "",
          "clean test top-1"),
    Claim("IM's top-1 above LS's", "im", "ls", "top1", "above", "", "clean test top-1"),
    Claim("IM's ECE below the baseline's", "im", "baseline", "ece", "below", "",
          "clean test ECE, 15 bins"),
    Claim("LS's ECE below IM's (LS calibrates best)", "ls", "im", "ece", "below", "",
          "clean test ECE, 15 bins"),
    Claim("IM's CE below the baseline's", "im", "baseline", "nll", "below", "",
          "clean test cross-entropy"),
    Claim("IM's CE below LS's", "im", "ls", "nll", "below", "", "clean test cross-entropy"),
    Claim("IM more robust: accuracy under degradation above the baseline's", "im", "baseline",
          "accuracy_degraded", "above", "abstract (no numbers)",
          "test top-1, all kinds and levels d > 0"),
    Claim("IM more confident than the baseline at low distortion", "im", "baseline",
          "confidence_low", "above", "Fig. 3 (no numbers)",
          "true-class confidence, mosaic d <= 0.3, eval class"),
    Claim("under strong degradation IM's confidence falls while the baseline's stays",
          "im", "baseline", "confidence_high", "below", "Figs. 3-5 (no numbers)",
          "true-class confidence, all kinds d >= 0.7, test split"),
    Claim("IM's top-1 above the level control's (NMI adds over d)", "im", "level", "top1",
          "above", "not tested", "clean test top-1"),
    Claim("IM's ECE below the level control's", "im", "level", "ece", "below", "not tested",
          "clean test ECE, 15 bins"),
)


def claim_values(clean: pd.DataFrame, sweeps: pd.DataFrame, eval_class_subset: str = "class"
                 ) -> pd.DataFrame:
    """Per (variant, seed) the quantities the claims compare: ``top1``, ``ece``, ``nll`` from
    ``clean`` and, from ``sweeps`` (training's evaluation order, ``degrade_first``),
    ``accuracy_degraded`` (all kinds, d > 0, the whole test split), ``confidence_low``
    (mosaic, d <= 0.3, the eval class) and ``confidence_high`` (all kinds, d >= 0.7, the
    whole test split)."""
    values = clean.set_index(["variant", "seed"])[["top1", "ece", "nll"]]
    rows = sweeps[sweeps["order"] == "degrade_first"]
    low = rows[(rows["subset"] == eval_class_subset) & (rows["kind"] == "mosaic")
               & (rows["level"] <= 0.3 + 1e-9)]
    high = rows[(rows["subset"] == "all") & (rows["level"] >= 0.7 - 1e-9)]
    degraded = rows[(rows["subset"] == "all") & (rows["level"] > 0)]
    for name, part, column in (("confidence_low", low, "confidence"),
                               ("confidence_high", high, "confidence"),
                               ("accuracy_degraded", degraded, "accuracy")):
        values[name] = part.groupby(["variant", "seed"])[column].mean()
    return values


def compare(values: pd.DataFrame, claim: Claim, n_test: int) -> tuple[str, float, float]:
    """The verdict of one claim on one protocol's ``values`` (:func:`claim_values`), the
    difference ``variant - other`` of the means over seeds, and its noise scale.

    The noise is two standard errors of that difference: from the spread over seeds when
    there are at least two. With one seed, accuracies get the binomial error of a fraction
    ``p`` on ``n_test`` images, and so does the ECE (a gap between accuracy and confidence whose
    sampling error the accuracy's dominates; ``p`` is then the two models' clean top-1); the
    other metrics get none, and the verdict reads the sign alone.
    """
    variants = values.index.get_level_values("variant")
    if claim.variant not in variants or claim.other not in variants:
        return "not testable on this data", float("nan"), float("nan")
    a = values.loc[claim.variant, claim.metric].dropna()
    b = values.loc[claim.other, claim.metric].dropna()
    if a.empty or b.empty:
        return "not testable on this data", float("nan"), float("nan")
    diff = float(a.mean() - b.mean())
    if len(a) >= 2 and len(b) >= 2:
        noise = 2 * math.sqrt(a.var() / len(a) + b.var() / len(b))
    elif claim.metric in ("top1", "accuracy_degraded", "ece"):
        accuracy = "top1" if claim.metric == "ece" else claim.metric
        p = (values.loc[claim.variant, accuracy].mean()
             + values.loc[claim.other, accuracy].mean()) / 2
        noise = 2 * math.sqrt(2 * p * (1 - p) / n_test)
    else:
        noise = 0.0
    if abs(diff) <= noise:
        return "within seed noise", diff, noise
    holds = diff > 0 if claim.direction == "above" else diff < 0
    return ("reproduced" if holds else "not reproduced"), diff, noise


# Our metric -> the column of the paper's Table 1 that reports it (its "ECE" is the script's).
_TABLE1_COLUMN = {"top1": "top1", "ece": "ece_paper_script", "nll": "nll"}


def _paper_numbers(claim: Claim) -> str:
    """The paper's two numbers for a Table 1 claim, as printed, else ``claim.paper``."""
    column = _TABLE1_COLUMN.get(claim.metric)
    if column is None or claim.variant not in PAPER_TABLE1 or claim.other not in PAPER_TABLE1:
        return claim.paper
    a, b = PAPER_TABLE1[claim.variant][column], PAPER_TABLE1[claim.other][column]
    return f"{a:g} vs {b:g}" + (" %" if column == "top1" else "")


def _shown(metric: str, diff: float, a: float, b: float) -> str:
    """Accuracies and confidences in % (their differences in points), as the figures show
    them; ECE and CE as plain numbers."""
    if metric not in ("ece", "nll"):
        return f"{100 * diff:+.1f} pts ({100 * a:.1f} vs {100 * b:.1f} %)"
    return f"{diff:+.3f} ({a:.3f} vs {b:.3f})"


def verdict_table(clean: dict[str, pd.DataFrame], sweeps: dict[str, pd.DataFrame],
                  n_test: int) -> pd.DataFrame:
    """The headline claims, the paper's numbers, what each protocol's runs measured and the
    verdict, computed: one row per claim of ``CLAIMS``.

    ``clean`` and ``sweeps``: protocol -> its evaluation tables. A claim's verdict is the
    protocol's when one protocol ran; with two it names each ("paper: ...; reference-code:
    ...") unless they agree.
    """
    per_protocol = {p: claim_values(clean[p], sweeps[p]) for p in clean}
    rows = []
    for claim in CLAIMS:
        row = {"claim": claim.text, "measured as": claim.measured,
               "paper": _paper_numbers(claim)}
        verdicts = {}
        for protocol, values in per_protocol.items():
            verdict, diff, _ = compare(values, claim, n_test)
            verdicts[protocol] = verdict
            if math.isnan(diff):
                row[f"ours, {protocol}"] = "n/a"
            else:
                a = values.loc[claim.variant, claim.metric].mean()
                b = values.loc[claim.other, claim.metric].mean()
                row[f"ours, {protocol}"] = _shown(claim.metric, diff, a, b)
        distinct = set(verdicts.values())
        row["verdict"] = (distinct.pop() if len(distinct) == 1
                          else "; ".join(f"{p}: {v}" for p, v in verdicts.items()))
        rows.append(row)
    return pd.DataFrame(rows)


def nmi_floor(eps: pd.DataFrame, max_eps: float = 0.9) -> pd.DataFrame:
    """Per kind, from IM's training draws (``nmi_study.eps_distribution``): the lowest NMI
    reached, the mean eps, and the fraction of draws at the ``max_eps`` clamp. A kind that
    destroys the image (blur, mosaic, dropout at high d) reaches NMI near 0 and piles up at
    the clamp; additive noise keeps a floor (chance coincidences read as shared information)."""
    table = eps.groupby("kind", sort=False).agg(lowest_nmi=("nmi", "min"),
                                               mean_eps=("eps", "mean"),
                                               at_clamp=("clamped", "mean"), draws=("eps", "size"))
    return table


def nmi_floor_summary(floor: pd.DataFrame) -> str:
    """:func:`nmi_floor` in one sentence (Markdown) for a notebook's prose."""
    return "; ".join(f"`{kind}`: lowest NMI {row.lowest_nmi:.2f}, "
                     f"{100 * row.at_clamp:.0f} % of draws at the clamp"
                     for kind, row in floor.iterrows()) + "."



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


def provenance_note(origins: pd.DataFrame, current_commit: str | None) -> str:
    """One Markdown line on where the runs came from (``results.run_provenance``): all from
    the current commit, or which ones were trained by other code."""
    if current_commit is None:
        return "The current code is not a git checkout: runs cannot be matched to a commit."
    others = origins[origins["git_commit"] != current_commit]
    if others.empty:
        return (f"All {len(origins)} runs were trained by the current code "
                f"(commit `{current_commit[:10]}`).")
    listed = ", ".join(f"{r.run} (`{str(r.git_commit)[:10]}`)" for r in others.itertuples())
    return (f"**{len(others)} of {len(origins)} runs were trained by another commit than the "
            f"current code (`{current_commit[:10]}`):** {listed}. Their numbers are those of "
            "that code; `--fresh --only 03_training` retrains them.")
