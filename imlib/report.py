"""Measurements behind the reproduction report (notebook 06): where the paper's text, its public
code and this implementation differ, and what each difference does on a profile's runs.

Each function reads saved results (histories, evaluation tables) or runs a small, fast
computation that needs no trained model; the notebook only assembles them.
"""

from __future__ import annotations

import pandas as pd
import torch

from imlib.degradations import PAPER_EVAL, TRAIN
from imlib.evaluate import summarize
from imlib.metrics import ece, ece_paper_script
from imlib.nmi_study import nmi_by_level

__all__ = ["selection_effect", "spread_effect", "calibration_estimators",
           "degradation_settings_effect", "protocol_comparison", "order_effect"]


def selection_effect(histories: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy of the epoch chosen on the holdout split against the best test accuracy
    over all epochs (choosing the epoch on the test set, as the paper did), per run.

    ``histories``: :func:`imlib.evaluate.load_histories`. Returns per (variant, seed) the
    ``holdout_selected`` and ``test_selected`` test accuracies (fractions), the ``last``
    epoch's, and ``optimism`` = test_selected - holdout_selected (>= 0 by construction: the
    bias that selecting on the test set adds).
    """
    rows = []
    for (variant, seed), run in histories.groupby(["variant", "seed"], sort=False):
        has_holdout = run["holdout_acc"].notna().any()
        chosen = run.loc[run["holdout_acc"].idxmax()] if has_holdout else None
        rows.append({"variant": variant, "seed": seed,
                     "holdout_selected": chosen["test_acc"] if has_holdout else float("nan"),
                     "test_selected": run["test_acc"].max(),
                     "last": run.sort_values("epoch")["test_acc"].iloc[-1]})
    table = pd.DataFrame(rows)
    table["optimism"] = table["test_selected"] - table["holdout_selected"]
    return table


def spread_effect(histories: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """What the public code's IM spread (eps / K on every class) changes against the paper's
    formula (eps / (K - 1) on the other classes), at the mean eps the IM runs trained with.

    The true class's target rises by eps / K and each other class's falls by
    eps / (K (K - 1)); returns those, per variant that smooths by eps.
    """
    im_like = histories[histories["variant"].isin(["im", "level"])]
    mean_eps = im_like.groupby("variant", sort=False)["mean_eps"].mean()
    k = num_classes
    return pd.DataFrame({"mean_eps": mean_eps,
                         "true_class_target_paper": 1 - mean_eps,
                         "true_class_target_code": 1 - mean_eps + mean_eps / k,
                         "other_class_target_paper": mean_eps / (k - 1),
                         "other_class_target_code": mean_eps / k}).reset_index()


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
    """``metric`` (mean and std over seeds) per variant, one column group per protocol.

    ``clean``: protocol name -> its ``clean_metrics`` table (:func:`imlib.evaluate.load_results`).
    """
    tables = {protocol: summarize(table, ("variant",), (metric,)).set_index("variant")
              for protocol, table in clean.items()}
    return pd.concat(tables, axis=1)


def order_effect(sweeps: pd.DataFrame) -> pd.DataFrame:
    """Mean true-class confidence on the whole test split (over levels and seeds) per kind and
    variant, degrading before normalising (training's order) and after (the paper's evaluation
    script), and their difference."""
    rows = sweeps[sweeps["subset"] == "all"]
    table = rows.pivot_table(index=["kind", "variant"], columns="order", values="confidence",
                             aggfunc="mean")
    table["difference"] = table["normalize_first"] - table["degrade_first"]
    return table
