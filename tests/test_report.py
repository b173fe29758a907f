"""The verdicts of notebook 06, on evaluation tables built here with known differences."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from imlib.degradations import PAPER_EVAL, TRAIN, degrade
from imlib.nmi import nmi
from imlib.report import degradation_settings_effect, eval_class_note, median_accuracy_class


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


# --- NMI floor, class information, and the prose built on them ---------------------------------


def _draws(rows: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """Training draws: kind -> (level, nmi) pairs, with IM's eps = clamp(1 - nmi, 0, 0.9)."""
    table = pd.DataFrame([{"kind": k, "level": d, "nmi": n} for k, pairs in rows.items()
                          for d, n in pairs])
    table["eps"] = (1 - table["nmi"]).clip(0, 0.9)
    return table.assign(target=1 - table["eps"])


def test_nmi_floor_reads_the_end_of_each_curve_and_the_clamp_from_the_tables():
    from imlib.class_information import nmi_floor, nmi_floor_summary

    # noise: never below 0.2; blur: one draw in four at the clamp; mosaic: most at the clamp,
    # one unchanged.
    eps = _draws({"diffusion": [(0.5, 0.25), (0.9, 0.21), (0.1, 0.3), (1.0, 0.22)],
                  "blur": [(0.5, 0.15), (0.9, 0.08), (0.2, 0.2), (0.7, 0.12)],
                  "mosaic": [(0.1, 1.0), (0.6, 0.05), (0.9, 0.02), (1.0, 0.0), (0.8, 0.04)]})
    by_level = pd.DataFrame([{"kind": k, "level": d, "bins": 64, "mean": m}
                             for k, ms in {"diffusion": (1.0, 0.26, 0.25), "blur": (1.0, 0.2, 0.12),
                                           "mosaic": (1.0, 0.5, 0.0)}.items()
                             for d, m in zip((0.0, 0.5, 1.0), ms, strict=True)])
    floor = nmi_floor(eps, by_level, max_eps=0.9)
    assert list(floor.index) == ["diffusion", "blur", "mosaic"]
    assert floor["nmi_at_max_level"].tolist() == [0.25, 0.12, 0.0]
    assert floor["at_clamp"].tolist() == [0.0, 0.25, 0.8]  # 1 - NMI >= 0.9, counted by hand
    assert floor["unchanged"].tolist() == [0.0, 0.0, 0.2]
    assert floor.loc["blur", "lowest_nmi"] == 0.08
    assert floor.loc["mosaic", "eps_q90"] == pytest.approx(
        np.percentile(1 - np.array([1.0, 0.05, 0.02, 0.0, 0.04]).clip(0.1), 90))
    text = nmi_floor_summary(floor, max_eps=0.9)
    assert text.startswith("At the strongest level NMI stays above 0.05 for `diffusion`, `blur`;"
                           " falls to 0.05 or below for `mosaic`.")
    parts = dict(part.split(": ", 1) for part in text.split(". ", 1)[1].rstrip(".").split("; "))
    assert "never at the 0.9 clamp (NMI ≥ 0.21 in every draw)" in parts["`diffusion`"]
    assert "25 % of draws at the 0.9 clamp" in parts["`blur`"]
    assert "most draws (80 %) at the 0.9 clamp" in parts["`mosaic`"]
    assert "20 % unchanged" in parts["`mosaic`"] and "unchanged" not in parts["`blur`"]
    with pytest.raises(ValueError, match="one number of bins"):
        nmi_floor(eps, pd.concat([by_level, by_level.assign(bins=32)]))


K_INFO = 10


def _info_sweeps(accuracy: dict[tuple[str, str], list[list[float]]],
                 nmi: dict[str, list[float]], levels=(0.0, 0.5, 1.0)) -> pd.DataFrame:
    """Sweeps of the study's layout: accuracy[(variant, kind)][seed][level index], NMI per kind
    and level; confidence 0.5 everywhere; junk rows in the other order and subset."""
    rows = []
    for (variant, kind), per_seed in accuracy.items():
        for seed, values in enumerate(per_seed):
            for i, level in enumerate(levels):
                for subset, order in (("all", "degrade_first"), ("class", "degrade_first"),
                                      ("all", "normalize_first")):
                    junk = (subset, order) != ("all", "degrade_first")
                    rows.append({"variant": variant, "seed": seed, "kind": kind, "level": level,
                                 "subset": subset, "order": order,
                                 "accuracy": 0.99 if junk else values[i], "confidence": 0.5,
                                 "nmi": 0.5 if junk else nmi[kind][i], "n": 100})
    return pd.DataFrame(rows)


def _known_information() -> pd.DataFrame:
    # Clean accuracy 0.9 (baseline's); blur keeps it while NMI falls to 0.2; diffusion falls to
    # chance at NMI 0.25; at diffusion d = 0.5 the baseline's seeds give 0.4 and 0.6 (mean 0.5,
    # above IM's 0.3); mosaic goes above clean (clipped to 1) and below chance (clipped to 0).
    return _info_sweeps(
        {("baseline", "blur"): [[0.9, 0.9, 0.9], [0.9, 0.9, 0.9]],
         ("im", "blur"): [[0.8, 0.7, 0.7], [0.8, 0.7, 0.7]],
         ("baseline", "diffusion"): [[0.9, 0.4, 0.1], [0.9, 0.6, 0.1]],
         ("im", "diffusion"): [[0.8, 0.3, 0.1], [0.8, 0.3, 0.1]],
         ("baseline", "mosaic"): [[0.9, 0.95, 0.05], [0.9, 0.95, 0.05]],
         ("im", "mosaic"): [[0.8, 0.5, 0.02], [0.8, 0.5, 0.02]]},
        {"blur": [1.0, 0.3, 0.2], "diffusion": [1.0, 0.26, 0.25], "mosaic": [1.0, 0.7, 0.0]})


def test_class_information_scales_the_best_variant_mean_from_chance_to_clean():
    from imlib.class_information import class_information

    info = class_information(_known_information(), K_INFO).set_index(["kind", "level"])
    chance, clean = 1 / K_INFO, 0.9
    assert info["clean_accuracy"].eq(clean).all() and info["chance"].eq(chance).all()
    # Blur: accuracy stays at clean while NMI falls: class information 1 at NMI 0.2.
    assert info.loc[("blur", 1.0), "nmi"] == pytest.approx(0.2)
    assert info.loc[("blur", 1.0), "class_information"] == pytest.approx(1.0)
    # Diffusion at d = 0.5: the baseline's mean over seeds, 0.5, not its best seed.
    assert info.loc[("diffusion", 0.5), "best_variant"] == "baseline"
    assert info.loc[("diffusion", 0.5), "best_accuracy"] == pytest.approx(0.5)
    assert info.loc[("diffusion", 0.5), "class_information"] == pytest.approx(
        (0.5 - chance) / (clean - chance))
    assert info.loc[("diffusion", 1.0), "class_information"] == pytest.approx(0.0)
    assert info.loc[("mosaic", 0.5), "class_information"] == 1.0  # 0.95 > clean: clipped
    assert info.loc[("mosaic", 1.0), "class_information"] == 0.0  # below chance: clipped
    assert info.loc[("mosaic", 1.0), "best_variant"] == "baseline"


def test_class_information_refuses_sweeps_without_clean_level_or_learning():
    from imlib.class_information import class_information

    sweeps = _known_information()
    with pytest.raises(ValueError, match="level-0"):
        class_information(sweeps[sweeps["level"] > 0], K_INFO)
    with pytest.raises(ValueError, match="not above chance"):
        class_information(sweeps.assign(accuracy=0.05), K_INFO)


def test_miscount_and_summary_say_where_nmi_under_and_over_counts():
    from imlib.class_information import class_information, class_information_summary, nmi_miscount

    sweeps = _known_information()
    info = class_information(sweeps, K_INFO)
    read = nmi_miscount(info, margin=0.2).set_index(["kind", "level"])["reading"]
    assert read[("blur", 0.5)] == read[("blur", 1.0)] == "under-counts"  # CI 1 vs NMI 0.3, 0.2
    assert read[("diffusion", 0.5)] == "under-counts"  # CI 0.5 vs NMI 0.26
    assert read[("diffusion", 1.0)] == "over-counts"  # CI 0 vs NMI 0.25
    assert read[("mosaic", 1.0)] == read[("blur", 0.0)] == "agrees"
    wider = nmi_miscount(info, margin=0.25).set_index(["kind", "level"])["reading"]
    assert wider[("diffusion", 0.5)] == "agrees"
    text = class_information_summary(info, sweeps, max_eps=0.9, spread="others",
                                     num_classes=K_INFO, margin=0.2)
    lines = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("- `")}
    assert "**under-counts** at d = 0.5–1 " in lines["blur"] and "over" not in lines["blur"]
    assert "**under-counts** at d = 0.5 (" in lines["diffusion"]
    assert "**over-counts** at d = 1 (" in lines["diffusion"]
    assert "agrees within 0.2 at d = 1 (" in lines["mosaic"]
    # Where NMI under-counts (blur 0.5, 1; diffusion 0.5; mosaic 0.5) IM's target is
    # 1 - clamp(1 - NMI, 0, 0.9) at NMI 0.3, 0.2, 0.26, 0.7; the best accuracies there are
    # 0.9, 0.9, 0.5, 0.95 and IM's own 0.7, 0.7, 0.3, 0.5, at confidence 0.5.
    target = np.mean([1 - min(max(1 - n, 0), 0.9) for n in (0.3, 0.2, 0.26, 0.7)])
    under = text.split("Where NMI under-counts it")[1].split("\n")[0]
    assert under.startswith(f" (4 conditions), IM is taught to be about {100 * target:.0f} % sure")
    assert "classifies 81 % right" in under and "true class 50 %, at an accuracy of 55 %" in under
    over = text.split("Where NMI over-counts it")[1]
    assert over.startswith(" (1 conditions), IM is taught to be about 25 % sure")
    assert "classifies 10 % right" in over


def test_the_evaluation_class_rule_picks_the_class_of_median_accuracy():
    accuracy = {0: 0.9, 1: 0.5, 2: 0.7, 3: 0.3, 4: 1.0}
    rows = [{"variant": "im", "seed": 0, "label": label, "clean_correct": int(i < 10 * a)}
            for label, a in accuracy.items() for i in range(10)]
    per_image = pd.DataFrame(rows)
    assert median_accuracy_class(per_image) == 2  # 0.3, 0.5, [0.7], 0.9, 1.0
    # 0.3, 0.5, [0.7], 0.9: the more accurate of the two middle classes
    assert median_accuracy_class(per_image[per_image["label"] != 4]) == 2
    note = eval_class_note(per_image, 4, [f"c{k}" for k in range(5)])
    assert "rank 1 of 5" in note and "median accuracy is 2 (`c2`" in note
    assert eval_class_note(per_image, 2, [f"c{k}" for k in range(5)]).endswith(
        "It is the class of median accuracy.")


def test_claim_figure_reading_places_each_variant_against_im_s_line():
    from imlib.class_information import claim_figure_reading

    # Mosaic at NMI 1, 0.5, 0: IM's target 1, 0.5, 0.1. The baseline stays at 100 % on degraded
    # images (above the line) but gives clean images 60 % at 90 % accuracy; IM sits on its line
    # and gives clean images 50 %.
    confidence = {"baseline": [0.6, 1.0, 1.0], "im": [0.5, 0.5, 0.1]}
    rows = [{"variant": v, "seed": 0, "kind": "mosaic", "level": d, "subset": "all",
             "order": "degrade_first", "accuracy": 0.9, "confidence": c, "nmi": n, "n": 100}
            for v, cs in confidence.items()
            for d, n, c in zip((0.0, 0.5, 1.0), (1.0, 0.5, 0.0), cs, strict=True)]
    draws = _draws({"mosaic": [(0.1, 1.0), (0.3, 0.95), (0.5, 0.5), (0.7, 0.2), (0.9, 0.0)]})
    text = claim_figure_reading(pd.DataFrame(rows), draws, num_classes=10, max_eps=0.9,
                                spread="others")
    assert "over the 2 degraded conditions" in text
    assert "- Baseline: above the line at 2, on it at 0, below at 0" in text
    assert "- IM: above the line at 0, on it at 2, below at 0" in text
    assert ("Every variant is under-confident there, mean true-class confidence below accuracy "
            "(Baseline 60 % at 90 %, IM 50 % at 90 %)") in text
    # 2 of 5 draws keep NMI > 0.9, 1 is unchanged; IM's targets average (1+.95+.5+.2+.1)/5.
    assert "only 40 % keep NMI > 0.9 and 20 % come out unchanged" in text
    assert f"puts {100 * (1 + 0.95 + 0.5 + 0.2 + 0.1) / 5:.0f} % on the true class" in text
    assert "the baseline sits above IM's line at 2 of 2 degraded conditions and IM at 0" in text
    assert "IM's targets move confidence further from accuracy" in text


def test_training_draws_summary_counts_what_training_feeds_the_models():
    from imlib.class_information import training_draws_summary

    draws = _draws({"mosaic": [(0.1, 1.0), (0.6, 0.05)], "blur": [(0.5, 0.2), (0.95, 0.92)]})
    text = training_draws_summary(draws, max_eps=0.9)
    assert "Of 4 training draws, 0 have d = 0: d spans 0.10–0.95 (mean 0.54)" in text
    assert "kinds `mosaic` 50 %, `blur` 50 %" in text
    assert "Only 50 % keep NMI > 0.9 (look nearly clean), 25 % come out unchanged" in text
    assert "25 % at the 0.9 clamp" in text  # NMI 0.05: eps cut to 0.9
    assert f"averages {100 * (1 + 0.1 + 0.2 + 0.92) / 4:.0f} %" in text


@pytest.mark.parametrize("bins", [32, 64])
def test_degradation_settings_effect_uses_the_runs_bins_and_both_sets_of_constants(bins):
    """Blur is deterministic: each cell is the mean NMI of the images blurred directly."""
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)  # some structure to blur away
    table = degradation_settings_effect(x, bins)
    for settings, config in (("train", TRAIN), ("paper_eval", PAPER_EVAL)):
        expected = float(nmi(x, degrade(x, "blur", 0.5, config=config), bins=bins).mean())
        assert table.loc[("blur", 0.5), settings] == pytest.approx(expected, abs=1e-6)


def test_readings_across_data_sets_say_which_hold_everywhere():
    from imlib.class_information import class_information, lesson_across, readings_across

    first = class_information(_known_information(), K_INFO)
    # A second data set where blur loses the class as fast as its pixels: NMI agrees there.
    second = first.copy()
    blur = second["kind"] == "blur"
    second.loc[blur, "class_information"] = second.loc[blur, "nmi"]
    table = readings_across({"a": first, "b": second}, margin=0.2)
    # _known_information: blur under-counts at d 0.5 and 1; diffusion under at 0.5, over at 1
    assert table.loc["blur", "a"] == "under-counts at d 0.5–1"
    assert table.loc["blur", "b"] == "agrees within 0.2"
    assert table.loc["diffusion", "a"] == table.loc["diffusion", "b"] == (
        "under-counts at d 0.5; over-counts at d 1")
    lines = {line.split("`")[1] + " " + line.split("NMI ")[1].split(" ")[0]: line
             for line in lesson_across({"a": first, "b": second}, margin=0.2).splitlines()
             if line.startswith("- `")}
    assert lines["blur under-counts"].endswith("on a only (not on b).")
    assert lines["diffusion over-counts"].endswith("on every data set here.")
    with pytest.raises(ValueError, match="information must map"):
        readings_across({})


def test_saved_information_leaves_out_profiles_without_a_whole_current_evaluation(tmp_path,
                                                                                 monkeypatch):
    from imlib import class_information as module
    from imlib import study

    # A profile of its own, pointing at an empty runs folder: nothing saved, nothing compared.
    (tmp_path / "lonely.yaml").write_text(
        (study.PROFILES_DIR / "smoke.yaml").read_text().replace("profile: smoke", "profile: lonely")
        .replace("runs/smoke", str(tmp_path / "runs")).replace("paper_figures/smoke",
                                                               str(tmp_path / "figures")))
    monkeypatch.setattr(study, "PROFILES_DIR", tmp_path)
    assert module.saved_information(["lonely"]) == {}
