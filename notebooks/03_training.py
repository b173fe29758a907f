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
# # 03 · Training the variants
#
# The paper trains one network three ways and changes **only the labels**:
#
# | variant | target for a degraded image |
# |---|---|
# | `baseline` | one-hot, whatever the degradation |
# | `ls` | fixed label smoothing, eps = 0.1 |
# | `im` | Information Matching: eps = 1 − NMI(original, degraded), clamped to [0, 0.9] |
# | `level` | (our control) eps = d, the degradation level itself |
#
# Everything else is one code path (`imlib.train.train`): the same data, the same crop + flip,
# the same `random_degrade` on every training image, the same AdamW. Each step runs on the
# device without a host sync: permuted indices → crop + flip → degrade → NMI → targets →
# normalise → step. Runs are resumable: interrupt this notebook and run it again, and each
# variant continues from its last epoch (a finished run is skipped).

# %% tags=["parameters"]
profile = "smoke"  # notebooks/profiles/<profile>.yaml: smoke | cpu | paper
overrides = {}  # any key of the profile, e.g. {"epochs": 3, "device": "cpu"}

# %%
import torch
from IPython.display import Markdown, display

from imlib.io import provenance
from imlib.labels import soft_cross_entropy
from imlib.plots import training_curves
from imlib.report import provenance_note
from imlib.results import load_histories, run_provenance
from imlib.study import load_params
from imlib.thumbnails import training_batch_grid
from imlib.train import prepare, train, training_batch

params = load_params(profile, overrides)
params.settings()

# %% [markdown]
# ## One training step, unrolled
#
# Before training anything, one step of the `im` variant by hand, on a real batch. `prepare`
# builds what a run needs (the data on the device, the model, AdamW, the seeded generator)
# without writing any file; `training_batch` makes one batch exactly as training does.

# %%
run = prepare(params.train_config("im", params.seeds[0]))
batch = training_batch(run, torch.arange(16))
true_mass = batch.targets.gather(1, batch.labels[:, None]).squeeze(1)
training_batch_grid(batch.clean, batch.degraded, batch.kinds, batch.levels, batch.nmi,
                    batch.eps, true_mass)

# %% [markdown]
# Each column is one training image: cropped and flipped (top), then degraded by a random kind
# at a random level d (bottom). Under each, NMI(clean, degraded), IM's eps = clamp(1 − NMI, 0,
# 0.9) and the mass the target puts on the true class, 1 − eps. The rest of the target is
# spread over the other classes:

# %%
batch.targets[:4].numpy().round(3)

# %% [markdown]
# The network sees the normalised degraded images (`batch.inputs`) and returns logits; the
# loss is the cross-entropy against the soft target, per sample:

# %%
logits = run.model(batch.inputs)
losses = soft_cross_entropy(logits, batch.targets, reduction="none")
losses.detach().numpy().round(3)

# %% [markdown]
# A softer target has a higher floor: the lowest cross-entropy a sample can reach is its
# target's entropy, reached when the predicted distribution equals the target. One optimiser
# step on the batch's mean loss moves the model towards its targets:

# %%
loss = losses.mean()
run.optimizer.zero_grad()
loss.backward()
run.optimizer.step()
after = soft_cross_entropy(run.model(batch.inputs), batch.targets)
print(f"mean loss on this batch: {loss.item():.4f} before the step, {after.item():.4f} after")

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
#   flip and lr 1e-3 for the baseline and LS; no crop + flip and lr 5e-4 for IM (and for our
#   `level` control), whose targets spread eps over all K classes; the best epoch chosen on the
#   *test* set. Comparing the two shows how much of the paper's gap comes from the setup.
#
# Finished runs are reused as they are (their provenance kept); the line below says which
# code trained them.

# %%
for study_run in params.runs():
    train(study_run.config)
Markdown(provenance_note(run_provenance(params.runs()), provenance()["git_commit"]))

# %% [markdown]
# ## Training curves
#
# Training loss and accuracy are measured on the *degraded* batches the model learns from, so
# they sit far below the clean test and holdout numbers. IM's training loss cannot reach 0: its targets
# are soft, and the lowest cross-entropy it can reach is their entropy.

# %%
history = load_histories(params)
training_curves(history)

# %% [markdown]
# The same under the reference-code protocol, when the profile trains it:

# %%
if "reference-code" in params.protocols:
    display(training_curves(load_histories(params.for_protocol("reference-code"))))

# %% [markdown]
# The mean eps each variant trained with: 0 for the baseline, 0.1 for LS, and for IM the
# average information lost to the degradations.

# %%
history.groupby("variant", sort=False).agg(
    epochs=("epoch", "max"), mean_eps=("mean_eps", "mean"),
    best_test_acc_pct=("test_acc", lambda acc: 100 * acc.max()),
    seconds_per_epoch=("seconds", "mean")).round(2)
