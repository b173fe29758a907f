"""Shared fixtures: real photographs (scikit-image's bundled samples) and seeded generators.

Nothing here is autouse: the fixtures only run for the tests that ask for them.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch

pytest_plugins = ["pipeline_fixtures"]  # the runner's fixtures, for its test modules

PHOTOS = ("astronaut", "chelsea", "coffee")  # bundled with scikit-image: no download
FIRST = "test_notebooks.py"  # the longest module (a tiny study): started first, beside the rest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The notebook module first: with ``-n 2`` (``./run_all.sh test``) one process runs it
    while the other runs every other module, instead of the study starting last, alone."""
    items.sort(key=lambda item: item.path.name != FIRST)


@cache
def _photo(name: str) -> torch.Tensor:
    """One scikit-image photograph as a float tensor (1, 3, H, W) in [0, 1] (full size)."""
    from skimage import data

    rgb = np.ascontiguousarray(getattr(data, name)())  # (H, W, 3) uint8
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255


@cache
def _photographs(size: tuple[int, int]) -> torch.Tensor:
    resized = [
        torch.nn.functional.interpolate(
            _photo(name), size=size, mode="bilinear", antialias=True, align_corners=False
        )
        for name in PHOTOS
    ]
    return torch.cat(resized).clamp_(0, 1)


@pytest.fixture(scope="session")
def photographs():
    """``photographs((H, W))`` -> the three photographs (3, 3, H, W), float32 in [0, 1].

    Downscaled with antialiasing (a convex combination of pixels, so still in [0, 1]); the result
    is cached, so callers must not modify it in place.
    """
    return _photographs


@pytest.fixture(scope="session")
def photo_crops():
    """``photo_crops((h, w), (H, W))`` -> the four corner crops (h, w) of each photograph
    downscaled to (H, W): 12 distinct natural images (12, 3, h, w)."""

    def crops(size: tuple[int, int], full: tuple[int, int]) -> torch.Tensor:
        images = _photographs(full)
        (h, w), (big_h, big_w) = size, full
        out = [
            images[:, :, i : i + h, j : j + w] for i in (0, big_h - h) for j in (0, big_w - w)
        ]
        return torch.cat(out).contiguous()

    return crops


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator with a fixed seed, fresh for every test."""
    return torch.Generator().manual_seed(0)
