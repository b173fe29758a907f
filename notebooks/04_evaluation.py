# %% [markdown]
# # 04 · Evaluating the variants
#
# Notebook 03 trained one model per variant and seed. Here each one is measured on what the
# paper reports, and the numbers are saved for the figures of notebook 05:
#
# 1. **clean metrics** on the test split, the columns of the paper's Table 1: top-1 and top-5
#    accuracy, ECE, cross-entropy loss, plus the Brier score and the ECE exactly as the paper's
#    evaluation script computed it;
# 2. **degradation sweeps**: every test image degraded by each of the four kinds at each level
#    d ∈ {0, 0.1, …, 1}, and per condition the accuracy, the mean confidence given to the true
#    class, and the mean NMI(clean, degraded), over the whole test split and over the images of
#    one class (apple, class 0, in CIFAR-100: the paper's Figs. 3–5);
# 3. **reliability**: accuracy per confidence bin, clean and under mosaic at d = 0.5.
#
# From the sweeps it also measures what the paper does not: how much of their *class* the
# degraded images still carry, against the NMI that IM smooths by (pixel information against
# class information).
#
# Every model sees the *same* degraded images: the randomness of each condition (diffusion
# noise, dropped patches) is seeded by (kind, level). Nothing is trained here. Each training
# protocol of notebook 03 (`paper`, and `reference-code` when the profile trains it) is
# evaluated on its own; its tables go to `runs/<profile>/eval/<protocol>/` with a `meta.json`
# recording the settings, the profile's parameters, the git commit, library versions and
# device.

# %% tags=["parameters"]
profile = "smoke"  # notebooks/profiles/<profile>.yaml: smoke | cpu | paper
overrides = {}  # any key of the profile, e.g. {"epochs": 3, "device": "cpu"}
interactive = True  # sliders to probe the models; run_all.sh sets False (a static grid)

# %%
import dataclasses

import pandas as pd
from IPython.display import Markdown, display

from imlib.degradations import PAPER_EVAL, TRAIN
from imlib.explorer import explorer, probe_grid, static_view, what_to_notice
from imlib.information_plots import confidence_vs_nmi, nmi_vs_level
from imlib.plots import accuracy_vs_level, reliability_diagram
from imlib.nmi_study import training_draws
from imlib.information_plots import class_information_vs_nmi
from imlib.class_information import (claim_figure_reading, class_information,
                                     class_information_summary)
from imlib.report import calibration_estimators, order_effect
from imlib.results import table1
from imlib.runs import RunFiles, load_model
from imlib.study import load_params
from imlib.study_evaluation import update_evaluation

params = load_params(profile, overrides)
print(params.summary())

# %% [markdown]
# The test split, and the class whose images the paper follows under degradation
# (`params.eval_class`: apple, class 0, in CIFAR-100; on the synthetic set of the smoke profile
# a class the small CNN learns).

# %%
data = params.load_data()
class_name = data.classes[params.eval_class]
n_class = int((data.y_test == params.eval_class).sum())
print(f"{params.training.dataset}: {len(data.y_test)} test images, {data.num_classes} classes; "
      f"class {params.eval_class} ({class_name!r}) has {n_class} of them")

# %% [markdown]
# ## Which degradations the sweeps use
#
# The same four kinds as in training, but not necessarily the same constants. The paper's
# training code blurs with σ up to 50 pixels (kernel capped at 51) and drops 8 × 8 patches;
# its **evaluation script** used σ up to 10 (kernel capped at 11) and 4 × 4 patches. imlib
# keeps both: `TRAIN` and `PAPER_EVAL`. The profile's `eval_degradation` picks one
# (`paper_eval` by default, to compare with the paper's figures; `train` to evaluate on exactly
# the distribution the models were trained on). Diffusion and mosaic are the same in both.

# %%
constants = pd.DataFrame({"TRAIN": dataclasses.asdict(TRAIN),
                          "PAPER_EVAL": dataclasses.asdict(PAPER_EVAL)}).drop(index="kinds")
constants["differs"] = constants["TRAIN"] != constants["PAPER_EVAL"]
print(f"this study evaluates with eval_degradation = {params.eval_degradation!r}")
constants

# %% [markdown]
# ## Evaluate every model
#
# `update_evaluation` first checks that every run of the protocol is finished, was trained
# with the settings this profile asks for and holds its own checkpoint (a run killed half-way,
# trained with other options, or a `best.pt` copied from another run's folder stops the
# notebook with the run's folder and the command that fixes it). Then, for each run whose
# evaluation is not saved yet, or was made from another checkpoint or with other settings, it
# loads its `best.pt` (the epoch selected in notebook 03), computes its clean metrics, runs the
# 4 kinds × 11 levels sweep (in each evaluation order, see below; blur and mosaic give the same
# numbers in both, so they are computed once) and the two reliability tables. The rows of the
# runs already evaluated are read back from the saved files: after `./run_all.sh` this cell
# takes seconds, and one line per protocol says what was reused and what was evaluated, and
# why. The tables go to one folder per protocol (`params.eval_dir(protocol)`), with the
# settings of the runs evaluated in `meta.json`; a new evaluation is written beside the old one
# and replaces it only once whole.

# %%
results = {protocol: update_evaluation(params, protocol, data) for protocol in params.protocols}

# %% [markdown]
# ## Table 1: the clean test split
#
# One row per protocol and variant, the mean ± standard deviation over seeds when the profile
# trains several (a single value with one seed). The columns:
#
# - **Top-1 / Top-5 Acc (%)**: how often the true class is the most probable one, or among the
#   five most probable ones (top-5 only when there are more than 10 classes).
# - **ECE**, the expected calibration error as the literature uses it (Guo et al. 2017):
#   sort the test images by their top-1 confidence into 15 equal-width bins, and average
#   |accuracy − mean confidence| over the bins, each weighted by its share of the images. 0
#   means that among the predictions made with confidence 0.8, 80 % are right, and so on. It
#   equals torchmetrics' `multiclass_calibration_error` (checked in the tests).
# - **CE Loss**: the mean negative log-probability of the true class (NLL, nats), the
#   paper's "cross-entropy loss"; it rewards being right *and* punishes confident mistakes.
# - **Brier**: the mean squared distance between the predicted distribution and the one-hot
#   label (0 is perfect, 2 the worst); another proper score, less harsh on confident
#   mistakes than the NLL.
# - **ECE (paper script)**: the estimator of the paper's evaluation script, explained below,
#   which is what the paper's ECE column reports.

# %%
pd.concat({protocol: table1(r.clean, data.num_classes) for protocol, r in results.items()}, names=["protocol"])

# %% [markdown]
# ### Why the paper script's ECE reads high
#
# The paper's script (`compute_ece` in its `evaluate.py`, the name before commit 24d6b7c;
# `scripts/evaluate_models.py` since) walks the test set in batches of 100
# images and, for every batch and each of its 10 bins that holds any image, records one cell
# |accuracy − confidence|; the estimate is the **unweighted** mean over all those cells. With
# 100 images in 10 bins many cells hold one or two images, and a cell with one image has a gap
# of |0 or 1 − its confidence|, large whatever the model. These tiny cells count as much as
# full ones, so the estimate stays far from 0 even for a perfectly calibrated model, and it
# changes with the batch size and the order of the test set. It is not the ECE of the
# literature, and its numbers cannot be compared with it.
#
# A model that is calibrated **by construction** shows it: 10,000 random predictions over 100
# classes (CIFAR-100's test set size), each label drawn from the prediction itself
# (`calibrated`), and the same predictions sharpened (`overconfident`: a real calibration
# error).

# %%
estimators = calibration_estimators(n=10_000, num_classes=100).set_index("predictions")
estimators.round(4)

# %%
calibrated = estimators.loc["calibrated"]
Markdown(f"On the calibrated predictions the standard ECE reads {calibrated['ece']:.3f}, close "
         f"to 0 as it should; the paper-script estimator reads {calibrated['ece_paper_script']:.3f}"
         ", a calibration error that is not there, about the size of the paper's whole ECE "
         "column (0.11 to 0.17). On the overconfident predictions both see the real error. "
         "These are random predictions of known calibration, not the trained models: whether "
         "the script's estimator ranks this run's models as the standard ECE does is read in "
         "notebook 05. So compare the `ECE (paper script)` column with the paper's ECE column "
         "(like for like), and the `ECE` column with the rest of the literature. The `reference-code` rows choose "
         "each run's best epoch on the test set itself, as the paper did, so their test numbers "
         "are slightly optimistic.")

# %% [markdown]
# ## Degradation sweeps
#
# One row per variant, seed, kind, level, subset (`all`: the whole test split; `class`: the
# images of class `class_name`; `image <i>`: each of its first five test images, followed one by
# one as in the paper's Fig. 3) and evaluation order, with the accuracy, the mean true-class
# confidence and the mean NMI between each clean image and its degraded copy. The protocols'
# tables stacked, with a `protocol` column in front:

# %%
all_orders = pd.concat({p: r.sweeps for p, r in results.items()}, names=["protocol", None])
all_orders = all_orders.reset_index(level=0)
all_orders.head(8).round(3)

# %% [markdown]
# ### Degrade, then normalise: the evaluation order
#
# Training degrades images in [0, 1] and normalises the result (subtracts the data set's mean
# colour, divides by its std). The paper's evaluation script did it the other way round: it
# normalised first and degraded the normalised tensor. For blur and mosaic (weighted averages
# of pixels) the order does not matter. For diffusion it does, because its last step clamps to
# [0, 1], which on a normalised tensor wipes out every below-average value; and for dropout a
# zeroed patch becomes the mean colour instead of black. The sweep is run both ways
# (`order` column). Mean true-class confidence (%) on the whole test split, over levels and seeds,
# in each order, for the first protocol:

# %%
first_protocol = params.protocols[0]
order_effect(all_orders.query("protocol == @first_protocol")).round(1)

# %% [markdown]
# Blur and mosaic give the same numbers in both orders (their sweep is computed once);
# diffusion and dropout differ. The rest of this notebook, like the figures of notebook 05,
# uses the training order, `degrade_first`: the models are evaluated on the kind of images they
# were trained on.

# %%
sweeps = all_orders.query("order == 'degrade_first'")

# %% [markdown]
# **Accuracy on the whole test split** against the level, one panel per kind, one line per
# variant (mean over seeds). At d = 0 every kind is the identity (up to a blur of σ = 0.01
# pixels), so the lines start at Table 1's top-1. The figures of this notebook show the
# profile's first protocol; notebook 05 writes every protocol's files.

# %%
source = dict(dataset=params.training.dataset, protocol=first_protocol)
shown = results[first_protocol]
accuracy_vs_level(shown.sweeps, num_classes=data.num_classes, class_name=class_name, **source)

# %% [markdown]
# **Confidence in the true class (%) under mosaic, on the images of the class** (the numbers
# of the paper's Figs. 3 and 4). Mosaic replaces each b × b block by its mean colour with
# b = floor(32 (d + 0.001)²) on a 32 × 32 image: b = 1, no change at all, for d < 0.25; 8 × 8
# blocks at d = 0.5; one colour at d = 1.

# %%
mosaic = sweeps.query("kind == 'mosaic' and subset == 'class'").pivot_table(
    index=["protocol", "variant"], columns="level", values="confidence", sort=False)
(100 * mosaic).round(1)

# %% [markdown]
# What to read in it: IM was trained towards a true-class confidence of 1 − eps(NMI) on each
# degraded image, so its row should follow the NMI of the mosaic levels (unchanged while the
# blocks are one pixel, low from d = 0.25 on), while the baseline was trained towards 100 %
# whatever the level. Whether the NMI is the *right* confidence for these images is another
# question, which the class-information section below measures. How clearly a run shows any
# of this depends on how well it is trained. One number per variant and kind, the confidence (%)
# averaged over the 11 levels (the paper's summary of Fig. 5):

# %%
(100 * sweeps.query("subset == 'class'").pivot_table(
    index=["protocol", "variant"], columns="kind", values="confidence", aggfunc="mean",
    sort=False)).round(1)

# %% [markdown]
# **How much information each degradation leaves.** NMI does not depend on the model (every
# model sees the same degraded images), so one line per kind. The right axis reads it as the
# smoothing IM would give such an image, eps = 1 − NMI.

# %%
nmi_vs_level(shown.sweeps, shown.eval_settings, dataset=params.training.dataset)

# %% [markdown]
# ## IM's claim: confidence follows the information left
#
# IM trains a degraded image towards confidence 1 − eps in its true class, with eps =
# clamp(1 − NMI, 0, 0.9): the paper's claim is that a model that learned these targets reports
# the information its input kept. Every (kind, level) condition of the sweep is one point per
# variant: mean NMI of the degraded images against the mean true-class confidence the model gives them. The black line
# is IM's target; the baseline's target is 100 % everywhere, LS's 1 − eps + eps / K.

# %%
confidence_vs_nmi(shown.sweeps, shown.eval_settings, num_classes=data.num_classes, **source)

# %% [markdown]
# What to notice: diffusion noise removes most of the information by d = 0.1 already; mosaic
# keeps all of it below d = 0.25 (blocks of one pixel) and loses most of it at once when the
# blocks reach 2 × 2; dropout loses it gradually, about in proportion to the patches dropped.
# With the `paper_eval` constants blur stops changing after the first levels: the kernel is
# capped at 11 pixels, so beyond σ ≈ 3 a larger σ barely changes the (truncated) kernel.
# The accuracy panels above show the same plateau.
#
# **What the figure shows**, read from its numbers. IM's own training draws (made as its
# training makes them, `imlib.nmi_study.training_draws`) say how often a training image looks
# nearly clean:

# %%
draws = training_draws(params.train_config(first_protocol, "im", params.seeds[0]))
Markdown(claim_figure_reading(shown.sweeps, draws, num_classes=data.num_classes,
                              max_eps=shown.eval_settings.max_eps,
                              spread=shown.eval_settings.spread))

# %% [markdown]
# ## Pixel information against class information
#
# IM treats NMI, the share of an image's *pixel* information that survived, as the share of
# its *class* that survived. The sweeps can measure the second directly: for each kind and
# level, the best accuracy any variant reaches (mean over its seeds), scaled from chance = 0
# to the best clean accuracy = 1 (`imlib.report.class_information`; clipped to [0, 1]). Where a
# model still recognises degraded images, their class is still in them, whatever their NMI.
# Per protocol, NMI and class information, per kind (rows) and level (columns):

# %%
information = {p: class_information(r.sweeps, data.num_classes) for p, r in results.items()}
pd.concat({(p, q): t.pivot(index="kind", columns="level", values=q)
           for p, t in information.items() for q in ("nmi", "class_information")},
          names=["protocol", "quantity"]).round(2)

# %% [markdown]
# The same as a figure: each kind's levels as a line, NMI across, class information up. On the
# diagonal NMI would count class information exactly; IM's target follows the diagonal down to
# its clamp.

# %%
class_information_vs_nmi(information[first_protocol], shown.eval_settings, **source)

# %% [markdown]
# What it shows, in numbers, for each protocol:

# %%
for protocol, r in results.items():
    display(Markdown(f"**{protocol} protocol**\n\n" + class_information_summary(
        information[protocol], r.sweeps, max_eps=r.eval_settings.max_eps,
        spread=r.eval_settings.spread, num_classes=data.num_classes)))

# %% [markdown]
# Notebook 05 saves this figure as `class_information_vs_nmi.png`; notebook 06 draws the
# conclusion.
#
# ## Reliability diagrams
#
# For each variant (seeds pooled): the test images binned by their top-1 confidence (15 bins),
# the accuracy in each bin as a bar, and the gap to the bin's mean confidence hatched. A
# calibrated model's bars reach the diagonal; bars below it mean over-confidence (the model is
# right less often than it claims), bars above it under-confidence. The title gives the ECE of
# the pooled bins.

# %%
reliability_diagram(shown.reliability, "clean", **source)

# %% [markdown]
# The same under mosaic at d = 0.5 (8 × 8 blocks: a 4 × 4 grid of colours), where NMI is low
# but, the class-information section shows, much of the class may remain. Compare each
# variant's bars with its clean diagram: IM's soft targets ask for lower confidence on such
# images, hard labels for full confidence; whether that leaves a model over- or
# under-confident depends on how accurate it still is here.

# %%
reliability_diagram(shown.reliability, "mosaic_0.5", **source)

# %% [markdown]
# ## Probe the models yourself
#
# The author's `evaluate_model_sliders.py` (deleted from the repository in commit e450d49)
# has no widgets: it sweeps 5 images over 100 levels and saves the curves as PNG files. Here a
# reader can ask the same of one image at a time, interactively. Each variant's model (first
# seed, first protocol) judges one test image of the evaluation class, degraded with the
# training constants as IM's targets are, with the runs' own NMI bins, eps clamp and spread.
# First a static grid, which a saved notebook shows even without a kernel: the image under
# each kind at a low and a high level, the target beside each model's prediction.

# %%
models = {run.variant: load_model(RunFiles(run.dir).best, params.training.device)[0]
          for run in params.runs(first_protocol) if run.seed == params.seeds[0]}
runs_settings = dict(bins=shown.eval_settings.nmi_bins, max_eps=shown.eval_settings.max_eps,
                     spread=shown.eval_settings.spread)
first_of_class = int((data.y_test == params.eval_class).nonzero()[0])
probes = probe_grid(data.x_test, data.y_test, data.classes, first_of_class, **runs_settings,
                    models=models, mean=data.mean, std=data.std)
display(static_view(probes, data.classes, **source),
        Markdown(what_to_notice(probes, data.classes)))

# %% [markdown]
# Then the explorer (in a live kernel): pick a class by name and one of its images, a kind, a
# level d, the histogram bins, IM's clamp and spread and the seed of the noise; it starts on
# the image above under blur at d = 0.5. Run headless (`run_all.sh`) there is no widget, and
# the grid above stands for it.

# %%
if interactive:
    display(explorer(data.x_test, data.y_test, data.classes, models, data.mean, data.std,
                     **runs_settings, index=first_of_class))

# %% [markdown]
# ## CIFAR-100-C: corruptions the models were not trained on
#
# The four degradations above are the ones the models were trained with, so robustness to
# them is partly learned on purpose. CIFAR-100-C (Hendrycks & Dietterich 2019) asks about
# others: the 10,000 test images under 15 common corruptions (noise, blur, weather, digital),
# each at severities 1 (mild) to 5. The paper does not report it; it is an extra check here.
# Some corruptions resemble a training degradation (gaussian and shot noise ~ diffusion,
# defocus blur ~ blur, pixelate ~ mosaic), the others (fog, frost, contrast, JPEG, ...) do not,
# so read the two groups apart.
#
# The data set is a separate 2.9 GB download (`CIFAR-100-C.tar` from
# https://zenodo.org/records/3555552). Set the profile's `cifar100c_dir` to the extracted folder
# (the one holding `gaussian_noise.npy`, ..., `labels.npy`). With `cifar100c_dir: null` (the
# default) or models not trained on CIFAR-100, this section says why and is skipped. A missing
# folder, or a file that is absent, truncated or of the wrong size, stops the notebook with
# the file named. The files are read one corruption and severity at a time, memory-mapped
# (about 30 MB at a time instead of 2.3 GB).

# %%
from imlib.corruptions import corruption_summary, evaluate_corruptions, save_corruptions
from imlib.results import summarize

# %%
cifar100c_dir, skip_reason = params.cifar100c, None
if cifar100c_dir is None:
    skip_reason = "cifar100c_dir is null in this profile"
elif params.training.dataset != "cifar100":
    skip_reason = f"the models were trained on {params.training.dataset!r}, not CIFAR-100"
print(f"skipped: {skip_reason}" if skip_reason else "CIFAR-100-C: every file is checked first")

# %% [markdown]
# Every model (protocol, variant, seed) on the 15 × 5 sets: top-1 accuracy, NLL and ECE (15
# bins) per set, saved as `runs/<profile>/eval/<protocol>/cifar100c/cifar100c.csv`.

# %%
if skip_reason is None:
    corruption = pd.concat({p: evaluate_corruptions(params, p, data, cifar100c_dir)
                            for p in params.protocols}, names=["protocol", None])
    corruption = corruption.reset_index(level=0)
    for protocol, rows in corruption.groupby("protocol"):
        save_corruptions(rows.drop(columns="protocol"), params, protocol)

# %% [markdown]
# **One number per variant**: the mean over the 15 corruptions (each weighted equally, over
# its 5 severities) of accuracy, NLL and ECE, and the mean corruption error `mce` = 100 − mean
# accuracy, in %. Hendrycks & Dietterich also divide each corruption's error by AlexNet's
# before averaging; that is not done here, so compare the variants with one another, not with
# published mCE values. Mean ± std over seeds.

# %%
if skip_reason is None:
    per_model = corruption_summary(corruption, by=["protocol", "variant", "seed"])
    overall = summarize(per_model.query("corruption == 'mean'"), by=["protocol", "variant"],
                        metrics=["accuracy", "mce", "nll", "ece"])
    display(overall.round(4))

# %% [markdown]
# **Per corruption**, the error in % (100 − accuracy, mean over severities and seeds; lower
# is better), for the profile's first protocol. The first rows (noise, blur) and `pixelate`
# are the ones closest to the training degradations.

# %%
if skip_reason is None:
    display(per_model.query("protocol == @first_protocol").pivot_table(
        index="corruption", columns="variant", values="mce", sort=False).round(2))

# %% [markdown]
# **Per severity**: accuracy averaged over the 15 corruptions and the seeds. A variant that
# only gains at mild severities has learned little that survives stronger corruption.

# %%
if skip_reason is None:
    display(corruption.pivot_table(index=["protocol", "variant"], columns="severity",
                                   values="accuracy", sort=False).round(3))

# %% [markdown]
# Everything above is in `runs/<profile>/eval/<protocol>/`: `clean_metrics.csv`, `sweeps.csv`
# (both evaluation orders, column `order`), `reliability.csv`, `meta.json` (settings, the
# checkpoints read, provenance, and each file's size and sha256, so that notebooks 05 and 06 can
# refuse a cut or stale file), and `cifar100c/` when the CIFAR-100-C section ran. Notebook 05 draws the paper's figures from
# these files only.
