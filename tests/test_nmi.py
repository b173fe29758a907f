"""imlib.nmi against scikit-learn's normalized_mutual_info_score on independently computed codes.

The oracle (``oracles.nmi_oracle``) bins in numpy (``floor(v * (bins - 1))`` on the float32
values), scores each channel with scikit-learn, and applies the contract's one deviation from
scikit-learn: a channel whose two entropies are both 0 contributes 0 (scikit-learn calls that a
perfect match and returns 1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import nmi_oracle

from imlib.degradations import degrade
from imlib.nmi import nmi

BINS = (2, 16, 64, 256)


def _smooth(x: torch.Tensor, passes: int) -> torch.Tensor:
    """Box-blurred copy of x, rescaled per image to span [0, 1] (a smooth, full-range image)."""
    for _ in range(passes):
        x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x - lo) / (hi - lo)).clamp(0, 1)


def _gradient(n: int, h: int, w: int) -> torch.Tensor:
    """Linear ramps in different directions per channel."""
    yy = torch.linspace(0, 1, h).view(h, 1).expand(h, w)
    xx = torch.linspace(0, 1, w).view(1, w).expand(h, w)
    img = torch.stack([yy, xx, (yy + xx) / 2])
    return img.expand(n, 3, h, w).clone()


def _noisy(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


# Each case builds a pair (x, y) from a generator and the photographs fixture.
CASES = {
    "random_independent_32x32": lambda g, ph: (
        torch.rand(4, 3, 32, 32, generator=g),
        torch.rand(4, 3, 32, 32, generator=g),
    ),
    "random_plus_noise_20x36": lambda g, ph: (
        (x := torch.rand(3, 3, 20, 36, generator=g)),
        _noisy(x, 0.1, g),
    ),
    "smooth_noise_vs_smoother_48x40": lambda g, ph: (
        (x := _smooth(torch.rand(3, 3, 48, 40, generator=g), 2)),
        _smooth(x, 3),
    ),
    "gradient_vs_noisy_gradient_32x64": lambda g, ph: (
        (x := _gradient(2, 32, 64)),
        _noisy(x, 0.05, g),
    ),
    "photos_64x64_noise": lambda g, ph: (ph((64, 64)), _noisy(ph((64, 64)), 0.08, g)),
    "photos_96x128_blur": lambda g, ph: (
        ph((96, 128)),
        degrade(ph((96, 128)), "blur", torch.tensor([0.01, 0.05, 0.3]), generator=g),
    ),
    "photos_64x64_mosaic": lambda g, ph: (
        ph((64, 64)),
        degrade(ph((64, 64)), "mosaic", torch.tensor([0.2, 0.4, 0.6]), generator=g),
    ),
    "photos_96x128_dropout": lambda g, ph: (
        ph((96, 128)),
        degrade(ph((96, 128)), "dropout", torch.tensor([0.1, 0.5, 0.9]), generator=g),
    ),
    "photos_64x96_diffusion": lambda g, ph: (
        ph((64, 96)),
        degrade(ph((64, 96)), "diffusion", torch.tensor([0.05, 0.2, 0.6]), generator=g),
    ),
}


@pytest.fixture(scope="module")
def pairs(photographs) -> dict:
    """Every case's (x, y), built once for all bins."""
    return {name: build(torch.Generator().manual_seed(0), photographs)
            for name, build in CASES.items()}


@pytest.mark.parametrize("bins", BINS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_nmi_matches_sklearn_per_channel_oracle(case, bins, pairs):
    """Random, smooth and photographic pairs, several sizes and bins: equal to the oracle."""
    x, y = pairs[case]
    got = nmi(x, y, bins=bins)
    expected = nmi_oracle(x, y, bins)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bins", (16, 64, 256))
def test_nmi_of_identical_nonconstant_images_is_one(bins, generator, photographs):
    x = torch.rand(2, 3, 24, 40, generator=generator)
    torch.testing.assert_close(nmi(x, x, bins=bins), torch.ones(2), rtol=0, atol=1e-6)
    photos = photographs((64, 64))
    torch.testing.assert_close(nmi(photos, photos, bins=bins), torch.ones(3), rtol=0, atol=1e-6)


def test_nmi_with_a_constant_degraded_image_is_zero(photographs):
    """A degraded image with no structure left carries no information: 0 (up to float rounding of
    H(x) + H(y) - H(x, y)), and 0 too, not scikit-learn's 1, when both images are constant."""
    x = photographs((64, 64))
    for y in (
        torch.zeros_like(x),
        torch.full_like(x, 0.5),
        degrade(x, "mosaic", 1.0),  # one block per channel: constant
        degrade(x, "dropout", 1.0),  # every patch dropped: all zeros
    ):
        torch.testing.assert_close(nmi(x, y), torch.zeros(3), rtol=0, atol=1e-7)
    # Both constant in every channel: still 0 (the contract's convention).
    z = torch.full((2, 3, 16, 16), 0.25)
    assert torch.equal(nmi(z, z), torch.zeros(2))


def test_channel_constant_in_both_images_contributes_zero(generator):
    """Channel 0 constant in x and y, channels 1 and 2 identical and varied: (0 + 1 + 1) / 3."""
    x = torch.rand(2, 3, 32, 32, generator=generator)
    x[:, 0] = 0.5
    y = x.clone()
    expected = torch.full((2,), 2 / 3)
    torch.testing.assert_close(nmi(x, y), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(nmi_oracle(x, y, 64), expected.numpy(), rtol=0, atol=1e-6)


def test_nmi_lies_in_unit_interval_and_is_float32_of_shape_n(generator):
    x = torch.rand(16, 3, 24, 24, generator=generator, dtype=torch.float64)
    mix = torch.rand(16, 1, 1, 1, generator=generator, dtype=torch.float64)
    y = mix * x + (1 - mix) * torch.rand(x.shape, generator=generator, dtype=torch.float64)
    for bins in BINS:
        out = nmi(x, y, bins=bins)
        assert out.shape == (16,) and out.dtype == torch.float32
        assert bool(((out >= 0) & (out <= 1)).all())


def test_batched_nmi_equals_a_loop_over_samples(generator, photographs):
    x = torch.cat([photographs((40, 56)), torch.rand(3, 3, 40, 56, generator=generator)])
    y = degrade(x, "diffusion", torch.linspace(0.05, 0.6, 6), generator=generator)
    batched = nmi(x, y, bins=32)
    looped = torch.cat([nmi(x[i : i + 1], y[i : i + 1], bins=32) for i in range(6)])
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-7)


def test_non_contiguous_inputs_give_the_same_result(generator, photographs):
    """channels_last tensors and strided crops (views) are valid images too."""
    x = photographs((96, 128))
    y = degrade(x, "blur", 0.02)
    expected = nmi(x, y)
    cl = nmi(x.contiguous(memory_format=torch.channels_last),
             y.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, expected, rtol=0, atol=0)
    crop = nmi(x[:, :, 8:72:2, 16:112:3], y[:, :, 8:72:2, 16:112:3])
    expected_crop = nmi(x[:, :, 8:72:2, 16:112:3].contiguous(),
                        y[:, :, 8:72:2, 16:112:3].contiguous())
    torch.testing.assert_close(crop, expected_crop, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nmi_on_cuda_matches_cpu(generator, photographs):
    x = torch.cat([photographs((96, 128)), torch.rand(5, 3, 96, 128, generator=generator)])
    y = degrade(x, "dropout", torch.linspace(0.1, 0.9, 8), generator=generator)
    y = _noisy(y, 0.05, generator)
    for bins in BINS:
        cpu = nmi(x, y, bins=bins)
        gpu = nmi(x.cuda(), y.cuda(), bins=bins)
        assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-6)


# --- argument validation --------------------------------------------------------------------

GOOD = torch.rand(2, 3, 8, 8)


def _with(value: float) -> torch.Tensor:
    bad = GOOD.clone()
    bad[1, 2, 3, 4] = value
    return bad


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        pytest.param(GOOD[0], GOOD[0], {}, r"x must have shape \(N, C, H, W\)", id="x_3d"),
        pytest.param(GOOD, GOOD[:, :, :, :4], {}, r"x and y must have the same shape",
                     id="shape_mismatch"),
        pytest.param(GOOD, GOOD[:1], {}, r"x and y must have the same shape", id="batch_mismatch"),
        pytest.param(_with(float("nan")), GOOD, {}, r"x contains NaN", id="x_nan"),
        pytest.param(GOOD, _with(float("inf")), {}, r"y contains NaN or inf", id="y_inf"),
        pytest.param(GOOD * 255, GOOD, {}, r"x must lie in \[0, 1\].*/ 255",
                     id="x_above_one"),
        pytest.param(GOOD, _with(-0.5), {}, r"y must lie in \[0, 1\].*/ 255",
                     id="y_negative"),
        pytest.param((GOOD * 255).to(torch.uint8), GOOD, {}, r"x must be a float tensor.*/ 255",
                     id="x_uint8"),
        pytest.param(GOOD, GOOD, {"bins": 1}, r"bins must be an int >= 2", id="bins_1"),
        pytest.param(GOOD, GOOD, {"bins": 0}, r"bins must be an int >= 2", id="bins_0"),
        pytest.param(GOOD, GOOD, {"bins": 16.0}, r"bins must be an int", id="bins_float"),
        pytest.param(GOOD, GOOD, {"bins": True}, r"bins must be an int", id="bins_bool"),
        pytest.param(GOOD.numpy(), GOOD, {}, r"x must be a torch.Tensor", id="x_numpy"),
        pytest.param(GOOD[:0], GOOD[:0], {}, r"at least one image.*\(0, 3, 8, 8\)",
                     id="empty_batch"),
        pytest.param(GOOD[:, :, :0], GOOD[:, :, :0], {}, r"at least one image.*\(2, 3, 0, 8\)",
                     id="empty_image"),
        pytest.param(GOOD[:, :0], GOOD[:, :0], {}, r"at least one image.*\(2, 0, 8, 8\)",
                     id="no_channels"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nmi(x, y, **kwargs)


def test_large_images_match_the_oracle(generator):
    """Past 2**15 pixels a count could overflow int16: the int32 path must agree too."""
    x = torch.rand(1, 3, 192, 192, generator=generator)
    y = (x + 0.1 * torch.rand(x.shape, generator=generator)).clamp(0, 1)
    np.testing.assert_allclose(nmi(x, y).numpy(), nmi_oracle(x, y, 64), rtol=0, atol=1e-6)
