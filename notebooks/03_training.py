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
from IPython.display import display

from imlib.evaluate import load_histories
from imlib.plots import training_curves
from imlib.study import load_params
from imlib.train import train

params = load_params(profile, overrides)
params

# %% [markdown]
# One run per protocol, variant and seed, each in its own folder
# (`runs/<profile>/train/<protocol>/<variant>/seed<k>/`) with `history.jsonl`, `last.pt`,
# `best.pt` and, once finished, `result.json`.
#
# Two protocols set the runs up:
#
# - **paper** — the paper's text: AdamW lr 1e-3, weight decay 1e-4, batch 256, crop + flip
#   and the same degradations for every variant; only the labels differ. The best epoch is
#   chosen on a held-out 10 % of the training set.
# - **reference-code** — the settings of the paper's public code, which differ per variant:
#   batch 128 and a cosine schedule for all; crop + flip and lr 1e-3 for the baseline and LS;
#   no crop + flip and lr 5e-4 for IM (and for our `level` control); the best epoch chosen on
#   the *test* set. Comparing the two shows how much of the paper's gap comes from the setup.

# %%
for protocol in params.protocols:
    for variant in params.variants:
        for seed in params.seeds:
            train(params.for_protocol(protocol).train_config(variant, seed))

# %% [markdown]
# ## Training curves
#
# Training loss and accuracy are measured on the *degraded* batches the model learns from, so
# they sit far below the clean holdout numbers. IM's training loss cannot reach 0: its targets
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
summary = history.groupby("variant", sort=False).agg(
    epochs=("epoch", "max"), mean_eps=("mean_eps", "mean"),
    best_holdout_acc=("holdout_acc", "max"), seconds_per_epoch=("seconds", "mean"))
summary
