"""imlib.degradations against per-image references written from the contract.

blur: torchvision's gaussian_blur image by image; mosaic and dropout: Python loops over samples
and blocks/patches; diffusion: the DDPM closed form with the schedule computed in numpy float64.
The batched implementation must agree with all of them for mixed per-sample levels.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from imlib._checks import check_names
from imlib.degradations import (
    KINDS,
    PAPER_EVAL,
    TRAIN,
    DegradationConfig,
    check_kinds,
    degrade,
    random_degrade,
)
from imlib.nmi import nmi

# --- references written from the contract --------------------------------------------------


def blur_reference(x: torch.Tensor, levels, max_sigma: float, cap: int) -> torch.Tensor:
    """torchvision's Gaussian blur, one image at a time, sigma and kernel size in plain Python."""
    cap = cap if cap % 2 else cap - 1
    out = []
    for image, d in zip(x, levels, strict=True):
        sigma = max_sigma * float(d) + 0.01
        k = min(2 * math.floor(4 * sigma + 0.5) + 1, cap)
        out.append(TF.gaussian_blur(image, [k, k], [sigma, sigma]))
    return torch.stack(out)


def mosaic_block(longest: int, d: float) -> int:
    return max(1, math.floor(longest * (d + 0.001) ** 2))


def mosaic_reference(x: torch.Tensor, levels) -> torch.Tensor:
    """Each b x b block (edge blocks partial) replaced by its per-channel mean, loop by loop."""
    n, _, h, w = x.shape
    out = x.clone()
    for i in range(n):
        b = mosaic_block(max(h, w), float(levels[i]))
        for top in range(0, h, b):
            for left in range(0, w, b):
                block = x[i, :, top : top + b, left : left + b].double()
                out[i, :, top : top + b, left : left + b] = block.mean(dim=(1, 2), keepdim=True)
    return out


def dropout_reference(x: torch.Tensor, levels, seed: int, patch: int) -> torch.Tensor:
    """Re-draw the patch scores (one torch.rand(N, P), patches numbered row-major), keep the
    floor(P (1 - d)) lowest-scored patches of each sample, zero the others one by one."""
    n, _, h, w = x.shape
    rows, cols = math.ceil(h / patch), math.ceil(w / patch)
    scores = torch.rand(n, rows * cols, generator=torch.Generator().manual_seed(seed))
    out = x.clone()
    for i in range(n):
        keep = math.floor(rows * cols * (1 - float(levels[i])))
        by_score = sorted(range(rows * cols), key=lambda j: float(scores[i, j]))
        for j in by_score[keep:]:
            r, c = divmod(j, cols)
            out[i, :, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = 0
    return out


def diffusion_reference(x: torch.Tensor, levels, seed: int, steps: int = 1000) -> torch.Tensor:
    """DDPM forward closed form; betas and alpha-bar in numpy float64."""
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).double().numpy()
    betas = np.linspace(1e-4, 0.02, steps, dtype=np.float64)
    xs = x.double().numpy()
    out = np.empty_like(xs)
    for i, d in enumerate(levels):
        t = math.floor(float(d) * (steps - 1))
        if t == 0:
            out[i] = xs[i]
            continue
        abar = np.prod(1 - betas[: t + 1])
        noisy = np.sqrt(abar) * (2 * xs[i] - 1) + np.sqrt(1 - abar) * eps[i]
        out[i] = np.clip((noisy + 1) / 2, 0, 1)
    return torch.from_numpy(out).float()


def kept_patches(y: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, rows, cols) bool: patches not set to 0 (inputs are strictly positive)."""
    n, _, h, w = y.shape
    rows, cols = math.ceil(h / patch), math.ceil(w / patch)
    padded = torch.nn.functional.pad(y, (0, cols * patch - w, 0, rows * patch - h), value=1.0)
    nonzero = padded.ne(0).all(dim=1)  # (N, rows * p, cols * p)
    return nonzero.view(n, rows, patch, cols, patch).all(dim=4).all(dim=2)


def positive_images(generator: torch.Generator, n: int, h: int, w: int) -> torch.Tensor:
    """Images in [0.05, 1]: a dropped (zeroed) pixel can never be mistaken for a kept one."""
    return 0.05 + 0.95 * torch.rand(n, 3, h, w, generator=generator)


# --- blur -----------------------------------------------------------------------------------

BLUR_LEVELS = torch.tensor([0.0, 0.003, 0.01, 0.05, 0.2, 0.7, 1.0])


@pytest.mark.parametrize(
    ("config", "max_sigma", "cap"),
    [(TRAIN, 50.0, 51), (PAPER_EVAL, 10.0, 11)],
    ids=["train", "eval"],
)
@pytest.mark.parametrize("size", [(32, 32), (32, 48)], ids=["32x32", "32x48"])
def test_blur_matches_torchvision_image_by_image(config, max_sigma, cap, size, generator):
    x = torch.rand(len(BLUR_LEVELS), 3, *size, generator=generator)
    got = degrade(x, "blur", BLUR_LEVELS, config=config)
    expected = blur_reference(x, BLUR_LEVELS, max_sigma, cap)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_blur_keeps_a_constant_image_constant_even_when_the_kernel_exceeds_the_image():
    """Weights sum to 1 whatever the reflection (kernel 51 > 16x20 image, where torchvision's
    reflect padding would refuse)."""
    x = torch.full((2, 3, 16, 20), 0.3)
    torch.testing.assert_close(degrade(x, "blur", torch.tensor([0.5, 1.0])), x)


# --- mosaic ---------------------------------------------------------------------------------

MOSAIC_LEVELS = torch.tensor([0.0, 0.1, 0.3, 0.45, 0.5, 0.6, 0.8, 1.0])


@pytest.mark.parametrize("size", [(32, 32), (32, 48), (45, 27)], ids=["32x32", "32x48", "45x27"])
def test_mosaic_matches_a_block_loop(size, generator):
    longest = max(size)
    for d in MOSAIC_LEVELS.tolist():  # stay clear of block-size boundaries (float32 vs float64)
        v = longest * (d + 0.001) ** 2
        assert v < 1 or abs(v - round(v)) > 1e-3
    x = torch.rand(len(MOSAIC_LEVELS), 3, *size, generator=generator)
    got = degrade(x, "mosaic", MOSAIC_LEVELS)
    torch.testing.assert_close(got, mosaic_reference(x, MOSAIC_LEVELS), rtol=0, atol=1e-5)


# --- dropout --------------------------------------------------------------------------------

DROPOUT_LEVELS = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.77, 0.95, 1.0])


@pytest.mark.parametrize(
    ("size", "config"),
    [((32, 32), TRAIN), ((36, 20), TRAIN), ((32, 48), PAPER_EVAL)],
    ids=["32x32-p8", "36x20-p8", "32x48-p4"],
)
def test_dropout_matches_a_patch_loop_with_the_same_draw(size, config, generator):
    x = positive_images(generator, len(DROPOUT_LEVELS), *size)
    got = degrade(x, "dropout", DROPOUT_LEVELS, generator=torch.Generator().manual_seed(7),
                  config=config)
    expected = dropout_reference(x, DROPOUT_LEVELS, seed=7, patch=config.dropout_patch)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("size", [(32, 32), (36, 20)], ids=["32x32", "36x20"])
def test_dropout_keeps_exactly_floor_p_times_one_minus_d_patches_unchanged(size, generator):
    """36x20 with 8x8 patches: 5 x 3 = 15 patches, the last row and column partial."""
    n = 64
    x = positive_images(generator, n, *size)
    levels = torch.rand(n, generator=generator)
    y = degrade(x, "dropout", levels, generator=generator)
    kept = kept_patches(y, 8)
    p = math.ceil(size[0] / 8) * math.ceil(size[1] / 8)
    expected = torch.tensor([math.floor(p * (1 - float(d))) for d in levels])
    assert torch.equal(kept.flatten(1).sum(1), expected)
    # A pixel is either untouched or 0; partial edge patches are dropped or kept whole.
    assert bool(((y == x) | (y == 0)).all())
    pixel_kept = kept.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, : size[0], : size[1]]
    assert torch.equal(y != 0, pixel_kept.unsqueeze(1).expand_as(y))


# --- diffusion ------------------------------------------------------------------------------

DIFFUSION_LEVELS = torch.tensor([0.0, 0.0005, 0.001, 0.002, 0.25, 0.5, 0.9, 1.0])


@pytest.mark.parametrize("size", [(32, 32), (24, 40)], ids=["32x32", "24x40"])
def test_diffusion_matches_the_ddpm_closed_form(size, generator):
    x = torch.rand(len(DIFFUSION_LEVELS), 3, *size, generator=generator)
    got = degrade(x, "diffusion", DIFFUSION_LEVELS, generator=torch.Generator().manual_seed(3))
    expected = diffusion_reference(x, DIFFUSION_LEVELS, seed=3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # t = floor(d * 999) = 0 for d in {0, 0.0005, 0.001}: untouched, exactly.
    assert torch.equal(got[:3], x[:3])
    assert not torch.equal(got[3], x[3])


# --- end points -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("config", [TRAIN, PAPER_EVAL], ids=["train", "eval"])
def test_level_zero_is_identity(kind, config, generator):
    x = torch.rand(3, 3, 32, 48, generator=generator)
    torch.testing.assert_close(
        degrade(x, kind, 0.0, generator=generator, config=config), x, rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("size", [(32, 32), (32, 48)], ids=["32x32", "32x48"])
def test_level_one_drops_everything_and_mosaics_to_the_image_mean(size, generator):
    x = torch.rand(3, 3, *size, generator=generator)
    assert torch.equal(degrade(x, "dropout", 1.0, generator=generator), torch.zeros_like(x))
    mean = x.double().mean(dim=(2, 3), keepdim=True).float().expand_as(x)
    torch.testing.assert_close(degrade(x, "mosaic", 1.0), mean, rtol=0, atol=1e-6)


# --- information decreases with the level ---------------------------------------------------

MONOTONE_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _mean_nmi_by_level(x: torch.Tensor, kind: str, bins: int) -> list[float]:
    """Mean NMI(clean, degraded) at each level, the same generator seed at every level so the
    random kinds compare like with like (common random numbers)."""
    out = []
    for d in MONOTONE_LEVELS:
        y = degrade(x, kind, d, generator=torch.Generator().manual_seed(0))
        out.append(float(nmi(x, y, bins=bins).mean()))
    return out


@pytest.fixture(scope="module")
def crops(photo_crops) -> torch.Tensor:
    """12 natural 96x128 images: 4 corner crops of each photograph downscaled to 160x192."""
    return photo_crops((96, 128), (160, 192))


@pytest.mark.parametrize("kind", KINDS)
def test_mean_nmi_strictly_decreases_with_level_on_photographs(kind, crops):
    """bins=8: few bins, so the plug-in estimator's bias is small and every step shows."""
    values = _mean_nmi_by_level(crops, kind, bins=8)
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    assert all(a > b for a, b in itertools.pairwise(values)), values


@pytest.mark.parametrize("kind", KINDS)
def test_mean_nmi_decreases_with_level_at_the_papers_64_bins(kind, crops):
    """bins=64 (the paper's): strict for every step except diffusion 0.75 -> 1.

    At 64 bins on 12288 pixels the plug-in MI estimate of two nearly independent images has a
    floor (about 0.04 NMI here), and at t = 749 vs 999 the image's remaining signal
    (sqrt(abar) = 0.06 vs 0.007) is below it: the order of those two means depends on the
    noise draw. Checked here: both sit within 1e-3 of each other, far below level 0.5.
    """
    values = _mean_nmi_by_level(crops, kind, bins=64)
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    strict = values if kind != "diffusion" else values[:-1]
    assert all(a > b for a, b in itertools.pairwise(strict)), values
    if kind == "diffusion":
        assert abs(values[4] - values[3]) < 1e-3, values
        assert values[4] < values[2], values


# --- random_degrade -------------------------------------------------------------------------


def test_random_degrade_returns_kinds_and_levels_of_the_right_type(generator):
    x = torch.rand(256, 3, 32, 32, generator=generator)
    y, kinds, levels = random_degrade(x, generator=generator)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert kinds.dtype == torch.int64 and kinds.shape == (256,)
    assert levels.dtype == torch.float32 and levels.shape == (256,)
    assert bool(((levels >= 0) & (levels < 1)).all())
    assert set(kinds.tolist()) == set(range(len(KINDS)))  # all kinds appear
    assert float(y.min()) >= -1e-5 and float(y.max()) <= 1 + 1e-5


def test_random_degrade_blur_and_mosaic_samples_equal_degrade_of_that_sample_alone(generator):
    x = torch.rand(64, 3, 32, 40, generator=generator)
    y, kinds, levels = random_degrade(x, generator=generator)
    for i in range(64):
        kind = KINDS[int(kinds[i])]
        if kind in ("blur", "mosaic"):
            alone = degrade(x[i : i + 1], kind, levels[i : i + 1])
            torch.testing.assert_close(y[i : i + 1], alone, rtol=0, atol=1e-5)


def test_random_degrade_dropout_samples_keep_the_right_number_of_patches(generator):
    x = positive_images(generator, 128, 32, 32)
    y, kinds, levels = random_degrade(x, generator=generator)
    is_dropout = kinds == KINDS.index("dropout")
    assert int(is_dropout.sum()) > 10
    counts = kept_patches(y[is_dropout], 8).flatten(1).sum(1)
    expected = torch.tensor([math.floor(16 * (1 - float(d))) for d in levels[is_dropout]])
    assert torch.equal(counts, expected)


def test_random_degrade_is_deterministic_for_a_seed(generator):
    x = torch.rand(32, 3, 32, 32, generator=generator)
    a = random_degrade(x, generator=torch.Generator().manual_seed(11))
    b = random_degrade(x, generator=torch.Generator().manual_seed(11))
    c = random_degrade(x, generator=torch.Generator().manual_seed(12))
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    assert not torch.equal(a[0], c[0])


def test_random_degrade_draws_only_the_configured_kinds(generator):
    x = torch.rand(32, 3, 32, 32, generator=generator)
    y, kinds, levels = random_degrade(x, generator=generator,
                                      config=DegradationConfig(kinds=("blur",)))
    assert bool((kinds == KINDS.index("blur")).all())
    torch.testing.assert_close(y, degrade(x, "blur", levels), rtol=0, atol=1e-6)


# --- CUDA -----------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_deterministic_kinds_on_cuda_match_cpu(generator):
    x = torch.rand(8, 3, 32, 48, generator=generator)
    levels = torch.rand(8, generator=generator)
    for kind in ("blur", "mosaic"):
        gpu = degrade(x.cuda(), kind, levels.cuda())
        torch.testing.assert_close(gpu.cpu(), degrade(x, kind, levels), rtol=0, atol=1e-5)
    g = torch.Generator(device="cuda").manual_seed(0)
    y, kinds, levels = random_degrade(x.cuda(), generator=g)
    assert y.device.type == kinds.device.type == levels.device.type == "cuda"


# --- argument validation --------------------------------------------------------------------

X = torch.rand(4, 3, 16, 16)


@pytest.mark.parametrize(
    ("x", "kind", "level", "match"),
    [
        pytest.param(X, "blur", 1.5, r"level must lie in \[0, 1\]", id="level_above_one"),
        pytest.param(X, "blur", -0.1, r"level must lie in \[0, 1\]", id="level_negative"),
        pytest.param(X, "mosaic", torch.tensor([0.1, 1.2, 0.0, 0.0]), r"level must lie in",
                     id="level_tensor_out_of_range"),
        pytest.param(X, "blur", torch.rand(3), r"level must be a float or a tensor of shape \(4,\)",
                     id="level_wrong_length"),
        pytest.param(X, "blur", torch.rand(4, 1), r"level must be .* shape \(4,\)",
                     id="level_2d"),
        pytest.param(X, "blur", float("nan"), r"level contains NaN", id="level_nan"),
        pytest.param(X, "blur", "0.5", r"level must be a float", id="level_str"),
        pytest.param(X, "sharpen", 0.5, r"kind must be one of .*diffusion.*blur.*dropout.*mosaic",
                     id="unknown_kind"),
        pytest.param(X[0], "blur", 0.5, r"x must have shape \(N, C, H, W\)", id="x_3d"),
        pytest.param(X * 2, "blur", 0.5, r"x must lie in \[0, 1\]", id="x_above_one"),
        pytest.param((X * 255).byte(), "blur", 0.5, r"x must be a float tensor.*/ 255",
                     id="x_uint8"),
    ],
)
def test_degrade_bad_input_raises_value_error_naming_the_argument(x, kind, level, match):
    with pytest.raises(ValueError, match=match):
        degrade(x, kind, level)


def test_random_degrade_bad_input_raises_value_error_naming_the_argument():
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        random_degrade(X - 0.5)
    with pytest.raises(ValueError, match=r"x must have shape"):
        random_degrade(X[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kinds": ("sharpen",)}, r"kinds must be drawn from .*diffusion.*unknown \['sharpen'\]"),
        ({"kinds": ("blur", "sharpen")}, r"kinds must be drawn from .*unknown \['sharpen'\]"),
        ({"kinds": ()}, r"kinds must name at least one of"),
        ({"kinds": ("blur", "blur")}, r"kinds must not repeat names, got \['blur'\]"),
        ({"kinds": "blur"}, r"kinds must be a list of names.*bare string 'blur'"),
        ({"dropout_patch": 0}, r"dropout_patch must be an int >= 1"),
        ({"diffusion_steps": 10.5}, r"diffusion_steps must be an int >= 1"),
        ({"beta_start": 0.5, "beta_end": 0.1}, r"beta_start and beta_end"),
        ({"blur_min_sigma": 0.0}, r"blur_min_sigma"),
    ],
)
def test_degradation_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DegradationConfig(**kwargs)


def test_degradation_config_keeps_the_kinds_as_a_tuple():
    """A YAML list becomes a tuple: the config stays hashable (it keys a cache)."""
    config = DegradationConfig(kinds=["mosaic", "blur"])
    assert config.kinds == ("mosaic", "blur")
    assert hash(config) == hash(DegradationConfig(kinds=("mosaic", "blur")))


def test_check_kinds_takes_one_name_or_a_list_and_keeps_the_order():
    assert check_kinds("dropout") == ("dropout",)
    assert check_kinds(["mosaic", "diffusion"]) == ("mosaic", "diffusion")
    with pytest.raises(ValueError, match=r"kinds must not repeat names"):
        check_kinds(["blur", "mosaic", "blur"])


@pytest.mark.parametrize(
    ("values", "match"),
    [
        pytest.param("ab", r"variants must be a list of names.*bare string 'ab'.*\['ab'\]",
                     id="bare_string"),
        pytest.param({"ab"}, r"variants must be a list of names", id="set_has_no_order"),
        pytest.param(None, r"variants must be a list of names", id="none"),
        pytest.param([], r"variants must name at least one of \('ab', 'cd', 'ef'\)", id="empty"),
        pytest.param(["ab", "xy"], r"variants must be drawn from .*unknown \['xy'\]",
                     id="unknown"),
        pytest.param(["ab", 1], r"variants must be drawn from .*unknown \[1\]", id="not_a_str"),
        pytest.param(["cd", "ab", "cd"], r"variants must not repeat names, got \['cd'\]",
                     id="repeated"),
    ],
)
def test_check_names_refuses_what_is_not_a_list_of_distinct_known_names(values, match):
    with pytest.raises(ValueError, match=match):
        check_names(values, ("ab", "cd", "ef"), "variants")


def test_check_names_returns_the_names_as_a_tuple_in_order():
    assert check_names(["ef", "ab"], ["ab", "cd", "ef"], "variants") == ("ef", "ab")
