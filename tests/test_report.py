"""The verdicts of notebook 06, on evaluation tables built here with known differences."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from imlib.report import CLAIMS, VERDICTS, verdict_table


def _clean(values: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    rows = [{"variant": v, "seed": s, **{m: per_seed[m][s] for m in per_seed}}
            for v, per_seed in values.items() for s in range(len(next(iter(per_seed.values()))))]
    return pd.DataFrame(rows)


def _sweeps(confidence: dict[str, float], accuracy: dict[str, float], seeds: int) -> pd.DataFrame:
    rows = []
    for variant, seed, kind, level, subset in itertools.product(
            confidence, range(seeds), ("diffusion", "mosaic"), np.linspace(0, 1, 11),
            ("all", "class")):
        # Confidence falls linearly from 1 at d = 0 to confidence[variant] at d = 1.
        conf = 1 - (1 - confidence[variant]) * level
        rows.append({"variant": variant, "seed": seed, "kind": kind, "level": round(level, 1),
                     "subset": subset, "order": "degrade_first", "accuracy": accuracy[variant],
                     "confidence": conf, "nmi": 1 - level, "n": 100})
    frame = pd.DataFrame(rows)
    wrong_order = frame.assign(order="normalize_first", confidence=0.0, accuracy=0.0)
    return pd.concat([frame, wrong_order], ignore_index=True)


def _row(table: pd.DataFrame, text_start: str) -> pd.Series:
    return table[table["claim"].str.startswith(text_start)].iloc[0]


def test_verdicts_follow_the_measured_differences_and_their_noise():
    # IM clearly above baseline (two seeds, tiny spread), level within noise of IM,
    # IM's ECE above the baseline's (the claim fails).
    clean = _clean({
        "baseline": {"top1": [0.50, 0.51], "ece": [0.05, 0.05], "nll": [1.0, 1.0]},
        "ls": {"top1": [0.60, 0.61], "ece": [0.01, 0.01], "nll": [0.9, 0.9]},
        "im": {"top1": [0.70, 0.71], "ece": [0.10, 0.11], "nll": [0.8, 0.8]},
        "level": {"top1": [0.65, 0.76], "ece": [0.2, 0.2], "nll": [0.8, 0.8]},
    })
    sweeps = _sweeps({"baseline": 0.9, "ls": 0.8, "im": 0.2, "level": 0.3},
                     {"baseline": 0.3, "ls": 0.3, "im": 0.4, "level": 0.4}, seeds=2)
    table = verdict_table({"paper": clean}, {"paper": sweeps}, n_test=1000)
    assert len(table) == len(CLAIMS) and set(table["verdict"]) <= set(VERDICTS)
    assert _row(table, "IM's top-1 above the baseline")["verdict"] == "reproduced"
    assert _row(table, "IM's top-1 above the baseline")["ours, paper"].startswith("+20.0 pts")
    assert _row(table, "IM's ECE below the baseline")["verdict"] == "not reproduced"
    assert _row(table, "LS's ECE below IM's")["verdict"] == "reproduced"
    assert _row(table, "IM's top-1 above the level")["verdict"] == "within seed noise"
    assert _row(table, "under strong degradation")["verdict"] == "reproduced"
    # Low distortion (d <= 0.3): IM falls faster, so it is *less* confident there.
    assert _row(table, "IM more confident")["verdict"] == "not reproduced"
    assert _row(table, "IM more robust")["verdict"] == "reproduced"


def test_one_seed_uses_the_binomial_error_of_top1():
    clean = _clean({"baseline": {"top1": [0.50], "ece": [0.100], "nll": [1.0]},
                    "im": {"top1": [0.52], "ece": [0.105], "nll": [1.1]}})
    sweeps = _sweeps({"baseline": 0.5, "im": 0.5}, {"baseline": 0.3, "im": 0.3}, seeds=1)
    # 2 points on 400 images: 2 * sqrt(2 * 0.51 * 0.49 / 400) = 7 points of noise.
    small = verdict_table({"paper": clean}, {"paper": sweeps}, n_test=400)
    assert _row(small, "IM's top-1 above the baseline")["verdict"] == "within seed noise"
    # On 100,000 images the same 2 points exceed 2 * sqrt(2 * 0.51 * 0.49 / 1e5) = 0.45 points.
    large = verdict_table({"paper": clean}, {"paper": sweeps}, n_test=100_000)
    assert _row(large, "IM's top-1 above the baseline")["verdict"] == "reproduced"
    # The ECE borrows the accuracy's error: 0.005 is noise on 400 images, not on 100,000.
    assert _row(small, "IM's ECE below the baseline")["verdict"] == "within seed noise"
    assert _row(large, "IM's ECE below the baseline")["verdict"] == "not reproduced"
    # The NLL has no noise estimate with one seed: its sign decides.
    assert _row(small, "IM's CE below the baseline")["verdict"] == "not reproduced"


def test_claims_about_variants_not_trained_are_not_testable_and_protocols_are_named():
    clean = _clean({"baseline": {"top1": [0.5, 0.5], "ece": [0.1, 0.1], "nll": [1.0, 1.0]},
                    "im": {"top1": [0.7, 0.7], "ece": [0.1, 0.1], "nll": [1.0, 1.0]}})
    worse = clean.assign(top1=np.where(clean["variant"] == "im", 0.3, 0.5))
    sweeps = _sweeps({"baseline": 0.5, "im": 0.5}, {"baseline": 0.3, "im": 0.3}, seeds=2)
    table = verdict_table({"paper": clean, "reference-code": worse},
                          {"paper": sweeps, "reference-code": sweeps}, n_test=1000)
    assert _row(table, "IM's top-1 above LS")["verdict"] == "not testable on this data"
    assert _row(table, "IM's top-1 above LS")["ours, paper"] == "n/a"
    assert (_row(table, "IM's top-1 above the baseline")["verdict"]
            == "paper: reproduced; reference-code: not reproduced")



def test_spread_effect_matches_the_code_s_targets_and_shrinks_with_k():
    import torch

    from imlib.labels import soft_targets
    from imlib.report import spread_effect

    histories = pd.DataFrame({"variant": ["im", "im", "baseline"], "mean_eps": [0.5, 0.7, 0.0]})
    table = spread_effect(histories, (10, 100))
    assert list(table["variant"]) == ["im", "im"]
    for row in table.itertuples():
        code = soft_targets(torch.tensor([0]), row.K, torch.tensor([row.mean_eps]), "all")
        paper = soft_targets(torch.tensor([0]), row.K, torch.tensor([row.mean_eps]), "others")
        assert row.true_class_code == pytest.approx(float(code[0, 0]), abs=1e-6)
        assert row.shift == pytest.approx(float(code[0, 0] - paper[0, 0]), abs=1e-6)
    assert table["shift"].iloc[0] == pytest.approx(10 * table["shift"].iloc[1])


def test_nmi_floor_diffusion_keeps_one_destructive_kinds_reach_zero(photo_crops):
    from imlib.nmi_study import eps_distribution
    from imlib.report import nmi_floor

    images = photo_crops((32, 32), (96, 96))
    floor = nmi_floor(eps_distribution(images, n_draws=600, seed=0))
    assert floor.loc["diffusion", "lowest_nmi"] > 0.15  # chance coincidences in 64 bins
    assert floor.loc["diffusion", "at_clamp"] == 0
    for kind in ("blur", "mosaic", "dropout"):
        assert floor.loc[kind, "lowest_nmi"] < 0.1, kind
        assert floor.loc[kind, "at_clamp"] > 0, kind
    assert floor["draws"].sum() == 600


def test_the_paper_column_quotes_table1_as_printed():
    clean = _clean({v: {"top1": [0.5, 0.5], "ece": [0.1, 0.1], "nll": [1.0, 1.0]}
                    for v in ("baseline", "ls", "im")})
    sweeps = _sweeps({v: 0.5 for v in ("baseline", "ls", "im")},
                     {v: 0.3 for v in ("baseline", "ls", "im")}, seeds=2)
    table = verdict_table({"paper": clean}, {"paper": sweeps}, n_test=1000)
    # paper.txt, Table 1: IM 63.24 / ECE 0.1366 / CE 1.5724; LS 55.94 / 0.1121; base 55.43 / 0.1738
    assert _row(table, "IM's top-1 above the baseline")["paper"] == "63.24 vs 55.43 %"
    assert _row(table, "LS's ECE below IM's")["paper"] == "0.1121 vs 0.1366"
    assert _row(table, "IM's CE below LS")["paper"] == "1.5724 vs 1.7069"


def test_selection_effect_reads_the_test_accuracy_at_the_holdout_chosen_epoch():
    from imlib.report import selection_effect

    history = pd.DataFrame({"variant": "im", "seed": 0, "epoch": [1, 2, 3],
                            "holdout_acc": [0.5, 0.7, 0.6], "test_acc": [0.55, 0.60, 0.66]})
    row = selection_effect(history).iloc[0]
    # epoch 2 wins on the holdout: its test accuracy is 60 %; the best test epoch reads 66 %
    assert [row.holdout_selected, row.test_selected, row["last"]] == pytest.approx([60, 66, 66])
    assert row.optimism == pytest.approx(6)
    no_holdout = selection_effect(history.assign(holdout_acc=None)).iloc[0]
    assert np.isnan(no_holdout.holdout_selected) and no_holdout.test_selected == pytest.approx(66)


def test_protocol_comparison_and_order_effect_against_hand_means():
    from imlib.report import order_effect, protocol_comparison

    paper = _clean({"im": {"top1": [0.6, 0.8], "ece": [0.1, 0.1], "nll": [1.0, 1.0]}})
    code = _clean({"im": {"top1": [0.5, 0.5], "ece": [0.1, 0.1], "nll": [1.0, 1.0]}})
    table = protocol_comparison({"paper": paper, "reference-code": code}, "top1")
    assert table.loc["im", ("paper", "top1_mean")] == pytest.approx(70)  # in %
    assert table.loc["im", ("reference-code", "top1_mean")] == pytest.approx(50)
    sweeps = _sweeps({"im": 0.5}, {"im": 0.4}, seeds=1)  # normalize_first rows read 0
    effect = order_effect(sweeps)
    # degrade_first: confidence 1 - 0.5 d averaged over d = 0, 0.1, ..., 1 -> 75 %
    assert effect.loc[("mosaic", "im"), "degrade_first"] == pytest.approx(75)
    assert effect.loc[("mosaic", "im"), "difference"] == pytest.approx(-75)


def test_calibration_estimators_agree_with_torchmetrics_and_show_the_script_s_floor():
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    from imlib.report import calibration_estimators

    table = calibration_estimators(n=5000, num_classes=10, seed=1).set_index("predictions")
    g = torch.Generator().manual_seed(1)  # the same draws, redone here
    logits = 2 * torch.randn(5000, 10, generator=g)
    probs = torch.softmax(logits, dim=1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    expected = multiclass_calibration_error(probs, labels, num_classes=10, n_bins=15, norm="l1")
    assert table.loc["calibrated", "ece"] == pytest.approx(float(expected), abs=1e-6)
    assert table.loc["calibrated", "ece"] < 0.03
    assert table.loc["calibrated", "ece_paper_script"] > 0.05  # the script's floor
    assert table.loc["overconfident", "ece"] > 0.1
