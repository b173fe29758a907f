# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · The paper's figures and Table 1
#
# This notebook computes nothing: it reads the result files written by notebooks 03
# (training histories) and 04 (clean metrics, sweeps, reliability tables) and draws the
# paper's items from them, each saved under the paper's name into
# `paper_figures/<profile>/<protocol>/`:
#
# | file | the paper's item |
# |---|---|
# | `fig1_training_curves.png` | Fig. 1, training curves |
# | `fig2_clean_metrics.png` | Fig. 2, top-1 / top-5 accuracy, CE loss, ECE on the clean test set |
# | `fig3_confidence_mosaic_<class>.png` | Fig. 3, true-class confidence vs mosaic level |
# | `fig4_heatmap_mosaic_<class>.png` | Fig. 4, the same as a heatmap |
# | `fig5_confidence_per_kind_<class>.png` | Fig. 5, confidence vs level for each degradation |
# | `table1.md`, `table1.csv` | Table 1, general metrics on the clean test set |
# | `reliability_clean.png`, `reliability_mosaic_0.5.png` | (ours) reliability diagrams |
#
# Beside each figure we say how it compares with the paper's. **On the smoke profile** (the
# default) the numbers come from a tiny synthetic run (10 classes of generated images, a small
# CNN, a few epochs on a CPU): only the pipeline is demonstrated, and no conclusion about IM
# can be drawn from them. The `paper` profile (CIFAR-100, ResNet-18, 100 epochs) produces the
# numbers to put beside the paper's.

# %% tags=["parameters"]
profile = "smoke"  # notebooks/profiles/<profile>.yaml: smoke | cpu | paper
overrides = {}  # any key of the profile, e.g. {"epochs": 3, "device": "cpu"}

# %%
import json

import pandas as pd
from IPython.display import Markdown, display

from imlib.plots import (clean_metrics_bars, confidence_heatmap, confidence_kinds_overlaid,
                         confidence_per_kind, confidence_vs_level, confidence_vs_nmi,
                         reliability_diagram, training_curves)
from imlib.results import load_histories, load_results, table1, write_table1
from imlib.paper import PAPER_TABLE1
from imlib.study import load_params, project_path
from imlib.style import show_and_save

params = load_params(profile, overrides)
params.settings()

# %% [markdown]
# The saved results of every training protocol of the profile (`paper`: the paper's text;
# `reference-code`: its public code's settings, see notebook 03), and the folder each one's
# figures go to. The sweeps are drawn in the training order (degrade, then normalise; notebook
# 04 shows what the paper script's other order changes). `written` collects every file this
# notebook writes.
#
# Figures and Table 1 come from one set of runs: those the profile asks for, each finished
# and trained with the profile's settings. A run that is not (killed half-way, trained with
# other options, a damaged history) stops the notebook naming it and the fix, and so does an
# evaluation folder whose recorded runs differ from the profile's (then rerun
# `./run_all.sh --only 04_evaluation`).

# %%
studies = {protocol: params.for_protocol(protocol) for protocol in params.protocols}
histories = {protocol: load_histories(study) for protocol, study in studies.items()}
results = {protocol: load_results(study.eval_dir, study) for protocol, study in studies.items()}
sweeps = {p: r.sweeps.query("order == 'degrade_first'") for p, r in results.items()}
settings = results[params.protocol].settings
class_name = settings["class_name"]
written = []
print(f"{settings['dataset']}, {settings['n_test']} test images, class {class_name!r}; "
      f"figures into {[project_path(s.figures) for s in studies.values()]}")

# %% [markdown]
# Where the results come from: each `meta.json` written by notebook 04 records when and
# where they were computed, with which code.

# %%
meta = {p: json.loads((s.eval_dir / "meta.json").read_text()) for p, s in studies.items()}
pd.DataFrame({p: m["provenance"] for p, m in meta.items()})

# %% [markdown]
# ## Fig. 1 · Training curves
#
# Loss and top-1 accuracy per epoch (thick: mean over seeds, thin: each seed), one column per
# split: the degraded training batches (each variant against its own targets), the clean test
# set (the paper's "validation" curves) and, when the runs held one out, the clean holdout split.

# %%
for protocol, study in studies.items():
    fig = training_curves(histories[protocol])
    written.append(show_and_save(fig, study.figures / "fig1_training_curves.png", f"{protocol} protocol"))

# %% [markdown]
# The paper's Fig. 1 (100 epochs of ResNet-18 on CIFAR-100; its "validation" curves are the
# test set) shows the pattern the targets predict: IM has the *highest* training loss (about
# 3.7, against 2.85 for LS and 2.4 for the baseline), since soft targets cannot be fitted to
# zero loss, and the lowest validation loss (about 1.6) with the highest validation accuracy
# (about 63 % against 55 %). The first follows from the targets on any data; whether the
# others hold on this profile's data, the verdicts of notebook 06 say.
#
# ## Table 1 · General metrics on the clean test set
#
# The paper's Table 1, as printed (one run per variant; its ECE column is the estimator of its
# evaluation script, the `ECE (paper script)` column below, not the standard ECE; notebook 04
# explains the difference):

# %%
pd.DataFrame(PAPER_TABLE1).T.rename_axis("paper")

# %% [markdown]
# Ours, mean ± sd over seeds (the value alone with one seed), per protocol; each protocol's
# table is written into its folder as `table1.csv` (numbers: a mean and an sd column per
# metric, accuracies in %) and `table1.md` (the formatted view, captioned with how the best
# epoch was chosen: on the test set under `reference-code`, as the paper did):

# %%
chosen_on = {"test": "the test set, as the paper did", "holdout": "the holdout split",
             "last": "none (last epoch)"}
for protocol, study in studies.items():
    selection = study.runs(protocol)[0].config.selection
    caption = f"Table 1, {protocol} protocol; best epoch chosen on {chosen_on[selection]}."
    written += write_table1(results[protocol].clean, study.figures, caption,
                            num_classes=params.num_classes)
    display(Markdown(f"**{protocol} protocol**"), table1(results[protocol].clean, params.num_classes))

# %% [markdown]
# Compare like for like: top-1, top-5 and CE loss with the paper's columns of the same name,
# and the paper's ECE with `ECE (paper script)`. That estimator stays far from 0 even for a
# model that is perfectly calibrated by construction (notebook 04 measures how far), about the
# size of the paper's whole ECE column, so the paper's ECE differences say little about
# calibration; the
# `ECE` column (15 bins, Guo et al.) is the one to compare with other work. The
# `reference-code` protocol chooses its best epoch on the test set, as the paper did, which
# flatters every number of its table a little.
#
# ## Fig. 2 · Clean-test-set metrics as bars

# %%
for protocol, study in studies.items():
    fig = clean_metrics_bars(results[protocol].clean, num_classes=params.num_classes)
    written.append(show_and_save(fig, study.figures / "fig2_clean_metrics.png", f"{protocol} protocol"))

# %% [markdown]
# The paper's Fig. 2 draws the four numbers of its Table 1 per variant (IM 63.24 / 85.14 /
# 1.57 / 0.14, LS 55.94 / 82.07 / 1.71 / 0.11, baseline 55.43 / 82.35 / 1.83 / 0.17), marked
# in black on ours. Ours adds error bars when the profile trains several seeds, and its ECE
# panel uses the paper script's
# estimator so that the marks compare like for like (the standard ECE is in Table 1 above).
#
# ## Fig. 3 · Confidence vs mosaic level, one class
#
# The mean probability each variant gives to the true class of the test images of class
# `class_name` (apple in CIFAR-100), mosaic at d = 0, 0.1, …, 1 (thin lines: each seed, when
# there are several); above it, as in the paper, the class's first five test images one by one.

# %%
for protocol, study in studies.items():
    fig = confidence_vs_level(sweeps[protocol], "mosaic", "class", class_name=class_name,
                              num_classes=params.num_classes)
    written.append(show_and_save(fig, study.figures / f"fig3_confidence_mosaic_{class_name}.png", f"{protocol} protocol"))

# %% [markdown]
# The paper's Fig. 3 follows five apple images the same way, at finer steps of d (100 levels
# of its slider script), with a ± sd band over images around the mean. All its curves are flat below d = 0.25,
# where mosaic changes nothing on a 32 × 32 image (blocks of one pixel), as ours must be.
# There IM starts highest (about 0.47, baseline 0.37, LS 0.28); from d = 0.25 on, IM's
# confidence drops to the lowest of the three (about 0.15, then falling towards 0) while the
# baseline's stays highest: IM lowers its confidence as the information goes, which is what
# its targets ask for.
#
# The same on the whole test split, which averages over every class (not saved: the paper
# shows only the class):

# %%
confidence_vs_level(sweeps[params.protocol], "mosaic", "all", class_name=class_name,
                    num_classes=params.num_classes)

# %% [markdown]
# ## Fig. 4 · Heatmap: variant × mosaic level, one class

# %%
for protocol, study in studies.items():
    fig = confidence_heatmap(sweeps[protocol], "mosaic", "class", class_name=class_name)
    written.append(show_and_save(fig, study.figures / f"fig4_heatmap_mosaic_{class_name}.png", f"{protocol} protocol"))

# %% [markdown]
# The paper's Fig. 4 draws one heatmap per model with one row per *image* (five apple images)
# and fine steps of d; ours averages over the images of the class and the seeds, one row per
# variant, with the values written in. Both read the same way: a row that stays bright to the
# right is a model that stays confident on images whose content is gone.
#
# ## Fig. 5 · Confidence vs level for each degradation, one class

# %%
for protocol, study in studies.items():
    fig = confidence_per_kind(sweeps[protocol], "class", class_name=class_name,
                              num_classes=params.num_classes)
    written.append(show_and_save(fig, study.figures / f"fig5_confidence_per_kind_{class_name}.png", f"{protocol} protocol"))

# %% [markdown]
# The paper's Fig. 5 shows the IM model only, one line per kind: from about 0.73 at d = 0
# (on a different set of apple images than its Fig. 3, which starts at 0.47), diffusion noise
# takes the confidence to about 0.1 by d = 0.1, dropout to near 0 by d = 0.4, blur levels off
# near 0.19 (the evaluation blur is capped at σ = 10 and an 11-pixel kernel), and mosaic stays
# flat up to d = 0.2 before falling. Ours puts every variant in each kind's panel, so IM's
# curve can be compared with the others' under the same degradation.
#
# The paper's own view of Fig. 5: the IM model alone, the four kinds overlaid.

# %%
for protocol, study in studies.items():
    fig = confidence_kinds_overlaid(sweeps[protocol], "im", "class", class_name=class_name,
                                    num_classes=params.num_classes)
    written.append(show_and_save(fig, study.figures / f"fig5_im_kinds_{class_name}.png", f"{protocol} protocol"))

# %% [markdown]
# ## IM's claim: confidence against the information left (not in the paper)
#
# The figure the paper's argument asks for: every (kind, level) condition as one point per
# variant, mean NMI(clean, degraded) against the mean true-class confidence on the whole test
# split, with IM's target 1 − eps(NMI) drawn in. A model that learned IM's targets sits on the
# line; a model trained on hard labels sits above it wherever the degradation left little.

# %%
for protocol, study in studies.items():
    im_config = study.train_config("im", params.seeds[0])
    fig = confidence_vs_nmi(sweeps[protocol], num_classes=params.num_classes,
                            max_eps=im_config.im_max_eps, spread=im_config.im_spread)
    written.append(show_and_save(fig, study.figures / "confidence_vs_nmi.png", f"{protocol} protocol"))

# %% [markdown]
# ## Reliability diagrams (not in the paper)
#
# Accuracy per top-1 confidence bin, clean and under mosaic at d = 0.5, seeds pooled. The
# paper reports calibration only as one ECE number per model; these show where the
# miscalibration lies (bars below the diagonal: over-confident).

# %%
for protocol, study in studies.items():
    for condition in ("clean", "mosaic_0.5"):
        fig = reliability_diagram(results[protocol].reliability, condition)
        written.append(show_and_save(fig, study.figures / f"reliability_{condition}.png",
                                     f"{protocol} protocol, {condition}"))

# %% [markdown]
# ## Files written
#
# Everything this notebook wrote, one folder per protocol. Rerunning it overwrites them;
# nothing else is written.

# %%
for path in written:
    print(project_path(path))
