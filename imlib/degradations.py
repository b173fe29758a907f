"""The four degradative augmentations, batched with one level per sample.

Semantics follow the paper's public training code on an ``H x W`` image with level ``d``:

- ``diffusion``: the DDPM forward process, ``t = floor(d (T - 1))``; identity when ``t == 0``.
- ``blur``: Gaussian with ``sigma = max_sigma d + 0.01`` and reflect padding.
- ``dropout``: ``floor(P (1 - d))`` of the ``P`` square patches are kept, the rest set to 0.
- ``mosaic``: ``b x b`` blocks (``b = max(1, floor(max(H, W) (d + 0.001)^2))``) replaced by their
  per-channel mean.

Each kind is a :class:`Kind` spec in ``KIND_SPECS``, declared once: how it degrades a batch,
whether it commutes with the normalisation, and its label, colour and marker in every figure.
Blur and mosaic are linear and separable, so both become one pair of per-sample matrices,
``x' = A_h @ x @ A_w^T``: a whole mixed batch is degraded by one batched matmul, one mask and one
noise draw, with no Python loop over samples, blocks or patches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from imlib._checks import as_levels, check_choice, check_images, check_int, check_names
from imlib.registry import Registry

__all__ = ["Kind", "KIND_SPECS", "KINDS", "PAPER_KINDS", "LEVELS", "DegradationConfig", "TRAIN",
           "PAPER_EVAL", "degrade", "random_degrade", "check_kinds", "check_levels"]

KIND_SPECS: Registry[Kind] = Registry("degradation kind")
KINDS = KIND_SPECS.names  # every registered kind's name, in registration order (live)
PAPER_KINDS = ("diffusion", "blur", "dropout", "mosaic")  # the paper's four, trained by default
LEVELS = tuple(round(0.1 * i, 1) for i in range(11))  # the paper's evaluation levels 0, 0.1, ..., 1


@dataclass(frozen=True)
class DegradationConfig:
    """Every constant of the degradations, written once.

    The defaults are the paper's training code; ``PAPER_EVAL`` holds the values its evaluation
    script used instead.
    """

    kinds: tuple[str, ...] = PAPER_KINDS  # kinds random_degrade draws from, uniformly per sample
    diffusion_steps: int = 1000  # DDPM T
    beta_start: float = 1e-4  # linear beta schedule of DDPM (Ho et al. 2020)
    beta_end: float = 0.02
    blur_max_sigma: float = 50.0  # sigma at level 1, in pixels
    blur_min_sigma: float = 0.01  # sigma at level 0 (a 1-tap kernel: identity)
    blur_max_kernel: int = 51  # cap on the kernel size (made odd)
    dropout_patch: int = 8  # side of a dropout patch, pixels
    mosaic_offset: float = 0.001  # b = floor(max(H, W) (d + offset)^2)

    def __post_init__(self) -> None:
        # A tuple whatever sequence was given (a YAML list), so the config stays hashable.
        object.__setattr__(self, "kinds", check_names(self.kinds, KINDS, "kinds"))
        for name in ("diffusion_steps", "blur_max_kernel", "dropout_patch"):
            check_int(getattr(self, name), name, 1)
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError("beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1")
        if self.blur_max_sigma < 0 or self.blur_min_sigma <= 0:
            raise ValueError("blur_max_sigma must be >= 0 and blur_min_sigma > 0")


def check_kinds(kinds: str | Sequence[str]) -> tuple[str, ...]:
    """``kinds`` (a name or a sequence of distinct names from ``KINDS``) as a tuple."""
    return check_names((kinds,) if isinstance(kinds, str) else kinds, KINDS, "kinds")


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """``levels`` (distinct numbers in [0, 1]) as a tuple of floats."""
    try:
        values = tuple(float(v) for v in levels if not isinstance(v, bool))
    except (TypeError, ValueError):
        raise ValueError(f"levels must be a sequence of numbers in [0, 1], got {levels!r}"
                         ) from None
    if (not values or len(values) != len(levels) or len(set(values)) != len(values)
            or not all(0 <= v <= 1 for v in values)):
        raise ValueError(f"levels must be a non-empty list of distinct numbers in [0, 1], "
                         f"got {list(levels)}")
    return values




# --- the per-kind building blocks ------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _alpha_bar(cfg: DegradationConfig, device: torch.device) -> Tensor:
    """Cumulative products of (1 - beta_t), made once per config and device."""
    betas = torch.linspace(cfg.beta_start, cfg.beta_end, cfg.diffusion_steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0).to(device=device, dtype=torch.float32)


def _diffuse(x: Tensor, level: Tensor, noise: Tensor, active: Tensor,
            cfg: DegradationConfig) -> Tensor:
    """DDPM forward step ``t = floor(d (T - 1))`` on images mapped to [-1, 1], back to [0, 1]:

        clamp(((sqrt(abar_t) (2x - 1) + sqrt(1 - abar_t) eps) + 1) / 2, 0, 1)
        = clamp(s x + (1 - s) / 2 + r eps / 2, 0, 1),   s = sqrt(abar_t), r = sqrt(1 - abar_t)

    Samples that are not ``active`` or have ``t == 0`` get s = 1, r = 0: themselves.
    """
    t = (level * (cfg.diffusion_steps - 1)).floor().long()
    abar = torch.where(active & (t > 0), _alpha_bar(cfg, x.device)[t], 1.0).view(-1, 1, 1, 1)
    s, r = abar.sqrt(), (1 - abar).sqrt()
    out = torch.addcmul(x * s + (1 - s) / 2, noise, r / 2)
    return torch.where(r > 0, out.clamp(0, 1), out)


def _reflect(index: Tensor, size: int) -> Tensor:
    """Map integer positions to ``[0, size)`` by mirror reflection without repeating the edge."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index < size, index, period - index)


def _blur_matrices(level: Tensor, size: int, cfg: DegradationConfig) -> Tensor:
    """Per-sample (size x size) matrices of a 1-D Gaussian blur with reflect padding.

    Sample n has ``sigma_n = max_sigma d_n + min_sigma`` and kernel ``k_n = min(2 floor(4 sigma
    + 0.5) + 1, cap)``; its taps are those of torchvision's ``gaussian_blur``. Row i of the
    matrix holds the weights that output pixel i gives to every input pixel.
    """
    cap = cfg.blur_max_kernel if cfg.blur_max_kernel % 2 else cfg.blur_max_kernel - 1
    sigma = cfg.blur_max_sigma * level + cfg.blur_min_sigma  # (N,)
    ksize = (2 * torch.floor(4 * sigma + 0.5) + 1).clamp(max=cap)  # (N,) odd
    radius = cap // 2
    offsets = torch.arange(-radius, radius + 1, device=level.device, dtype=torch.float32)
    taps = torch.exp(-0.5 * (offsets / sigma[:, None]) ** 2)
    taps = taps * (offsets.abs() <= (ksize[:, None] - 1) / 2)
    taps = taps / taps.sum(1, keepdim=True)  # (N, 2 radius + 1)
    position = torch.arange(size, device=level.device)
    source = _reflect(position[:, None] + offsets.long()[None, :], size)  # (size, taps)
    onehot = (source[..., None] == position).to(taps.dtype)  # (size, taps, size)
    return torch.einsum("nk,ikj->nij", taps, onehot)


def _mosaic_matrices(level: Tensor, size: int, longest: int, cfg: DegradationConfig) -> Tensor:
    """Per-sample (size x size) block-averaging matrices; edge blocks may be partial."""
    block = torch.floor(longest * (level + cfg.mosaic_offset) ** 2).clamp(min=1)  # (N,)
    position = torch.arange(size, device=level.device, dtype=torch.float32)
    block_of = torch.floor(position[None, :] / block[:, None])  # (N, size)
    same = (block_of[:, :, None] == block_of[:, None, :]).float()
    return same / same.sum(2, keepdim=True)


def _dropout_mask(level: Tensor, scores: Tensor, keep_all: Tensor, h: int, w: int,
                  cfg: DegradationConfig) -> Tensor:
    """(N, 1, H, W) mask keeping the ``floor(P (1 - d))`` patches with the lowest scores, or
    every patch where ``keep_all`` (N, 1) is set."""
    p = cfg.dropout_patch
    cols = -(-w // p)
    n_patches = scores.shape[1]
    keep = torch.floor(n_patches * (1 - level) + 1e-6).long()  # (N,); 1e-6 absorbs float error
    rank = scores.argsort(dim=1).argsort(dim=1)  # rank of each patch's score within its sample
    kept = (rank < keep[:, None]) | keep_all  # (N, P)
    patch_of = (torch.arange(h, device=level.device)[:, None] // p) * cols + (
        torch.arange(w, device=level.device)[None, :] // p
    )
    return kept[:, patch_of].unsqueeze(1)


@functools.lru_cache(maxsize=16)
def _kind_indices(kinds: tuple[str, ...], device: torch.device) -> Tensor:
    """Indices into KINDS of ``kinds``, made once per device (no host copy per batch)."""
    return torch.tensor([KINDS.index(k) for k in kinds], device=device)


def _patch_count(h: int, w: int, cfg: DegradationConfig) -> int:
    return math.ceil(h / cfg.dropout_patch) * math.ceil(w / cfg.dropout_patch)


def _dropout(x: Tensor, level: Tensor, active: Tensor, generator: torch.Generator | None,
             cfg: DegradationConfig) -> Tensor:
    """Patch dropout of the ``active`` samples: one ``rand`` (N, P) of patch scores."""
    n, _, h, w = x.shape
    scores = torch.rand(n, _patch_count(h, w, cfg), generator=generator, device=x.device)
    return x * _dropout_mask(level, scores, ~active[:, None], h, w, cfg).to(x.dtype)


def _diffusion(x: Tensor, level: Tensor, active: Tensor, generator: torch.Generator | None,
               cfg: DegradationConfig) -> Tensor:
    """DDPM noise on the ``active`` samples: one ``randn`` of x's shape."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return _diffuse(x, level, noise, active, cfg)


# --- the kinds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A degradation kind, declared once: how it degrades a batch and how figures show it.

    A *linear* kind gives ``matrices(level, size, longest_side, config)``: per-sample
    (N, size, size) operators whose rows sum to 1, applied to rows and columns. Such a kind
    commutes with the per-channel normalisation, so both evaluation orders give the same
    images (evaluation computes it once). Any other kind gives ``apply(x, level, active,
    generator, config)``, which degrades the ``active`` samples (N,) of the batch and leaves
    the rest as they are; it runs after the linear kinds, in increasing ``stage``, the order
    in which the kinds draw their randomness (which fixes every random stream).
    """

    name: str
    label: str  # as figures print it
    color: str  # its colour in every figure, far from every variant's (a test checks)
    marker: str  # matplotlib marker of its points
    matrices: Callable[[Tensor, int, int, DegradationConfig], Tensor] | None = None
    apply: Callable[[Tensor, Tensor, Tensor, torch.Generator | None, DegradationConfig],
                    Tensor] | None = None
    stage: int = 0

    def __post_init__(self) -> None:
        if (self.matrices is None) == (self.apply is None):
            raise ValueError(f"kind {self.name!r} needs exactly one of matrices (a linear kind) "
                             "or apply")

    @property
    def linear(self) -> bool:
        """Whether it is linear and mean-preserving: it commutes with the normalisation."""
        return self.matrices is not None


# Colours: Paul Tol's wine, indigo, olive and teal, far from every variant colour.
KIND_SPECS.register(Kind("diffusion", "Diffusion noise", "#882255", "o", apply=_diffusion,
                         stage=2))
KIND_SPECS.register(Kind("blur", "Gaussian blur", "#332288", "s",
                         matrices=lambda level, size, _, cfg: _blur_matrices(level, size, cfg)))
KIND_SPECS.register(Kind("dropout", "Patch dropout", "#999933", "^", apply=_dropout, stage=1))
KIND_SPECS.register(Kind("mosaic", "Mosaic", "#44aa99", "D", matrices=_mosaic_matrices))

TRAIN = DegradationConfig()
PAPER_EVAL = DegradationConfig(blur_max_sigma=10.0, blur_max_kernel=11, dropout_patch=4)


# --- the batched application --------------------------------------------------------------------


def _apply(x: Tensor, kind_index: Tensor, level: Tensor, present: set[str], cfg: DegradationConfig,
           generator: torch.Generator | None) -> Tensor:
    """Degrade sample n with kind ``KINDS[kind_index[n]]`` at ``level[n]``.

    Every stage runs on the whole batch with per-sample parameters that are the identity for
    the samples of other kinds, so a mixed batch costs one pass per stage: one matmul for all
    linear kinds, then each other kind in its ``stage`` order. ``present`` names the kinds that
    occur, so a single-kind call draws only the randomness it needs (diffusion: one ``randn``
    of x's shape; dropout: one ``rand`` (N, P) of patch scores).
    """
    n, _, h, w = x.shape
    specs = [KIND_SPECS[name] for name in KINDS if name in present]
    linear = [spec for spec in specs if spec.linear]
    out = x
    if linear:
        masks = [(kind_index == KINDS.index(spec.name)).view(n, 1, 1) for spec in linear]

        def operator(size: int) -> Tensor:
            m = torch.eye(size, device=x.device).expand(n, size, size)
            for spec, mask in zip(linear, masks, strict=True):
                m = torch.where(mask, spec.matrices(level, size, max(h, w), cfg), m)
            return m.to(x.dtype).unsqueeze(1)  # (N, 1, size, size), broadcast over channels

        out = operator(h) @ out @ operator(w).transpose(-1, -2)
    for spec in sorted((s for s in specs if not s.linear), key=lambda s: s.stage):
        out = spec.apply(out, level, kind_index == KINDS.index(spec.name), generator, cfg)
    return out


def degrade(x: Tensor, kind: str, level: float | Tensor, generator: torch.Generator | None = None,
            config: DegradationConfig = TRAIN, validate_args: bool = True) -> Tensor:
    """Degrade every image of ``x`` with ``kind`` at ``level`` (a float or one per sample).

    Args:
        x: float images (N, C, H, W) in [0, 1].
        kind: one of ``KINDS``.
        level: float or tensor (N,) in [0, 1]; 0 leaves the image as it is.
        generator: source of randomness for ``diffusion`` and ``dropout`` (on x's device).
        config: the degradation constants (``TRAIN`` by default, ``PAPER_EVAL`` for the
            paper's evaluation settings).

    >>> x = torch.rand(2, 3, 32, 32)
    >>> degrade(x, "mosaic", 1.0).std(dim=(2, 3)).max() < 1e-6
    tensor(True)
    """
    check_images(x, "x", values=validate_args)
    check_choice(kind, KINDS, "kind")
    level = as_levels(level, x.shape[0], x.device, values=validate_args)
    kind_index = torch.full((x.shape[0],), KINDS.index(kind), device=x.device)
    return _apply(x, kind_index, level, {kind}, config, generator)


def random_degrade(x: Tensor, generator: torch.Generator | None = None,
                   config: DegradationConfig = TRAIN,
                   validate_args: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """The paper's training augmentation: per sample, a kind drawn uniformly from
    ``config.kinds`` and a level ``d ~ U(0, 1)``.

    Returns ``(x_degraded, kinds, levels)``: kinds as int64 indices into ``KINDS``, levels
    float32 (N,).
    """
    check_images(x, "x", values=validate_args)
    n = x.shape[0]
    draw = torch.randint(len(config.kinds), (n,), generator=generator, device=x.device)
    kind_index = _kind_indices(config.kinds, x.device)[draw]
    level = torch.rand(n, generator=generator, device=x.device)
    return _apply(x, kind_index, level, set(config.kinds), config, generator), kind_index, level
