# %% [markdown]
# # 05 · The paper's figures and Table 1
#
# This notebook computes nothing: it reads the result files written by notebooks 03
# (training histories) and 04 (clean metrics, sweeps, reliability tables), and the test images
# for the strip of Fig. 3, and draws the paper's items from them, each saved under the paper's
# name into
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
# | `class_information_vs_nmi.png` | (ours) pixel information (NMI) against class information |
#
# Beside each figure we say how it compares with the paper's. **On the smoke profile** (the
# default) the numbers come from a tiny synthetic run (10 classes of generated images, a small
# CNN, a few epochs on a CPU): they show whether a claim's *direction* holds on that data set,
# as notebook 06's verdicts say with their intervals, not what IM does on CIFAR-100. The
# `paper` profile (CIFAR-100, ResNet-18, 100 epochs) produces the numbers to put beside the
# paper's.

# %% tags=["parameters"]
profile = "smoke"  # notebooks/profiles/<profile>.yaml: smoke | cpu | paper
overrides = {}  # any key of the profile, e.g. {"epochs": 3, "device": "cpu"}

# %%
import pandas as pd
from IPython.display import Markdown, display

from imlib.information_plots import class_information_vs_nmi, confidence_vs_nmi
from imlib.plots import (clean_metrics_bars, confidence_heatmap, confidence_kinds_overlaid,
                         confidence_per_kind, confidence_vs_level, reliability_diagram,
                         training_curves)
from imlib.records import write_record
from imlib.histories import load_histories
from imlib.results import load_results, write_table1
from imlib.paper import PAPER_TABLE1
from imlib.class_information import class_information
from imlib.io import project_path
from imlib.study import load_params
from imlib.style import show_and_save

params = load_params(profile, overrides)
print(params.summary())

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
first_protocol = params.protocols[0]
folders = {protocol: params.figures(protocol) for protocol in params.protocols}
histories = {protocol: load_histories(params, protocol) for protocol in params.protocols}
results = {protocol: load_results(params.eval_dir(protocol), params, protocol)
           for protocol in params.protocols}
sweeps = {p: r.sweeps.query("order == 'degrade_first'") for p, r in results.items()}
settings = results[first_protocol].settings
class_name = settings["class_name"]
written = []
print(f"{settings['dataset']}, {settings['n_test']} test images, class {class_name!r}; "
      f"figures into {[project_path(folder) for folder in folders.values()]}")

# %% [markdown]
# Where the results come from: each `meta.json` written by notebook 04 records when and
# where they were computed, with which code.

# %%
pd.DataFrame({p: r.provenance for p, r in results.items()})

# %% [markdown]
# Each figure below is written for every protocol of the profile, into that protocol's folder,
# and shown for the first one, `params.protocols[0]`; a figure that notebook 03 or 04 already
# showed is written without being shown again.
#
# ## Fig. 1 · Training curves
#
# Loss and top-1 accuracy per epoch, one column per split: the degraded training batches, the
# clean test set (the paper's "validation" curves) and, when the runs held one out, the clean
# holdout split. Notebook 03 shows it; here it is only written.

# %%
for protocol, folder in folders.items():
    fig = training_curves(histories[protocol], dataset=settings["dataset"], protocol=protocol)
    written.append(show_and_save(fig, folder / "fig1_training_curves.png", show=False))

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
# The paper's Table 1, as printed: CIFAR-100, one run per variant; its ECE column is the
# estimator of its evaluation script, the `ECE (paper script)` column of ours, not the standard
# ECE (notebook 04 explains the difference). Figures draw these numbers only on CIFAR-100
# profiles; elsewhere this table is the only place they appear.

# %%
pd.DataFrame(PAPER_TABLE1).T.rename_axis("paper")

# %% [markdown]
# Ours is shown in notebook 04 (every protocol, mean ± sd over seeds). Each protocol's table
# is written into its folder as `table1.csv` (numbers: a mean and an sd column per metric,
# accuracies in %) and `table1.md` (the formatted view, captioned with how the best epoch was
# chosen: on the test set under `reference-code`, as the paper did):

# %%
chosen_on = {"test": "the test set, as the paper did", "holdout": "the holdout split",
             "last": "none (last epoch)"}
for protocol, folder in folders.items():
    selection = params.runs(protocol)[0].config.selection
    caption = f"Table 1, {protocol} protocol; best epoch chosen on {chosen_on[selection]}."
    written += write_table1(results[protocol].clean, folder, caption,
                            num_classes=params.num_classes)
print(*(project_path(path) for path in written if path.name.startswith("table1")), sep="\n")

# %% [markdown]
# Compare like for like: top-1, top-5 and CE loss with the paper's columns of the same name,
# and the paper's ECE with `ECE (paper script)`. That estimator stays far from 0 even for a
# model that is perfectly calibrated by construction (notebook 04 measures how far, on random
# predictions of known calibration), about the size of the paper's whole ECE column: its values
# cannot be set beside other work's, for which the `ECE` column (15 bins, Guo et al.) is the
# one. Whether it *ranks* the variants as the standard ECE does is a question for each run:
# below. The `reference-code` protocol chooses its best epoch on the test set, as the paper
# did, which flatters every number of its table a little.

# %%
for protocol, result in results.items():
    means = result.clean.groupby("variant", sort=False)[["ece", "ece_paper_script"]].mean()
    standard = list(means["ece"].sort_values().index)
    script = list(means["ece_paper_script"].sort_values().index)
    display(Markdown(f"`{protocol}`: from best to worst calibrated, the standard ECE ranks "
                     f"{', '.join(standard)}; the script's estimator "
                     + ("the same." if standard == script else f"{', '.join(script)}.")))
#
# ## Fig. 2 · Clean-test-set metrics as bars

# %%
for protocol, folder in folders.items():
    fig = clean_metrics_bars(results[protocol].clean, num_classes=params.num_classes,
                             dataset=settings["dataset"], protocol=protocol)
    written.append(show_and_save(fig, folder / "fig2_clean_metrics.png",
                                 show=protocol == first_protocol))

# %% [markdown]
# The paper's Fig. 2 draws the four numbers of its Table 1 per variant (IM 63.24 / 85.14 /
# 1.57 / 0.14, LS 55.94 / 82.07 / 1.71 / 0.11, baseline 55.43 / 82.35 / 1.83 / 0.17). On a
# CIFAR-100 profile they are marked in black on ours (on another data set they would compare
# nothing: the table above holds them). Ours adds error bars when the profile trains several
# seeds, and its ECE panel uses the paper script's estimator so that the marks compare like
# for like (the standard ECE is in Table 1, notebook 04).
#
# ## Fig. 3 · Confidence vs mosaic level, one class
#
# The paper's composite: on top, the class's first five test images one by one (mosaic at
# d = 0, 0.1, …, 1); below, their mean with a band of ± 1 sd over the five, beside the mean
# over every test image of class `class_name` (apple in CIFAR-100; thin lines: each seed, when
# there are several); at the bottom, the first image itself at a few levels (the test images
# are read for this strip only).

# %%
test_images = params.load_data().x_test
for protocol, folder in folders.items():
    fig = confidence_vs_level(sweeps[protocol], "mosaic", "class", class_name=class_name,
                              num_classes=params.num_classes, dataset=settings["dataset"],
                              protocol=protocol, test_images=test_images,
                              degradation=results[protocol].eval_settings.degradation)
    written.append(show_and_save(fig, folder / f"fig3_confidence_mosaic_{class_name}.png",
                                 show=protocol == first_protocol))

# %% [markdown]
# The paper's Fig. 3 follows five apple images the same way, at finer steps of d (the 100
# levels of the author's `evaluate_model_sliders.py`), with a ± sd band over images around the mean. All its curves are flat below d = 0.25,
# where mosaic changes nothing on a 32 × 32 image (blocks of one pixel), as ours must be.
# There IM starts highest (about 0.47, baseline 0.37, LS 0.28); from d = 0.25 on, IM's
# confidence drops to the lowest of the three (about 0.15, then falling towards 0) while the
# baseline's stays highest: IM lowers its confidence as the NMI falls, which is what its
# targets ask for.
#
# The same on the whole test split, which averages over every class (not saved: the paper
# shows only the class):

# %%
confidence_vs_level(sweeps[first_protocol], "mosaic", "all", class_name=class_name,
                    num_classes=params.num_classes, dataset=settings["dataset"],
                    protocol=first_protocol)

# %% [markdown]
# ## Fig. 4 · Heatmap: variant × mosaic level, one class

# %%
for protocol, folder in folders.items():
    fig = confidence_heatmap(sweeps[protocol], "mosaic", "class", class_name=class_name,
                             dataset=settings["dataset"], protocol=protocol)
    written.append(show_and_save(fig, folder / f"fig4_heatmap_mosaic_{class_name}.png",
                                 show=protocol == first_protocol))

# %% [markdown]
# The paper's Fig. 4 draws one heatmap per model with one row per *image* (five apple images)
# and fine steps of d; ours averages over the images of the class and the seeds, one row per
# variant, with the values written in. Both read the same way: a row that stays bright to the
# right is a model that stays confident on strongly mosaicked images (whether their class is
# still recognisable there, notebook 04's class-information section measures).
#
# ## Fig. 5 · Confidence vs level for each degradation, one class

# %%
for protocol, folder in folders.items():
    fig = confidence_per_kind(sweeps[protocol], "class", class_name=class_name,
                              num_classes=params.num_classes, dataset=settings["dataset"],
                              protocol=protocol)
    written.append(show_and_save(fig, folder / f"fig5_confidence_per_kind_{class_name}.png",
                                 show=protocol == first_protocol))

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
for protocol, folder in folders.items():
    fig = confidence_kinds_overlaid(sweeps[protocol], "im", "class", class_name=class_name,
                                    num_classes=params.num_classes, dataset=settings["dataset"],
                                    protocol=protocol)
    written.append(show_and_save(fig, folder / f"fig5_im_kinds_{class_name}.png",
                                 show=protocol == first_protocol))

# %% [markdown]
# ## IM's claim: confidence against the information left (not in the paper)
#
# The figure the paper's argument asks for: every (kind, level) condition as one point per
# variant, mean NMI(clean, degraded) against the mean true-class confidence on the whole test
# split, with IM's target 1 − eps(NMI) drawn in. Notebook 04 shows and reads it; here it is
# only written.

# %%
for protocol, folder in folders.items():
    fig = confidence_vs_nmi(sweeps[protocol], results[protocol].eval_settings,
                            num_classes=params.num_classes, dataset=settings["dataset"],
                            protocol=protocol)
    written.append(show_and_save(fig, folder / "confidence_vs_nmi.png", show=False))

# %% [markdown]
# ## Pixel information against class information (not in the paper)
#
# Per kind and level, the mean NMI of the degraded test images against the class information
# they still carry (the best accuracy any variant reaches, chance = 0, clean = 1; notebook 04
# measures it and notebook 06 concludes from it), with the diagonal and IM's target.

# %%
for protocol, folder in folders.items():
    information = class_information(results[protocol].sweeps, params.num_classes)
    fig = class_information_vs_nmi(information, results[protocol].eval_settings,
                                   dataset=settings["dataset"], protocol=protocol)
    written.append(show_and_save(fig, folder / "class_information_vs_nmi.png",
                                 show=False))

# %% [markdown]
# ## Reliability diagrams (not in the paper)
#
# Accuracy per top-1 confidence bin, clean and under mosaic at d = 0.5, seeds pooled: shown
# and read in notebook 04, written here.

# %%
for protocol, folder in folders.items():
    for condition in ("clean", "mosaic_0.5"):
        fig = reliability_diagram(results[protocol].reliability, condition,
                                  dataset=settings["dataset"], protocol=protocol)
        written.append(show_and_save(fig, folder / f"reliability_{condition}.png",
                                     show=False))

# %% [markdown]
# ## Files written
#
# Everything this notebook wrote, one folder per protocol, each file replaced whole. Last, each
# folder gets a `meta.json` with the evaluation's settings and every file's size and sha256: a
# run killed before it leaves the previous record, which no longer matches. Rerunning the
# notebook overwrites them; nothing else is written.

# %%
for protocol, folder in folders.items():
    write_record(folder, [p.name for p in written if p.parent == folder],
                 settings=results[protocol].settings)
for path in written:
    print(project_path(path))
