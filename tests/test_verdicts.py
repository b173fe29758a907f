"""imlib.verdicts: each comparison's verdict on per-image tables with known answers, the claims
they add up to, the ECE against torchmetrics, and what the report says, checked by its numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from imlib.verdicts import (CLAIMS, VERDICT_COLUMNS, VERDICTS, claim_verdicts, verdict_conclusion,
                            verdict_display, verdict_table, write_verdicts)

EVAL_CLASS = 3


def _per_image(spec: dict[str, dict[str, list[float]]], images: int = 600, classes: int = 10,
               seed: int = 0) -> pd.DataFrame:
    """Per-image tables of two-class predictions: ``spec[variant]`` gives per seed its share of
    right images ``accuracy`` (drawn image by image), its top-1 ``confidence`` (+- 0.05 per
    image) and its mean true-class probability under mosaic at ``low`` and ``high``
    distortion (+- 0.1 per image)."""
    rng = np.random.default_rng(seed)
    frames = []
    for variant, values in spec.items():
        for s, accuracy in enumerate(values["accuracy"]):
            correct = (rng.random(images) < accuracy).astype(int)
            top = np.clip(values.get("confidence", [0.8] * 3)[s]
                          + rng.uniform(-0.05, 0.05, images), 0.5, 1)
            true = np.where(correct == 1, top, 1 - top)
            frames.append(pd.DataFrame({
                "variant": variant, "seed": s, "image": np.arange(images),
                "label": np.arange(images) % classes, "clean_correct": correct,
                "clean_top_prob": top, "clean_true_prob": true, "clean_nll": -np.log(true),
                "degraded_correct": (rng.random(images) < accuracy - 0.2).astype(float),
                "mosaic_low_true_prob": np.clip(values.get("low", [0.5] * 3)[s]
                                                + rng.uniform(-0.1, 0.1, images), 0, 1),
                "mosaic_high_true_prob": np.clip(values.get("high", [0.3] * 3)[s]
                                                 + rng.uniform(-0.1, 0.1, images), 0, 1)}))
    return pd.concat(frames, ignore_index=True)


def _table(per_image: dict[str, pd.DataFrame], classes: int = 10) -> pd.DataFrame:
    return verdict_table(per_image, EVAL_CLASS, num_classes=classes, dataset="synthetic")


def _row(table: pd.DataFrame, metric: str, variant: str, other: str, subset: str = "all",
         protocol: str = "paper") -> pd.Series:
    rows = table[(table["metric"] == metric) & (table["variant"] == variant)
                 & (table["other"] == other) & (table["subset"] == subset)
                 & (table["protocol"] == protocol)]
    assert len(rows) == 1, (metric, variant, other, subset, protocol)
    return rows.iloc[0]


def test_a_real_difference_is_reproduced_seed_noise_is_not_and_the_wrong_side_contradicts():
    # IM right on 90 % of the images and the baseline on 70 %, small seed noise; LS drawn from
    # the baseline's distribution but with seeds spread wider than their difference from it.
    table = _table({"paper": _per_image({
        "baseline": {"accuracy": [0.69, 0.70, 0.71]},
        "im": {"accuracy": [0.89, 0.90, 0.91]},
        "ls": {"accuracy": [0.64, 0.76, 0.70]},
        "level": {"accuracy": [0.95, 0.96, 0.97]}})})
    assert set(table["verdict"]) <= set(VERDICTS)
    top1 = _row(table, "top1", "im", "baseline")
    assert top1["verdict"] == "reproduced" and top1["seeds"] == 3
    assert top1["low"] > 0 and top1["difference"] == pytest.approx(0.2, abs=0.03)
    assert 2 <= top1["df"] <= 4  # capped at n_a + n_b - 2
    noise = _table({"paper": _per_image({"baseline": {"accuracy": [0.69, 0.70, 0.71]},
                                         "ls": {"accuracy": [0.64, 0.76, 0.70]},
                                         "im": {"accuracy": [0.75, 0.63, 0.69]}})})
    assert _row(noise, "top1", "im", "baseline")["verdict"] == "inconclusive"
    assert _row(noise, "top1", "im", "ls")["verdict"] == "inconclusive"
    assert _row(table, "top1", "im", "level")["verdict"] == "contradicted"


def test_a_claim_holds_when_all_its_comparisons_do_and_falls_when_one_contradicts():
    # IM beats the baseline clearly and ties with LS: "IM has the highest top-1" is only partly
    # reproduced; with LS clearly worse too, reproduced; with LS clearly better, contradicted.
    base, im = {"accuracy": [0.69, 0.70, 0.71]}, {"accuracy": [0.89, 0.90, 0.91]}

    def top1_claim(ls: list[float]) -> str:
        table = _table({"paper": _per_image({"baseline": base, "im": im,
                                             "ls": {"accuracy": ls}})})
        claims = claim_verdicts(table).set_index("group")
        return claims.loc[table.loc[table["metric"] == "top1", "group"].iloc[0], "verdict"]

    assert top1_claim([0.80, 0.99, 0.90]) == "partly reproduced"
    assert top1_claim([0.69, 0.70, 0.71]) == "reproduced"
    assert top1_claim([0.97, 0.98, 0.99]) == "contradicted"


def test_fewer_than_three_seeds_are_never_reproduced():
    # A difference whose interval lies above 0 even with 2 seeds (t with 1 df: 12.7).
    spec = {"baseline": {"accuracy": [0.5, 0.5]}, "im": {"accuracy": [0.99, 0.99]}}
    two = _row(_table({"paper": _per_image(spec)}), "top1", "im", "baseline")
    assert two["verdict"] == "too few seeds (2)" and two["low"] > 0
    one = _row(_table({"paper": _per_image({v: {"accuracy": s["accuracy"][:1]}
                                            for v, s in spec.items()})}), "top1", "im",
               "baseline")
    assert one["verdict"] == "too few seeds (1)" and np.isnan(one["low"])


def test_ls_calibrates_best_needs_both_comparisons_and_the_ece_is_torchmetrics():
    # The baseline is calibrated (confidence = accuracy), LS a little and IM much less so.
    spec = {"baseline": {"accuracy": [0.8] * 3, "confidence": [0.8] * 3},
            "ls": {"accuracy": [0.8] * 3, "confidence": [0.9] * 3},
            "im": {"accuracy": [0.8] * 3, "confidence": [0.6] * 3}}
    per_image = _per_image(spec)
    table = _table({"paper": per_image})
    assert _row(table, "ece", "ls", "baseline")["verdict"] == "contradicted"
    assert _row(table, "ece", "ls", "im")["verdict"] == "reproduced"
    claims = claim_verdicts(table).set_index("group")["verdict"]
    assert claims[_row(table, "ece", "ls", "im")["group"]] == "contradicted"
    # the two-class predictions the table was made of, and torchmetrics' ECE of each seed
    expected = []
    for _, run in per_image[per_image["variant"] == "ls"].groupby("seed"):
        top = torch.tensor(run["clean_top_prob"].to_numpy())
        labels = torch.tensor(1 - run["clean_correct"].to_numpy())
        expected.append(float(multiclass_calibration_error(
            torch.stack([top, 1 - top], 1), labels, num_classes=2, n_bins=15, norm="l1")))
    row = _row(table, "ece", "ls", "baseline")
    assert row["variant_value"] == pytest.approx(np.mean(expected), abs=1e-6)


def test_both_confidence_claims_on_all_images_and_on_the_class():
    # IM starts higher (0.6 vs 0.4) and falls further (to 0.1 vs 0.35): the first claim holds,
    # the second fails; on the evaluation class IM starts lower (0.2), so the first fails there.
    spec = {"baseline": {"accuracy": [0.8] * 3, "low": [0.4] * 3, "high": [0.35] * 3},
            "im": {"accuracy": [0.8] * 3, "low": [0.6] * 3, "high": [0.1] * 3}}
    per_image = _per_image(spec)
    in_class = (per_image["variant"] == "im") & (per_image["label"] == EVAL_CLASS)
    per_image.loc[in_class, "mosaic_low_true_prob"] = 0.2
    table = _table({"paper": per_image})
    assert _row(table, "confidence_low", "im", "baseline")["verdict"] == "reproduced"
    assert _row(table, "confidence_low", "im", "baseline", "class")["verdict"] == "contradicted"
    drop = _row(table, "confidence_drop", "im", "baseline")
    assert drop["verdict"] == "contradicted"
    # 9 images in 10 fall from 0.6 to 0.1, those of the class from 0.2 to 0.1
    assert drop["variant_value"] == pytest.approx(0.9 * 0.5 + 0.1 * 0.1, abs=0.02)
    assert drop["other_value"] == pytest.approx(0.05, abs=0.02)
    assert f"class {EVAL_CLASS}" in _row(table, "confidence_low", "im", "baseline",
                                         "class")["measured"]
    # LS was not trained: those comparisons are not testable, and say why
    against_ls = _row(table, "confidence_low", "im", "ls")
    assert against_ls["verdict"] == "not testable on this data" and "ls" in against_ls["why"]


def test_untestable_claims_two_protocols_the_display_and_the_paper_s_numbers():
    spec = {"baseline": {"accuracy": [0.69, 0.70, 0.71]}, "im": {"accuracy": [0.89, 0.90, 0.91]}}
    worse = {"baseline": spec["im"], "im": spec["baseline"]}
    no_high = _per_image(spec).assign(mosaic_high_true_prob=np.nan)  # levels never swept
    table = _table({"paper": no_high, "reference-code": _per_image(worse)})
    assert _row(table, "top1", "im", "ls")["verdict"] == "not testable on this data"
    assert _row(table, "confidence_drop", "im", "baseline")["verdict"] == (
        "not testable on this data")
    assert _row(table, "top1", "im", "baseline", protocol="reference-code")["verdict"] == (
        "contradicted")
    # top-5 of 10 classes is not tested; on 100 it reads its per-image column
    assert "top-5 of 10 classes" in _row(table, "top5", "im", "baseline")["why"]
    assert "clean_top5_correct" in _row(_table({"paper": no_high}, classes=100), "top5", "im",
                                        "baseline")["why"]
    # paper.txt, Table 1: IM 63.24 / ECE 0.1366 / CE 1.5724; LS 55.94 / 0.1121; base 55.43 / 0.1738
    assert _row(table, "top1", "im", "baseline")["paper"] == "63.24 vs 55.43 %"
    assert _row(table, "ece", "ls", "baseline")["paper"] == "0.1121 vs 0.1738"
    assert _row(table, "nll", "im", "ls")["paper"] == "1.5724 vs 1.7069"
    shown = verdict_display(table, "paper")
    paper_groups = list(dict.fromkeys(c.group for c in CLAIMS if c.question == "paper"))
    assert list(shown.index) == paper_groups  # one line per claim, in order
    top1_group = _row(table, "top1", "im", "baseline")["group"]
    cell = shown.loc[top1_group, "paper protocol: comparisons"]
    assert cell.startswith("im above baseline: +20.") and "not testable (ls not trained" in cell
    assert shown.loc[top1_group, "paper protocol: verdict"] == "reproduced"
    assert shown.loc[top1_group, "reference-code protocol: verdict"] == "contradicted"
    companion = verdict_display(table, "companion")
    assert "in the paper" not in companion.columns and len(companion) == len(
        {c.group for c in CLAIMS if c.question == "companion"})


def test_the_conclusion_counts_claims_not_comparisons():
    spec = {"baseline": {"accuracy": [0.69, 0.70, 0.71]}, "im": {"accuracy": [0.89, 0.90, 0.91]},
            "ls": {"accuracy": [0.69, 0.70, 0.71]}}
    table = _table({"paper": _per_image(spec)})
    claims = claim_verdicts(table)
    paper = claims[claims["question"] == "paper"]
    conclusion = verdict_conclusion(table)
    assert f"of the paper's {len(paper)} claims" in conclusion
    assert len(paper) < (table["question"] == "paper").sum()  # fewer claims than comparisons
    tested = int((table["verdict"] != "not testable on this data").sum())
    assert f"These rest on {tested} intervals" in conclusion
    # no control was trained: the companion's questions are named untestable, not counted
    companion = len(claims[claims["question"] == "companion"])
    assert (f"none of the companion's {companion} questions is testable (its variants are not "
            "trained under it)") in conclusion


def test_the_conclusion_names_too_few_seeds_and_the_file_is_rewritten(tmp_path):
    table = _table({"paper": _per_image({"baseline": {"accuracy": [0.7, 0.7]},
                                         "im": {"accuracy": [0.9, 0.9]}})})
    assert "no claim is judged: 2 seed(s)" in verdict_conclusion(table)
    for _ in range(2):  # notebook 06 rerun
        path = write_verdicts(table, tmp_path / "eval", EVAL_CLASS, study={"profile": "smoke"})
    written = pd.read_csv(path)
    assert tuple(written.columns) == VERDICT_COLUMNS and len(written) == len(table)
    assert written["verdict"].tolist() == table["verdict"].tolist()
    assert set(written["dataset"]) == {"synthetic"}
