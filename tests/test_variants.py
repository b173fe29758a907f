"""imlib.variants and the specs as a whole: each variant's eps against the formula it states,
computed here element by element, and a toy variant and a toy kind registered in this file
alone running a tiny study through training, evaluation, Table 1 and the figures."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from imlib.degradations import KIND_SPECS, KINDS, Kind
from imlib.study_evaluation import evaluate_study
from imlib.information_plots import confidence_vs_nmi
from imlib.plots import clean_metrics_bars, confidence_per_kind
from imlib.results import eval_settings, table1
from imlib.runs import TrainConfig
from imlib.study import load_params, pinned
from imlib.style import KIND_COLORS, VARIANT_COLORS
from imlib.train import prepare, train, training_batch
from imlib.variants import LEVEL_BINS, VARIANT_SPECS, VARIANTS, BatchDraws, Variant

N = 64
CONFIG = TrainConfig(ls_eps=0.2, im_max_eps=0.8)


@pytest.fixture
def draws() -> BatchDraws:
    g = torch.Generator().manual_seed(5)
    return BatchDraws(labels=torch.randint(10, (N,), generator=g),
                      kinds=torch.randint(len(KINDS), (N,), generator=g),
                      levels=torch.rand(N, generator=g), nmi=torch.rand(N, generator=g),
                      generator=torch.Generator().manual_seed(6))


@pytest.mark.parametrize("variant, formula", [
    ("baseline", lambda nmi, d: 0.0),
    ("clean", lambda nmi, d: 0.0),
    ("ls", lambda nmi, d: 0.2),
    ("im", lambda nmi, d: min(max(1 - nmi, 0.0), 0.8)),
    ("level", lambda nmi, d: min(d, 0.8)),
])
def test_each_variant_smooths_by_its_stated_formula(draws, variant, formula):
    eps = VARIANT_SPECS[variant].eps(CONFIG, draws)
    expected = [formula(v, d) for v, d in zip(draws.nmi.tolist(), draws.levels.tolist(),
                                              strict=True)]
    torch.testing.assert_close(eps.double(), torch.tensor(expected, dtype=torch.float64),
                               rtol=0, atol=1e-6)


def test_binned_im_permutes_ims_eps_within_each_kind_and_level_bin(draws):
    eps = VARIANT_SPECS["im-binned"].eps(CONFIG, draws)
    im = VARIANT_SPECS["im"].eps(CONFIG, draws)
    bins: dict[tuple[int, int], list[int]] = {}
    for i, (kind, level) in enumerate(zip(draws.kinds.tolist(), draws.levels.tolist(),
                                          strict=True)):
        bins.setdefault((kind, min(int(level * LEVEL_BINS), LEVEL_BINS - 1)), []).append(i)
    for members in bins.values():  # the same values in every bin, so the same mean per bin
        assert sorted(eps[members].tolist()) == sorted(im[members].tolist())
    assert not torch.equal(eps, im)  # and the per-image pairing is gone


def test_variants_that_read_no_degradation_cannot_be_told_to_need_one():
    with pytest.raises(ValueError, match="must degrade"):
        Variant("broken", "Broken", "#000000", lambda c, d: d.levels, needs="level",
                degrades=False)
    with pytest.raises(ValueError, match="needs must be one of"):
        Variant("broken", "Broken", "#000000", lambda c, d: d.levels, needs="kind")


def test_the_clean_reference_trains_on_undegraded_images(tmp_path):
    config = TrainConfig(synthetic_per_class=8, synthetic_classes=3, variant="clean",
                         device="cpu", out_dir=str(tmp_path))
    run = prepare(config)
    batch = training_batch(run, torch.arange(12))
    assert batch.kinds is None and torch.equal(batch.degraded, batch.clean)
    assert torch.equal(batch.targets.argmax(1), batch.labels) and (batch.targets.max(1).values
                                                                  == 1).all()


def test_every_variant_has_its_reference_code_pins_and_distinct_colours():
    assert {pinned(v)["lr"] for v in VARIANTS} <= {1e-3, 5e-4}
    colours = [VARIANT_COLORS[v] for v in VARIANTS] + [KIND_COLORS[k] for k in KINDS]
    assert len(set(colours)) == len(colours)


# --- a toy variant and a toy kind, registered here alone ----------------------------------------


def _fade(x, level, active, generator, config):
    """Blend towards mid-grey by the level: a kind no module knows."""
    faded = x * (1 - level.view(-1, 1, 1, 1)) + 0.5 * level.view(-1, 1, 1, 1)
    return torch.where(active.view(-1, 1, 1, 1), faded, x)


TOY_KIND = Kind("fade", "Fade to grey", "#117733", "P", apply=_fade, stage=3)
TOY_VARIANT = Variant("half-im", "Half IM", "#000000",
                      lambda config, draws: (0.5 * (1 - draws.nmi)).clamp(0, config.im_max_eps),
                      needs="nmi", reference_code={"lr": 5e-4, "base_augment": False})


def test_a_toy_variant_and_kind_run_through_training_evaluation_table1_and_figures(tmp_path):
    with KIND_SPECS.registered(TOY_KIND), VARIANT_SPECS.registered(TOY_VARIANT):
        params = load_params("smoke", {
            "runs_dir": str(tmp_path / "runs"), "variants": ["baseline", "half-im"],
            "ablations": [],
            "seeds": [0], "protocols": ["paper"], "synthetic_per_class": 8,
            "synthetic_classes": 3, "epochs": 1, "device": "cpu",
            "degrade_kinds": ["blur", "fade"]})
        for run in params.runs():
            history = train(run.config).history
            if run.variant == "half-im":  # eps = (1 - NMI) / 2 > 0 on degraded images
                assert 0 < history[0]["mean_eps"] < 0.5
        data = params.load_data()
        settings = dataclasses.replace(eval_settings(params, "paper"), levels=(0.0, 0.5, 1.0))
        results = evaluate_study(params, "paper", data, settings)
        assert "fade" in set(results.sweeps["kind"])
        faded = results.sweeps[(results.sweeps["kind"] == "fade") & (results.sweeps["level"] == 1)]
        assert (faded["nmi"] < 0.05).all()  # a uniform grey image keeps no information
        table = table1(results.clean, num_classes=3)
        assert list(table["Model"]) == ["Baseline", "Half IM"]
        fig = confidence_per_kind(results.sweeps, num_classes=3, dataset="synthetic",
                                  protocol="paper")
        titles = [ax.get_title() for ax in fig.axes]
        assert "Fade to grey" in titles
        fig = confidence_vs_nmi(results.sweeps, settings, num_classes=3, dataset="synthetic",
                                protocol="paper")
        assert fig.axes[1].get_title() == "Half IM"
        bars = clean_metrics_bars(results.clean, num_classes=3, dataset="synthetic",
                                  protocol="paper")
        colours = {pd.Series(p.get_facecolor()).round(3).tolist().__str__()
                   for ax in bars.axes for p in ax.patches}
        assert len(colours) >= 2
    assert "fade" not in KINDS and "half-im" not in VARIANTS  # gone after the block
