"""Measurements behind the reproduction report (notebook 06): where the paper's text, its public
code and this implementation differ, and what each difference does on a profile's runs; the
evaluation class; the study's banner and the provenance of its runs.

Each function reads saved results (histories, evaluation tables) or runs a small, fast
computation that needs no trained model; the notebook only assembles them. The verdicts are
:mod:`imlib.verdicts`, the readings of pixel against class information
:mod:`imlib.class_information`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from imlib.degradations import PAPER_EVAL, TRAIN
from imlib.runs import completed_run
from imlib.labels import true_class_target
from imlib.metrics import ece, ece_paper_script
from imlib.nmi_study import nmi_by_level
from imlib.results import summarize
from imlib.style import DATASET_LABELS
from imlib.variants import VARIANT_SPECS

if TYPE_CHECKING:
    from imlib.study import StudyParams, StudyRun

__all__ = ["selection_effect", "spread_effect", "calibration_estimators",
           "degradation_settings_effect", "protocol_comparison", "order_effect", "class_accuracy",
           "median_accuracy_class", "eval_class_note", "convergence_note", "study_banner",
           "provenance_note"]


def selection_effect(histories: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy of the epoch chosen on the holdout split against the best test accuracy
    over all epochs (choosing the epoch on the test set, as the paper did), per run.

    ``histories``: :func:`imlib.histories.load_histories`. Returns per (variant, seed) the
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


def convergence_note(runs: Sequence[StudyRun]) -> str:
    """Whether the runs trained long enough to stop improving (Markdown): per protocol, how many
    runs selected their last epoch (by their selection rule, from ``result.json``). Such a run
    was still improving when it stopped, and what its verdicts say is about a model early in
    training. Every run must be complete (:func:`imlib.runs.completed_run`)."""
    by_protocol: dict[str, list[bool]] = {}
    for run in runs:
        best = completed_run(run.config)["best_epoch"]
        by_protocol.setdefault(run.protocol, []).append(best == run.config.epochs)
    parts = []
    for protocol, at_last in by_protocol.items():
        n, last = len(at_last), sum(at_last)
        parts.append(f"`{protocol}`: {last} of {n} runs selected their last epoch"
                     + (" (still improving when training stopped: not converged)" if last
                        else " (every run had stopped improving)"))
    return "**Convergence.** " + "; ".join(parts) + "."


def study_banner(params: StudyParams, n_test: int) -> str:
    """The report's opening line, from the run's actual settings (Markdown); on data other
    than CIFAR-100 it says plainly that the paper's numbers cannot be confirmed by it."""
    training = params.training
    name = DATASET_LABELS.get(training.dataset, training.dataset)
    data = (f"CIFAR-100 ({n_test:,} test images)" if training.dataset == "cifar100"
            else f"the {name} ({params.num_classes} classes, {n_test:,} test images)")
    seeds = len(params.seeds)
    text = (f"**This run:** profile `{params.profile}`, {data}, model `{training.model}`, "
            f"{training.epochs} epochs, {seeds} seed{'s' if seeds > 1 else ''} "
            f"({', '.join(map(str, params.seeds))}), protocols {', '.join(params.protocols)}, "
            f"variants {', '.join(params.variants)}"
            + (f", and under the paper protocol the controls {', '.join(params.ablations)}"
               if params.ablations else "") + ".")
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
    """One Markdown line on where the runs came from (:func:`imlib.histories.run_provenance`)
    against the code now (``current``: :func:`imlib.io.provenance`): all from the current
    code, or which ones were trained by other code, grouped by code. Code with uncommitted
    changes (an edited tree, which no commit holds) is said so, never called "the current
    code" of a commit."""
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
