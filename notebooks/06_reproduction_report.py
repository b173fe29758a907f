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
# # 06 · Reproduction report
#
# The paper reports IM at 63.24 % top-1 on CIFAR-100 against 55.94 % for label smoothing and
# 55.43 % for hard labels. Those numbers come from a public code base whose runs differ in more
# than the label policy, and from an evaluation whose estimators and pre-processing differ
# from the text. This notebook lists each divergence between **the paper's text**, **its
# public code** and **this implementation**, and puts beside each one what this profile's runs
# measured about its effect. It reads saved results only (notebooks 02–04), and computes
# nothing that needs a trained model.
#
# On the `smoke` profile the numbers come from a tiny synthetic run and show only that the
# report works; on the `paper` profile (CIFAR-100, ResNet-18, 100 epochs, three seeds, both
# protocols) this is the page to cite.

# %% tags=["parameters"]
profile = "smoke"  # notebooks/profiles/<profile>.yaml: smoke | cpu | paper
overrides = {}  # any key of the profile, e.g. {"epochs": 3, "device": "cpu"}

# %%
import pandas as pd
from IPython.display import display

from imlib.evaluate import load_histories, load_results, summarize, table1
from imlib.nmi_study import sample_images
from imlib.report import (calibration_estimators, degradation_settings_effect,
                          order_effect, protocol_comparison, selection_effect, spread_effect)
from imlib.study import load_params

params = load_params(profile, overrides)
studies = {protocol: params.for_protocol(protocol) for protocol in params.protocols}
histories = {p: load_histories(s) for p, s in studies.items()}
results = {p: load_results(s.eval_dir) for p, s in studies.items()}
data = params.load_data()
print(f"profile {profile}: protocols {list(studies)}, variants {list(params.variants)}, "
      f"seeds {list(params.seeds)}, {params.epochs} epochs")

# %% [markdown]
# ## The headline, under both protocols
#
# Table 1 of this profile, mean ± sd over seeds. Under `paper` every variant is trained the
# same way and only the labels differ; under `reference-code` each variant gets the public
# code's settings (below), and the best epoch is chosen on the test set, as the paper did.

# %%
for protocol, result in results.items():
    print(f"{protocol} protocol")
    display(table1(result.clean))

# %% [markdown]
# ## 1 · Learning rate, batch size, schedule and crop + flip (text vs code)
#
# | | paper's text | public code | here |
# |---|---|---|---|
# | optimiser | AdamW, lr 1e-3, wd 1e-4, batch 256 | batch 128, cosine schedule to 1e-6 | `paper` protocol: the text; `reference-code`: the code |
# | learning rate per variant | 1e-3 for all | baseline, LS 1e-3; **IM 5e-4** | as the protocol says |
# | crop + flip | not mentioned (the same augmentations for all) | baseline and LS only; **IM without** | `paper`: all variants; `reference-code`: as the code |
#
# Measured: top-1 accuracy of each variant under each protocol. The difference between the
# protocols is the joint effect of these settings (and of test-set selection, item 2); each is
# a field of `TrainConfig`, so an ablation can flip one at a time.

# %%
protocol_comparison({p: r.clean for p, r in results.items()}, "top1")

# %% [markdown]
# If IM's advantage shrinks or vanishes under `paper`, where every variant is trained alike,
# the paper's gap owes more to the set-up than to the labels.
#
# ## 2 · Choosing the best epoch on the test set
#
# The paper validates "on the clean test set during training, with early stopping based on
# validation accuracy": the reported accuracy is the maximum over epochs of the test accuracy,
# which is biased upwards. Here the `paper` protocol chooses the epoch on a held-out 10 % of
# the training set. Measured, per run: the test accuracy at the holdout-chosen epoch, the best
# test accuracy over epochs (the paper's choice) and their difference (the optimism).

# %%
selection = pd.concat([selection_effect(h).assign(protocol=p) for p, h in histories.items()])
summarize(selection, ("protocol", "variant"), ("holdout_selected", "test_selected", "optimism"))

# %% [markdown]
# ## 3 · IM's off-class spread: eps / (K − 1) (text) vs eps / K (code)
#
# The text gives the true class 1 − eps and each other class eps / (K − 1); the public code
# uses the label-smoothing form (1 − eps) onehot + eps / K, which leaves the true class
# 1 − eps + eps / K. Here `im_spread="others"` is the default and `"all"` reproduces the code.
# Measured at the mean eps the IM runs trained with:

# %%
spread_effect(histories[params.protocols[0]], data.num_classes)

# %% [markdown]
# With K = 100 the true-class target moves by eps / 100, well under 1 %: a difference in
# the letter, not in the behaviour.
#
# ## 4 · The ECE estimator
#
# The paper's ECE column comes from its evaluation script: 10 bins, **unweighted** mean of
# |accuracy − confidence| over the non-empty bins of **every batch of 100** images, then the
# mean over batches. The standard ECE (Guo et al. 2017; torchmetrics) uses 15 bins over the
# whole set, weighted by bin counts. On synthetic predictions whose calibration is known,
# the two read:

# %%
calibration_estimators(num_classes=data.num_classes)

# %% [markdown]
# A perfectly calibrated model reads about 0.1 on the paper's estimator (bins holding one or two
# images count as much as full ones), about the size of every number in the paper's ECE
# column. Its ECE values therefore cannot be compared with the literature's, nor, at the
# differences it reports, with each other. Both estimators on this profile's models:

# %%
pd.concat([summarize(r.clean, ("variant",), ("ece", "ece_paper_script")).assign(protocol=p)
           for p, r in results.items()], ignore_index=True)

# %% [markdown]
# ## 5 · Normalising before degrading, in the evaluation
#
# Training degrades [0, 1] images and normalises afterwards. The paper's evaluation script
# normalised first and degraded the normalised tensors: diffusion's final clamp to [0, 1] then
# clipped every negative (below-mean) value, and dropout filled its patches with the mean colour
# (0 after normalisation) instead of black; blur and mosaic are linear and unaffected. Notebook
# 04 ran every sweep both ways. Measured: mean true-class confidence on the whole test split,
# per kind, in each order, and the difference.

# %%
order_effect(results[params.protocols[0]].sweeps)

# %% [markdown]
# ## 6 · Degradation constants: training vs evaluation
#
# The training code blurs with sigma = 50 d (kernel up to 51) and drops 8 × 8 patches; the
# paper's evaluation script used sigma = 10 d (kernel up to 11) and 4 × 4 patches, so the
# same level d is a different degradation in training and in the figures. Our sweeps use the
# evaluation script's constants by default (`eval_degradation: paper_eval`) so that the
# figures compare with the paper's. Measured: mean NMI between clean and degraded images of
# this profile's data at each level, under both sets of constants.

# %%
images = sample_images(data, min(params.nmi_pairs, 256))
degradation_settings_effect(images).round(3)

# %% [markdown]
# ## 7 · What NMI can measure on a 32 × 32 image
#
# Not a divergence but a property of the method as published: with 64 bins and 1,024 pixels
# per channel the joint histogram has four bins per pixel, and the plug-in estimate of mutual
# information is biased upwards. A completely destroyed image still scores an NMI of a few
# tenths, so eps = 1 − NMI rarely reaches the 0.9 clamp. Measured in notebook 02 on this
# profile's images, the eps IM trains with:

# %%
eps = pd.read_csv(params.nmi_dir / "eps.csv")
eps.groupby("kind")[["eps", "clamped"]].agg(["mean", "max"]).round(3)

# %% [markdown]
# ## 8 · Does NMI add anything over the level? (the `level` control)
#
# The augmentation already knows how hard it degraded each image: the level d. The `level`
# variant smooths by eps = d instead of 1 − NMI, with everything else identical (the closest
# idea in the literature couples noise or blur strength with label smoothing, Heinonen et al.,
# AISTATS 2025). If `im` does no better than `level`, the mutual information is not what
# helps.

# %%
pd.concat([summarize(r.clean.query("variant in ['im', 'level']"), ("variant",),
                     ("top1", "ece", "nll")).assign(protocol=p)
           for p, r in results.items()], ignore_index=True)

# %% [markdown]
# ## Summary of divergences
#
# | # | item | paper's text | public code | this implementation |
# |---|---|---|---|---|
# | 1 | lr, batch, schedule | AdamW 1e-3, batch 256 | batch 128, cosine; IM lr 5e-4 | both, as protocols |
# | 1 | crop + flip | same for all | baseline and LS only | both, as protocols |
# | 2 | model selection | "validation" = test set | test set | holdout (paper protocol); both reported |
# | 3 | IM off-class mass | eps / (K − 1) | eps / K | eps / (K − 1); `im_spread="all"` for the code's |
# | 4 | ECE | "ECE" | per-batch, unweighted, 10 bins | standard ECE; the script's in its own column |
# | 5 | evaluation order | not stated | normalise, then degrade | degrade, then normalise; both swept |
# | 6 | degradation constants | not stated | training σ 50 d, patch 8; evaluation σ 10 d, patch 4 | training's for training, evaluation's for the figures (`eval_degradation`) |
# | 7 | NMI | "NMI ∈ [0, 1]" | 64-bin plug-in estimate | the same, exactly; its floor on 32 × 32 images measured |
#
# Each row above links to the measurement of its section.
