# %% [markdown]
# # 01 · The theory: entropy, mutual information, NMI and soft labels
#
# Information Matching (IM) rests on one number and one loss:
#
# 1. the **normalized mutual information** between an image and its degraded copy,
#    NMI(X, X') ∈ [0, 1]: how much of the image's structure survived the degradation;
# 2. the **cross-entropy against a soft target** whose true class gets 1 − eps, with
#    eps = 1 − NMI: the model is asked to be as sure of the true class as the share of the
#    image's pixel information that survived (whether that is how recognisable the image
#    still is, notebooks 04 and 06 measure).
#
# This notebook builds both from scratch, checks them against `imlib`, and looks at what the
# four degradations do to a photograph and to an image of the data set. It trains nothing and
# writes no files.

# %% tags=["parameters"]
profile = "smoke"  # notebooks/profiles/<profile>.yaml: smoke | cpu | paper
overrides = {}  # any key of the profile, e.g. {"epochs": 3, "device": "cpu"}

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch

from imlib.degradations import KINDS
from imlib.labels import hard, information_matching, smoothed, soft_cross_entropy
from imlib.nmi import nmi
from imlib.nmi_study import degradation_grid, photograph
from imlib.study import load_params
from imlib.thumbnails import plot_image_grid

params = load_params(profile, overrides)
print(params.summary())

# %% [markdown]
# ## 1 · Entropy and mutual information, by hand
#
# Take two discrete variables X and Y with three values each, and their joint counts: how many
# pixels have value i in X and value j in Y. Dividing by the total gives the joint
# distribution p(x, y); summing its rows and columns gives the marginals p(x) and p(y).
#
# - entropy: H(X) = − Σ p(x) log p(x), the average surprise of one value of X (in nats);
# - mutual information: I(X; Y) = Σ p(x, y) log [ p(x, y) / (p(x) p(y)) ] = H(X) + H(Y) − H(X, Y),
#   what knowing Y tells about X; 0 when they are independent;
# - normalized MI: NMI = 2 I / (H(X) + H(Y)), which is 1 when each determines the other.
#
# `torch.special.xlogy(p, p)` computes p log p with the convention 0 log 0 = 0.

# %%
counts = torch.tensor([[4, 1, 0], [1, 3, 1], [0, 1, 5]], dtype=torch.float64)
p_xy = counts / counts.sum()
p_x, p_y = p_xy.sum(1), p_xy.sum(0)
h_x = -torch.special.xlogy(p_x, p_x).sum()
h_y = -torch.special.xlogy(p_y, p_y).sum()
h_xy = -torch.special.xlogy(p_xy, p_xy).sum()
mi = h_x + h_y - h_xy
nmi_by_hand = 2 * mi / (h_x + h_y)
print(f"H(X) = {h_x:.4f}  H(Y) = {h_y:.4f}  H(X,Y) = {h_xy:.4f} nats")
print(f"I(X;Y) = {mi:.4f} nats   NMI = {nmi_by_hand:.4f}")

# %% [markdown]
# The same number from the definition Σ p(x, y) log [p(x, y) / (p(x) p(y))] (cells with
# p(x, y) = 0 contribute nothing):

# %%
ratio = p_xy / (p_x[:, None] * p_y[None, :])
print(f"I(X;Y) from the definition = {torch.xlogy(p_xy, ratio).sum():.4f} nats")

# %% [markdown]
# Now the same pair as an **image pair**. imlib bins a pixel value v into
# `floor(v * (bins - 1))`, so with `bins=3` the values 0, 0.5 and 1 fall into bins 0, 1 and 2.
# We build two 4 × 4 one-channel images whose pixels, pair by pair, follow the 16 counts of the
# table, and ask `imlib.nmi.nmi` for their NMI: it must be the number we computed by hand.

# %%
values = torch.tensor([0.0, 0.5, 1.0])
cells = torch.cartesian_prod(torch.arange(3), torch.arange(3))  # (i, j) of each table cell
pixels = cells.repeat_interleave(counts.flatten().long(), dim=0)  # one row per pixel
x_tiny = values[pixels[:, 0]].view(1, 1, 4, 4)
y_tiny = values[pixels[:, 1]].view(1, 1, 4, 4)
for name, image in (("x", x_tiny), ("y", y_tiny)):
    print(f"{name}:", *(" ".join(f"{v:.1f}" for v in row) for row in image[0, 0].tolist()),
          sep="\n  ")
print(f"imlib NMI = {nmi(x_tiny, y_tiny, bins=3).item():.4f}   by hand = {nmi_by_hand:.4f}")

# %% [markdown]
# For a colour image imlib does this per channel (R, G and B separately) and averages the three
# NMIs, as in the paper's formula. Only the *joint histogram* matters: where the pixels are in
# the image does not.

# %% [markdown]
# ## 2 · What NMI measures on a photograph
#
# We take scikit-image's astronaut photograph, downscaled to 64 × 64, and compare it with a few
# partners, at the paper's 64 bins: itself; its negative 1 − x; a constant grey image; the
# same pixels shuffled into random places; and copies with Gaussian noise of growing strength.

# %%
photo = photograph("astronaut", size=64)
g = torch.Generator().manual_seed(0)
shuffled = photo.flatten(2)[..., torch.randperm(64 * 64, generator=g)].view_as(photo)
partners = {"itself": photo, "negative 1 − x": 1 - photo,
            "constant grey": torch.full_like(photo, 0.5), "pixels shuffled": shuffled}
for sigma in (0.02, 0.05, 0.1, 0.2, 0.5):
    noisy = photo + sigma * torch.randn(photo.shape, generator=g)
    partners[f"noise σ = {sigma}"] = noisy.clamp(0, 1)
pd.DataFrame({"NMI with the photograph": {name: nmi(photo, y).item()
                                          for name, y in partners.items()}}).round(3)

# %% [markdown]
# What to notice:
#
# - **itself → 1** and **constant → 0**: the two ends of the scale. A constant image carries no
#   information about anything (H = 0, so I = 0).
# - **the negative is (almost) 1 as well.** NMI asks whether one image *determines* the other,
#   not whether they look alike: inverting the values only renames the bins. (It is not exactly
#   1 because `floor` puts a few boundary values of 1 − x into a neighbouring bin.)
# - **shuffled pixels**: each image has the same histogram, and the pairing of pixels, which is
#   what carries mutual information, is random. The true MI is 0, yet the estimate is about
#   0.1: 4,096 pixels spread over 64 × 64 = 4,096 joint bins leave most occupied bins with a
#   single pixel, and the histogram reads these chance coincidences as shared information.
#   This upward bias of the histogram (plug-in) estimator puts a **floor** under the NMI of
#   small images that have lost all their structure; it is higher still on 32 × 32 images.
# - **noise** lowers NMI smoothly. Even σ = 0.02 costs a lot at 64 bins (a bin is 1/63 ≈ 0.016
#   wide, so most pixels change bin), and strong noise only approaches the floor. The estimate
#   depends on the number of bins, which notebook 02 studies.

# %% [markdown]
# ## 3 · The four degradations, level by level
#
# `imlib.degradations.degrade(x, kind, level, generator)` applies one of the paper's four
# degradations at a level d ∈ [0, 1] (level 0 is the identity):
#
# | kind | what it does at level d (training settings) |
# |---|---|
# | `diffusion` | DDPM forward noise at step t = floor(d · 999): mostly noise from d ≈ 0.2 on |
# | `blur` | Gaussian blur with σ = 50 d + 0.01 pixels (kernel capped at 51) |
# | `dropout` | keeps floor(P (1 − d)) of the P 8 × 8 patches, zeroes the rest |
# | `mosaic` | averages b × b blocks, b = floor(max(H, W) (d + 0.001)²) |
#
# Rows are kinds, columns levels; each tile is titled with its NMI to the clean image (with the
# run's `nmi_bins`).
# First the photograph:

# %%
levels = (0.0, 0.25, 0.5, 0.75, 1.0)
tiles, scores = degradation_grid(photo, KINDS, levels, bins=params.training.nmi_bins, seed=0)
plot_image_grid(tiles, scores, KINDS, [f"d = {d}" for d in levels],
                title="astronaut, 64 × 64")

# %% [markdown]
# Then one image of the study's data set (`params.training.dataset`), 32 × 32:

# %%
data = params.load_data()
image = data.x_train[:1].float() / 255
tiles, scores = degradation_grid(image, KINDS, levels, bins=params.training.nmi_bins, seed=0)
plot_image_grid(tiles, scores, KINDS, [f"d = {d}" for d in levels],
                title=f"{params.training.dataset}: {data.classes[int(data.y_train[0])]}, 32 × 32")

# %% [markdown]
# What to notice: NMI falls with the level for every kind, but **not at the same pace**.
#
# - `diffusion`: at d = 0.25 the noise (std ≈ 0.35 of the pixel range) already swamps the
#   picture, and NMI sits at the estimator's floor from there on (higher on the 32 × 32 image:
#   fewer pixels, more chance coincidences).
# - `blur`: σ = 12.5 px at d = 0.25 is wider than most structure of a 32 × 32 image; what
#   remains is a smooth colour gradient.
# - `dropout` keeps the surviving patches *exactly*, so its NMI follows the fraction kept,
#   about 1 − d, down to 0 when every patch is gone.
# - `mosaic` loses the fine detail first (2 × 2 blocks at d = 0.25 on 32 × 32) and is one
#   colour per channel at d = 1: NMI 0.
#
# This is the point of IM: the same level d means a different information loss for each kind
# (and each image), and NMI measures that loss directly. Notebook 02 turns these pictures into
# curves over many images.
#
# Most of the change happens at small levels. The photograph again, at d ≤ 0.2:

# %%
low = (0.0, 0.02, 0.05, 0.1, 0.2)
tiles, scores = degradation_grid(photo, KINDS, low, bins=params.training.nmi_bins, seed=0)
plot_image_grid(tiles, scores, KINDS, [f"d = {d}" for d in low], title="astronaut, small levels")

# %% [markdown]
# Noise and blur have taken most of the NMI by d = 0.05, although the astronaut is still
# plainly recognisable: lost pixel information is not lost content (notebooks 04 and 06 measure
# the gap on trained models). Dropout has only removed a few patches. A mosaic changes nothing
# at all until its block reaches 2 pixels:
# (d + 0.001)² · 64 ≥ 2, so d ≥ 0.18 on this 64 × 64 image and d ≥ 0.25 on a 32 × 32 one.

# %% [markdown]
# ## 4 · From NMI to a soft target
#
# IM turns the NMI of a degraded training image into a smoothing factor
# eps = clamp(1 − NMI, 0, 0.9) and a target vector over the K classes. With K = 10 and true
# class 3 we compare, row by row:
#
# - `hard`: the one-hot target of the baseline;
# - `smoothed` (ls): fixed eps = 0.1, spread as (1 − eps) one-hot + eps / K (torch's convention);
# - `information_matching` at a few NMIs, spread as in the paper (`spread="others"`: the true
#   class gets 1 − eps, each of the K − 1 others eps / (K − 1)) and, once, as in the public code
#   (`spread="all"`: (1 − eps) one-hot + eps / K on every class).

# %%
K, label = 10, torch.tensor([3])
targets = {"hard": hard(label, K), "ls eps=0.1": smoothed(label, K, eps=0.1)}
for value in (0.9, 0.6, 0.3, 0.05):
    targets[f"im NMI={value}"] = information_matching(label, K, torch.tensor([value]))
targets["im NMI=0.6 spread=all"] = information_matching(label, K, torch.tensor([0.6]),
                                                        spread="all")
table = pd.DataFrame({name: t[0].tolist() for name, t in targets.items()}).T
table.columns.name = "class"
table.round(3)

# %% [markdown]
# Each row sums to 1. The true-class mass against the mass on one other class, per target:

# %%
mass = pd.DataFrame({"true class": table[3], "each other class": table[0]})
ax = mass.plot.barh(figsize=(7, 3.5), color=["tab:green", "tab:grey"])
ax.invert_yaxis()
ax.set(xlabel="target probability", xlim=(0, 1))
plt.show()

# %% [markdown]
# What to notice:
#
# - With `spread="others"` the true class gets exactly **1 − eps = NMI**; with `spread="all"` it
#   gets 1 − eps + eps / K, a little more (here 0.6 + 0.04), and the others eps / K. With
#   K = 100 (CIFAR-100) the two differ by at most 0.009; with K = 10 the difference is visible.
# - NMI = 0.05 is clamped to eps = 0.9: with K = 10 the target is then **uniform** (0.1 for
#   every class). The clamp keeps at least a 1 − 0.9 = 0.1 vote for the true class.
# - LS is the same shape as IM at a fixed eps = 0.1 whatever the image; IM's eps follows the
#   information each degraded image kept.

# %% [markdown]
# ## 5 · Why the model learns to report the target
#
# Cross-entropy against a soft target t splits in two:
# CE(t, p) = − Σ t_k log p_k = H(t) + KL(t ‖ p). The KL term is ≥ 0 and is 0 only at p = t
# (Gibbs' inequality), so **the best prediction is the target itself**, and the lowest reachable
# loss is H(t), not 0.
#
# We check it numerically: free logits for four IM targets (NMI 0.9, 0.6, 0.3, 0.05), trained
# with Adam on `imlib.labels.soft_cross_entropy` for 200 steps, with no model in between.

# %%
nmis = torch.tensor([0.9, 0.6, 0.3, 0.05])
target = information_matching(torch.full((4,), 3), K, nmis)
logits = torch.zeros(4, K, requires_grad=True)
optimiser = torch.optim.Adam([logits], lr=0.1)
pd.DataFrame(target.numpy(), index=[f"NMI={v:.2f}" for v in nmis.tolist()]).rename_axis(
    index="target", columns="class").round(3)

# %% [markdown]
# Each step moves the logits down the gradient of the soft cross-entropy; we record the
# predicted probability of the true class for each target, and the loss.

# %%
trace = []
for _ in range(200):
    loss = soft_cross_entropy(logits, target)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    trace.append(torch.softmax(logits.detach(), 1)[:, 3].tolist() + [loss.item()])
trace = pd.DataFrame(trace, columns=[f"NMI={v:.2f}" for v in nmis.tolist()] + ["loss"])

# %% [markdown]
# The predicted probability of the true class along the optimisation; dashed lines mark the
# targets' true-class mass 1 − eps:

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.5), gridspec_kw={"wspace": 0.45})
trace.drop(columns="loss").plot(ax=axes[0])
axes[0].hlines(target[:, 3], 0, len(trace), colors="grey", linestyles="--", linewidth=0.8)
axes[0].set(xlabel="step", ylabel="softmax(logits)[true class]", ylim=(0, 1))
axes[0].legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
trace["loss"].plot(ax=axes[1], label="soft cross-entropy")
entropy = -torch.special.xlogy(target, target).sum(1).mean().item()
axes[1].axhline(entropy, color="grey", linestyle="--", label="mean H(target)")
axes[1].set(xlabel="step", ylabel="loss (mean over the 4 targets)"), axes[1].legend()
plt.show()

# %%
learned = torch.softmax(logits.detach(), 1)
pd.DataFrame({"NMI": nmis, "eps": 1 - target[:, 3], "target true class": target[:, 3],
              "learned true class": learned[:, 3],
              "max |learned − target|": (learned - target).abs().amax(1)}).round(4)

# %% [markdown]
# The learned distribution matches the target in every class, and the loss settles at the
# targets' entropy. This is what IM asks of a network: on a degraded input with NMI = 0.6 the
# cross-entropy is lowest when the network predicts the true class with confidence
# **1 − eps = NMI = 0.6**, and spreads the rest evenly. A network has to reach that by its
# weights, for every image at once, so it can only approximate it; notebook 04 measures how
# close the trained variants come (confidence against degradation level), and notebook 03
# trains them.
