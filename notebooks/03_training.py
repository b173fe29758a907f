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
from imlib.evaluate import load_histories
from imlib.plots import training_curves
from imlib.study import load_params
from imlib.train import train

params = load_params(profile, overrides)
params

# %% [markdown]
# One run per variant and seed, each in its own folder
# (`runs/<profile>/train/<variant>/seed<k>/`) with `history.jsonl`, `last.pt`, `best.pt`
# and, once finished, `result.json`. The best epoch is chosen on a held-out 10 % of the
# training set (`selection: holdout`); the paper chose it on the test set, which is
# available as `selection: test`.

# %%
for variant in params.variants:
    for seed in params.seeds:
        train(params.train_config(variant, seed))

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
# The mean eps each variant trained with: 0 for the baseline, 0.1 for LS, and for IM the
# average information lost to the degradations.

# %%
summary = history.groupby("variant", sort=False).agg(
    epochs=("epoch", "max"), mean_eps=("mean_eps", "mean"),
    best_holdout_acc=("holdout_acc", "max"), seconds_per_epoch=("seconds", "mean"))
summary
