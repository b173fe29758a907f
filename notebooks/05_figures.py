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
from IPython.display import display

from imlib.evaluate import load_histories, load_results, table1, table1_markdown
from imlib.plots import (clean_metrics_bars, confidence_heatmap, confidence_per_kind,
                         confidence_vs_level, reliability_diagram, save_figure,
                         training_curves)
from imlib.study import load_params

params = load_params(profile, overrides)
params

# %% [markdown]
# The saved results of every training protocol of the profile (`paper`: the paper's text;
# `reference-code`: its public code's settings, see notebook 03), and the folder each one's
# figures go to. The sweeps are drawn in the training order (degrade, then normalise; notebook
# 04 shows what the paper script's other order changes). `written` collects every file this
# notebook writes.

# %%
studies = {protocol: params.for_protocol(protocol) for protocol in params.protocols}
results = {protocol: load_results(study.eval_dir) for protocol, study in studies.items()}
histories = {protocol: load_histories(study) for protocol, study in studies.items()}
sweeps = {p: r.sweeps.query("order == 'degrade_first'") for p, r in results.items()}
settings = results[params.protocol].settings
class_name = settings["class_name"]
written = []
print(f"{settings['dataset']}, {settings['n_test']} test images, class {class_name!r}; "
      f"figures into {[str(s.figures) for s in studies.values()]}")

# %% [markdown]
# Where the results come from: each `meta.json` written by notebook 04 records when and
# where they were computed, with which code.

# %%
meta = {p: json.loads((s.eval_dir / "meta.json").read_text()) for p, s in studies.items()}
pd.DataFrame({p: m["provenance"] for p, m in meta.items()})

# %% [markdown]
# ## Fig. 1 · Training curves
#
# Loss and top-1 accuracy per epoch, mean ± sd over seeds: dashed on the degraded training
# batches (each variant against its own targets), solid on the clean held-out split.

# %%
for protocol, study in studies.items():
    fig = training_curves(histories[protocol])
    written.append(save_figure(fig, study.figures / "fig1_training_curves.png"))
    print(f"{protocol} protocol")
    display(fig)

# %% [markdown]
# The paper's Fig. 1 (100 epochs of ResNet-18 on CIFAR-100; its "validation" curves are the
# test set) shows the pattern the targets predict: IM has the *highest* training loss (about
# 3.7, against 2.85 for LS and 2.4 for the baseline), since soft targets cannot be fitted to
# zero loss, and the lowest validation loss (about 1.6) with the highest validation accuracy
# (about 63 % against 55 %). In a smoke run, only the first of these, IM's training loss above
# the others', is expected to show.
#
# ## Table 1 · General metrics on the clean test set
#
# The paper's Table 1, as printed (one run per variant; its ECE column is the estimator of its
# evaluation script, the `ECE (paper script)` column below, not the standard ECE; notebook 04
# explains the difference):

# %%
pd.DataFrame({"Top-1 Acc (%)": [63.24, 55.94, 55.43], "Top-5 Acc (%)": [85.14, 82.07, 82.35],
              "ECE (paper script)": [0.1366, 0.1121, 0.1738],
              "CE Loss": [1.5724, 1.7069, 1.8251]},
             index=pd.Index(["IM", "LS", "Baseline"], name="paper"))

# %% [markdown]
# Ours, mean ± sd over seeds, per protocol; each protocol's table is written as `table1.md`
# (captioned with how its best epoch was chosen: on the test set under `reference-code`, as
# the paper did) and `table1.csv` into its folder:

# %%
for protocol, study in studies.items():
    clean = results[protocol].clean
    selection = study.train_config(params.variants[0], params.seeds[0]).selection
    chosen_on = {"test": "the test set, as the paper did", "holdout": "the holdout split",
                 "last": "none (last epoch)"}[selection]
    caption = f"Table 1, {protocol} protocol; best epoch chosen on {chosen_on}.\n\n"
    (study.figures / "table1.md").write_text(caption + table1_markdown(clean), encoding="utf-8")
    table1(clean).to_csv(study.figures / "table1.csv")
    written += [study.figures / "table1.md", study.figures / "table1.csv"]
    print(f"{protocol} protocol")
    display(table1(clean))

# %% [markdown]
# Compare like for like: top-1, top-5 and CE loss with the paper's columns of the same name,
# and the paper's ECE with `ECE (paper script)`. That estimator reads around 0.12 even for a
# model that is perfectly calibrated by construction (notebook 04), about the size of the
# paper's whole ECE column, so the paper's ECE differences say little about calibration; the
# `ECE` column (15 bins, Guo et al.) is the one to compare with other work. The
# `reference-code` protocol chooses its best epoch on the test set, as the paper did, which
# flatters every number of its table a little.
#
# ## Fig. 2 · Clean-test-set metrics as bars

# %%
for protocol, study in studies.items():
    fig = clean_metrics_bars(results[protocol].clean)
    written.append(save_figure(fig, study.figures / "fig2_clean_metrics.png"))
    print(f"{protocol} protocol")
    display(fig)

# %% [markdown]
# The paper's Fig. 2 draws the four numbers of its Table 1 per variant (IM 63.24 / 85.14 /
# 1.57 / 0.14, LS 55.94 / 82.07 / 1.71 / 0.11, baseline 55.43 / 82.35 / 1.83 / 0.17). Ours
# adds error bars over seeds and, in the ECE panel, uses the standard ECE: its bars are not on
# the paper's scale (see Table 1 above).
#
# ## Fig. 3 · Confidence vs mosaic level, one class
#
# The mean probability each variant gives to the true class of the test images of class
# `class_name` (apple in CIFAR-100), mosaic at d = 0, 0.1, …, 1; band: ± sd over seeds.

# %%
for protocol, study in studies.items():
    fig = confidence_vs_level(sweeps[protocol], "mosaic", "class", class_name=class_name)
    written.append(save_figure(fig, study.figures / f"fig3_confidence_mosaic_{class_name}.png"))
    print(f"{protocol} protocol")
    display(fig)

# %% [markdown]
# The paper's Fig. 3 follows apple images (five of them drawn one by one above the mean) at
# finer steps of d, with a ± sd band over images. All its curves are flat below d = 0.25,
# where mosaic changes nothing on a 32 × 32 image (blocks of one pixel), as ours must be.
# There IM starts highest (about 0.47, baseline 0.37, LS 0.28); from d = 0.25 on, IM's
# confidence drops to the lowest of the three (about 0.15, then falling towards 0) while the
# baseline's stays highest: IM lowers its confidence as the information goes, which is what
# its targets ask for.
#
# The same on the whole test split, which averages over every class (not saved: the paper
# shows only the class):

# %%
confidence_vs_level(sweeps[params.protocol], "mosaic", "all", class_name=class_name)

# %% [markdown]
# ## Fig. 4 · Heatmap: variant × mosaic level, one class

# %%
for protocol, study in studies.items():
    fig = confidence_heatmap(sweeps[protocol], "mosaic", "class", class_name=class_name)
    written.append(save_figure(fig, study.figures / f"fig4_heatmap_mosaic_{class_name}.png"))
    print(f"{protocol} protocol")
    display(fig)

# %% [markdown]
# The paper's Fig. 4 draws one heatmap per model with one row per *image* (five apple images)
# and fine steps of d; ours averages over the images of the class and the seeds, one row per
# variant, with the values written in. Both read the same way: a row that stays bright to the
# right is a model that stays confident on images whose content is gone.
#
# ## Fig. 5 · Confidence vs level for each degradation, one class

# %%
for protocol, study in studies.items():
    fig = confidence_per_kind(sweeps[protocol], "class", class_name=class_name)
    written.append(save_figure(fig, study.figures / f"fig5_confidence_per_kind_{class_name}.png"))
    print(f"{protocol} protocol")
    display(fig)

# %% [markdown]
# The paper's Fig. 5 shows the IM model only, one line per kind: from about 0.73 at d = 0
# (on a different set of apple images than its Fig. 3, which starts at 0.47), diffusion noise
# takes the confidence to about 0.1 by d = 0.1, dropout to near 0 by d = 0.4, blur levels off
# near 0.19 (the evaluation blur is capped at σ = 10 and an 11-pixel kernel), and mosaic stays
# flat up to d = 0.2 before falling. Ours puts every variant in each kind's panel, so IM's
# curve can be compared with the others' under the same degradation.
#
# ## Reliability diagrams (not in the paper)
#
# Accuracy per top-1 confidence bin, clean and under mosaic at d = 0.5, seeds pooled. The
# paper reports calibration only as one ECE number per model; these show where the
# miscalibration lies (bars below the diagonal: over-confident).

# %%
for protocol, study in studies.items():
    for condition in ("clean", "mosaic_0.5"):
        fig = reliability_diagram(results[protocol].reliability, condition)
        written.append(save_figure(fig, study.figures / f"reliability_{condition}.png"))
        print(f"{protocol} protocol")
        display(fig)

# %% [markdown]
# ## Files written
#
# Everything this notebook wrote, one folder per protocol. Rerunning it overwrites them;
# nothing else is written.

# %%
for path in written:
    print(path)
