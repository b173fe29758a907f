# %% [markdown]
# # 03 · Training the variants
#
# The paper trains one network three ways and changes **only the labels**; the companion adds
# three controls of its own (each variant is one spec in `imlib.variants`):
#
# | variant | target for a degraded image |
# |---|---|
# | `baseline` | one-hot, whatever the degradation |
# | `ls` | fixed label smoothing, eps = 0.1 |
# | `im` | Information Matching: eps = 1 − NMI(original, degraded), clamped to [0, 0.9] |
# | `level` | (control) eps = d, the degradation level itself |
# | `im-binned` | (control) IM's eps, shuffled among the batch's images of the same kind and tenth of d |
# | `clean` | (control) one-hot, and no degradation at all |
#
# Every variant runs through one code path (`imlib.train.train`): each step runs on the device
# without a host sync: permuted indices → crop + flip → degrade → NMI → targets → normalise →
# step. Under the `paper` protocol the variants share everything but their targets (the same
# data, crop + flip, degradations and AdamW settings); under `reference-code` they follow the
# public scripts, which differ per variant (below). Runs are resumable: interrupt this notebook
# and run it again, and each run continues from its last epoch (a finished run is reused).

# %% tags=["parameters"]
profile = "smoke"  # notebooks/profiles/<profile>.yaml: smoke | cpu | paper
overrides = {}  # any key of the profile, e.g. {"epochs": 3, "device": "cpu"}

# %%
import math

import pandas as pd
import torch
from IPython.display import Markdown, display

from imlib.io import provenance
from imlib.data import normalize
from imlib.degradations import KINDS, random_degrade
from imlib.labels import soft_cross_entropy, soft_targets, target_entropy
from imlib.launch import train_runs
from imlib.nmi import nmi
from imlib.plots import training_curves, variant_targets
from imlib.report import provenance_note
from imlib.histories import load_histories, run_provenance
from imlib.study import load_params
from imlib.thumbnails import training_batch_grid
from imlib.train import clean_images, prepare, training_batch
from imlib.variants import BatchDraws, variant_smoothing

params = load_params(profile, overrides)

# %% [markdown]
# The settings of every run of this study, in full: one column per training protocol (the
# `reference-code` column lists the values that differ per variant). The other notebooks refer
# to this table.

# %%
with pd.option_context("display.max_colwidth", None):
    display(params.settings())

# %% [markdown]
# ## The data set
#
# What the models learn from, before any training: the classes, what tells them apart, and
# what training does to every image. First a few training images of each class (at most ten
# classes, spread evenly over them):

# %%
from imlib.data import synthetic_cues
from imlib.datasets import DATASET_CARDS, cue_separability
from imlib.nmi_study import training_draws
from imlib.information_plots import training_draws_figure
from imlib.class_information import training_draws_summary
from imlib.thumbnails import class_gallery

data = params.load_data()
class_gallery(data)

# %% [markdown]
# **Where the data comes from** (`imlib.datasets.DATASET_CARDS`): its source, images, split and
# any scaling.

# %%
with pd.option_context("display.max_colwidth", None):  # every line whole, none cut to "..."
    display(pd.Series(DATASET_CARDS[params.training.dataset], name=params.training.dataset)
            .to_frame())

# %% [markdown]
# **What defines a class.** CIFAR-100's classes are what its photographs show, the digits'
# what was written. The synthetic set is generated, and each of its classes is up to two cues,
# read here from the generator itself (`imlib.data.synthetic_cues`): a coarse one, a soft edge
# from `colour_a` to `colour_b` along `edge_direction_deg`, and a fine one, a grating at
# `grating_orientation_deg` with a period of `grating_period_px` pixels; the profile's
# `synthetic_cue` says which of them carry the class (`both`, or `coarse` or `fine` alone: the
# other is then drawn from a random class). Every image jitters its cues, carries a little of
# another class's, and gets random contrast, brightness, pixel noise and a mirror.

# %%
if params.training.dataset == "synthetic":
    display(pd.DataFrame(synthetic_cues(data.num_classes, params.training.synthetic_cue))
            .set_index("class"))

# %% [markdown]
# How much each cue alone tells the classes apart, on any data set (`cue_separability`: the
# test accuracy of a nearest-class-mean classifier on one feature of the images): the mean
# colour, what heavy blur and mosaic leave; a coarse 8 × 8 colour layout; the fine structure
# (the image's high-passed spectrum). Where the class lives decides what each degradation
# removes of it, and so whether NMI, which counts pixels, under- or over-counts it.

# %%
pd.Series(cue_separability(data), name="accuracy").mul(100).round(1).to_frame("accuracy (%)")

# %% [markdown]
# **What training does to every image.** Before a model sees a training image, training crops
# and flips it (where the protocol says so) and degrades it by a random kind at a random level
# d ~ U(0, 1); IM then smooths its label by eps = clamp(1 − NMI, 0, max). A sample of IM's
# training draws, made exactly as training makes its batches (`imlib.nmi_study.training_draws`:
# each protocol's own crop + flip, kinds, NMI bins and clamp), for each protocol:

# %%
for protocol in params.protocols:
    config = params.train_config(protocol, "im", params.seeds[0])
    draws = training_draws(config)
    display(training_draws_figure(draws, config.im_max_eps, dataset=config.dataset,
                                  protocol=protocol),
            Markdown(training_draws_summary(draws, config.im_max_eps)))

# %% [markdown]
# A clean test image therefore resembles only the share of training draws that keep NMI above
# 0.9 (the summary above gives it): the models learn mostly from degraded images. Notebook 04
# comes back to what this does to their confidence on clean images.

# %% [markdown]
# ## One training step, unrolled
#
# Before training anything, one step of the `im` variant by hand, on 16 real training images,
# one stage per cell with the public functions that `imlib.train.training_batch` chains.
# `prepare` builds what a run needs (the data on the device, the untrained model, AdamW, the
# seeded generator) without writing any file. We keep the generator's state: replayed from
# it, `training_batch` must give exactly the tensors built here (checked below). The run is the
# first protocol's, as are the training curves at the end.

# %%
protocol = params.protocols[0]
run = prepare(params.train_config(protocol, "im", params.seeds[0]))
idx = torch.arange(16)
labels, num_classes = run.train.y[idx], run.data.num_classes
start = run.generator.get_state()
print(f"{len(idx)} training images of {num_classes} classes, on {run.device.type}")

# %% [markdown]
# **1 · Crop, flip, degrade.** `clean_images` crops and flips the stored images with the
# run's generator (when the protocol augments) and scales them to [0, 1]; `random_degrade`
# draws for each image one kind uniformly and a level d ~ U(0, 1), and applies it.

# %%
clean = clean_images(run, idx)
degraded, kinds, levels = random_degrade(clean, run.generator, run.degradation)
steps = pd.DataFrame({"class": [run.data.classes[k] for k in labels.tolist()],
                      "kind": [KINDS[k] for k in kinds.tolist()], "d": levels.tolist()})
steps.head(8).round(2)

# %% [markdown]
# **2 · NMI(clean, degraded)** per image, with the run's number of histogram bins:

# %%
nmi_values = nmi(clean, degraded, bins=run.config.nmi_bins)
steps["NMI"] = nmi_values.tolist()
steps.head(8).round(2)

# %% [markdown]
# **3 · Each variant's eps.** `variant_smoothing` reads the variant's spec
# (`imlib.variants`), the one place a label policy is declared: 0 for the baseline, LS's fixed
# eps, IM's clamp(1 − NMI, 0, max eps), the level control's clamp(d, 0, max eps); and how the
# target spreads it over the other classes.

# %%
draws = BatchDraws(labels, kinds, levels, nmi_values, generator=None)
smoothing = {variant: variant_smoothing(params.train_config(protocol, variant, params.seeds[0]),
                                        draws)
             for variant in params.all_variants}
for variant, (eps, _) in smoothing.items():
    steps[f"ε {variant}"] = eps.tolist()
steps.head(8).round(2)

# %% [markdown]
# **4 · Soft targets** (`soft_targets(labels, K, eps, spread)`), one row of K class
# probabilities per image and variant. IM's, for the first four images:

# %%
targets = {variant: soft_targets(labels, num_classes, eps, spread)
           for variant, (eps, spread) in smoothing.items()}
pd.DataFrame(targets["im"][:4].cpu().numpy(), columns=run.data.classes).round(3)

# %% [markdown]
# The images themselves: each column one training image, cropped and flipped (top, with its
# class), then degraded (bottom, with its kind and level d); under each, its NMI, IM's eps
# and the mass IM's target puts on the true class.

# %%
true_mass = targets["im"].gather(1, labels[:, None]).squeeze(1)
training_batch_grid(clean, degraded, kinds, levels, nmi_values, smoothing["im"][0], true_mass,
                    labels=labels, class_names=run.data.classes)

# %% [markdown]
# One image's four targets side by side: the image whose IM eps is nearest 0.5, so that the
# four differ. Each title gives the target's entropy H(t) = −Σ t log t, the **floor of its
# loss**: cross-entropy against t is lowest, and equal to H(t), when the prediction is t itself.
# A one-hot target allows a loss of 0; the softer the target, the higher its floor.

# %%
example = int((smoothing["im"][0] - 0.5).abs().argmin())
variant_targets({variant: t[example] for variant, t in targets.items()}, run.data.classes,
                int(labels[example]), dataset=params.training.dataset, protocol=protocol)

# %% [markdown]
# **5 · Logits.** The network sees the degraded images normalised with the data set's mean
# and std, and returns one logit per class (the model is in training mode, as in a step):

# %%
inputs = normalize(degraded, run.data.mean, run.data.std)
logits = run.model(inputs)
pd.DataFrame(logits[:4].detach().cpu().numpy(), columns=run.data.classes).round(2)

# %% [markdown]
# **6 · Softmax** turns them into probabilities. An untrained network's logits are small and
# close to one another, so every probability sits near 1 / K:

# %%
probs = torch.softmax(logits, dim=1)
pd.DataFrame(probs[:4].detach().cpu().numpy(), columns=run.data.classes).round(3)

# %% [markdown]
# **7 · The loss** of each image, −Σ t log p written out, against the library's
# `soft_cross_entropy` (asserted equal), beside its floor H(t):

# %%
losses = -(targets["im"] * probs.log()).sum(dim=1)
torch.testing.assert_close(losses, soft_cross_entropy(logits, targets["im"], reduction="none"))
steps["loss"] = losses.tolist()
steps["H(target)"] = target_entropy(targets["im"]).tolist()
steps.head(8).round(2)

# %%
Markdown(f"Why every first loss sits near ln K: with p ≈ 1 / K for every class, −Σ t log p ≈ "
         f"−Σ t log(1 / K) = ln K Σ t = ln K **whatever the target**, since a target sums to 1. "
         f"Here the probabilities lie between {probs.min():.3f} and {probs.max():.3f} "
         f"(1 / K = {1 / num_classes:.3f}), and the losses between {losses.min():.2f} and "
         f"{losses.max():.2f} nats, around ln K = {math.log(num_classes):.2f}. Training pulls "
         f"each loss down towards its own floor, H(t): "
         f"{target_entropy(targets['im']).min():.2f} to "
         f"{target_entropy(targets['im']).max():.2f} nats for this batch's IM targets.")

# %% [markdown]
# **The check.** Replayed from the saved generator state, `training_batch` (what training
# runs) gives the same tensors as the stages above, bit for bit:

# %%
run.generator.set_state(start)
batch = training_batch(run, idx)
same = {"images": torch.equal(batch.clean, clean), "degraded": torch.equal(batch.degraded, degraded),
        "kinds": torch.equal(batch.kinds, kinds), "levels": torch.equal(batch.levels, levels),
        "NMI": torch.equal(batch.nmi, nmi_values), "eps": torch.equal(batch.eps, smoothing["im"][0]),
        "targets": torch.equal(batch.targets, targets["im"]),
        "inputs": torch.equal(batch.inputs, inputs)}
assert all(same.values()), same
print("training_batch gives the same " + ", ".join(same))

# %% [markdown]
# **One optimiser step** on the batch's mean loss. The loss is measured in evaluation mode, on
# the same batch, before and after the step: there BatchNorm normalises with its running
# statistics, the same both times (the training-mode forward above updated them once), so the
# difference is the step's alone. (A training-mode measurement would use the batch's own
# statistics and move the running ones again.)

# %%
run.model.eval()
with torch.no_grad():
    before = soft_cross_entropy(run.model(inputs), targets["im"])
run.optimizer.zero_grad()
losses.mean().backward()
run.optimizer.step()
with torch.no_grad():
    after = soft_cross_entropy(run.model(inputs), targets["im"])
run.model.train()
print(f"mean loss on this batch (evaluation mode): {before:.4f} before the step, "
      f"{after:.4f} after")

# %% [markdown]
# Training repeats this for every batch of every epoch (the engine augments eight batches in
# one go and never reads a value back to the host inside an epoch).
#
# ## Training every run
#
# One run per protocol, variant and seed, each in its own folder
# (`runs/<profile>/train/<protocol>/<variant>/seed<k>/`) with `history.jsonl`, `last.pt`,
# `best.pt` and, once finished, `result.json`.
#
# Two protocols set the runs up:
#
# - **paper** — the paper's text, the same for every variant: the profile's optimiser
#   settings (in the `paper` profile AdamW lr 1e-3, weight decay 1e-4, batch 256), crop + flip
#   and the same degradations for all; only the labels differ. The best epoch is chosen on a
#   held-out 10 % of the training set.
# - **reference-code** — the settings of the paper's public scripts, which differ per variant:
#   every training image (no holdout), fp32, batch 128 and a cosine schedule for all; crop +
#   flip and lr 1e-3 for the baseline and LS; no crop + flip and lr 5e-4 for IM, whose targets
#   spread eps over all K classes; the best epoch chosen on the *test* set. Comparing the two
#   shows how much of the paper's gap comes from the setup. The public code trains only the
#   paper's three variants, so the controls run under the paper protocol alone.
#
# The `launcher` parameter says where they train: `inline`, one after another in this kernel
# (the default); `local`, one process per run on this machine, one GPU each where there are
# GPUs (`-p launcher local -p jobs 4`); `slurm`, one SLURM job array (the README's Scale-out).
# As jobs, only the runs that are not complete are submitted, each run's epoch is followed
# from its history, and a failed job is named with its log. Interrupting this cell leaves the
# jobs running; running it again re-attaches to them (never two jobs for one run). Finished runs
# are reused as they are (their provenance kept); the line below says which code trained them.

# %%
train_runs(params, overrides=overrides)  # overrides: the exact resubmit command
Markdown(provenance_note(run_provenance(params.runs()), provenance()))

# %% [markdown]
# ## Training curves
#
# Training loss and accuracy are measured on the *degraded* batches the model learns from (for
# the soft-target variants, against their soft targets), not on clean images. IM's training
# loss cannot reach 0: its targets are soft, and the lowest cross-entropy it can reach is their
# entropy.

# %%
history = load_histories(params, protocol)
last = history[history["epoch"] == history["epoch"].max()]
Markdown(f"At the last epoch the training loss runs {last['train_loss'].min():.2f}–"
         f"{last['train_loss'].max():.2f} nats over the runs, the clean test loss "
         f"{last['test_loss'].min():.2f}–{last['test_loss'].max():.2f}; training accuracy "
         f"{100 * last['train_acc'].min():.0f}–{100 * last['train_acc'].max():.0f} %, clean "
         f"test accuracy {100 * last['test_acc'].min():.0f}–{100 * last['test_acc'].max():.0f} %.")

# %%
training_curves(history, dataset=params.training.dataset, protocol=protocol)

# %% [markdown]
# These are the first protocol's runs; notebook 05 writes the same figure for every protocol
# of the profile into its figures folder.

# %% [markdown]
# The mean eps each variant trained with: 0 for the baseline and the clean reference, 0.1 for
# LS, and for IM the average information lost to the degradations; and the clean test accuracy
# at the last epoch, the mean over seeds (Table 1, in notebook 04, reads each run's selected
# epoch instead).

# %%
history.groupby("variant", sort=False).agg(
    epochs=("epoch", "max"), mean_eps=("mean_eps", "mean"),
    seconds_per_epoch=("seconds", "mean")).join(
    last.groupby("variant", sort=False)["test_acc"].mean().mul(100).rename(
        "last_epoch_test_acc_pct")).round(2)
