"""The study's variants (label policies), each declared once as a :class:`Variant` spec.

A variant says how a training batch's smoothing eps is made and what it reads for that (the
NMI of each degraded image, its degradation level, or nothing), how the soft target spreads
eps over the other classes, whether its training degrades the images, the settings the public
reference code trains it with, and its label and colour in every figure. Training
(:func:`imlib.train.training_batch`), the study's protocols, the style and the report read these
specs; nothing else switches on a variant's name. ``VARIANT_SPECS.registered(Variant(...))``
adds one (a test's toy variant, an ablation) without editing any module.

The variants:

- ``baseline``: hard labels; ``ls``: fixed label smoothing ``ls_eps`` (torch's convention);
- ``im``: Information Matching, ``eps = clamp(1 - NMI, 0, im_max_eps)`` per image;
- ``level``: ``eps = clamp(d, 0, im_max_eps)``, the control that asks whether NMI adds
  anything over the degradation level the augmentation already knows;
- ``im-binned``: IM's eps shuffled among the images of the batch that share a kind and a level
  bin (tenths of d): the same eps per (kind, level) as IM, without its per-image part;
- ``clean``: no degradation and hard labels, the reference for what the degradations cost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from imlib.labels import im_eps
from imlib.registry import Registry

if TYPE_CHECKING:
    from imlib.runs import TrainConfig

__all__ = ["Variant", "BatchDraws", "VARIANT_SPECS", "VARIANTS", "NEEDS", "LEVEL_BINS",
           "variant_smoothing"]

NEEDS = ("nothing", "nmi", "level")  # what a variant's eps reads of each training image
LEVEL_BINS = 10  # im-binned's level bins: tenths of d, as the evaluation's level grid


@dataclass(frozen=True)
class BatchDraws:
    """What a variant's eps may read of one training batch: labels (N,), and, when the run
    degrades, each image's kind index and level (N,); ``nmi`` (N,) when the variant needs it;
    the run's generator for a variant that draws."""

    labels: Tensor
    kinds: Tensor | None
    levels: Tensor | None
    nmi: Tensor | None
    generator: torch.Generator | None


@dataclass(frozen=True)
class Variant:
    """One label policy of the study.

    ``eps(config, draws)`` is the smoothing per sample (N,) in [0, 1]; ``needs`` is what it
    reads (``NEEDS``: training computes the NMI only for a variant that needs it); ``spread``
    is how the soft target spreads eps (``"all"``: ``(1 - eps) onehot + eps / K``, torch's
    label smoothing; ``None``: the run's ``im_spread``); ``degrades``: whether its training
    images are degraded (when the run's ``degrade`` is on); ``reference_code``: the settings the
    public scripts train it with (the ``reference-code`` protocol pins them).
    """

    name: str
    label: str  # as figures and tables print it
    color: str  # its colour in every figure, far from every kind's (a test checks)
    eps: Callable[[TrainConfig, BatchDraws], Tensor]
    needs: str = "nothing"
    spread: str | None = None
    degrades: bool = True
    reference_code: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.needs not in NEEDS:
            raise ValueError(f"variant {self.name!r}: needs must be one of {NEEDS}, "
                             f"got {self.needs!r}")
        if self.needs != "nothing" and not self.degrades:
            raise ValueError(f"variant {self.name!r} reads the degradation ({self.needs}), "
                             "so it must degrade")

    def spread_for(self, config: TrainConfig) -> str:
        """The spread of its targets under ``config``."""
        return self.spread or config.im_spread


VARIANT_SPECS: Registry[Variant] = Registry("variant")
VARIANTS = VARIANT_SPECS.names  # every registered variant's name, in registration order (live)


def _constant(value: Callable[[TrainConfig], float]) -> Callable[[TrainConfig, BatchDraws], Tensor]:
    """A fixed eps per run, on the labels' device."""
    return lambda config, draws: torch.full(draws.labels.shape, value(config),
                                            device=draws.labels.device)


def _binned_im_eps(config: TrainConfig, draws: BatchDraws) -> Tensor:
    """IM's eps, permuted at random among the images that share a kind and a level bin.

    One sort by (bin, random key) lists each bin's images in a random order, a stable sort by
    bin alone in their batch order; both list the bins alike, so handing the i-th of one the
    eps of the i-th of the other permutes eps within every bin. Batched, no host sync.
    """
    eps = im_eps(draws.nmi, config.im_max_eps)
    bins = draws.kinds * LEVEL_BINS + (draws.levels * LEVEL_BINS).long().clamp(max=LEVEL_BINS - 1)
    noise = torch.rand(eps.shape, generator=draws.generator, device=eps.device)
    shuffled = torch.argsort(bins.double() + noise.double() * 0.5)
    ordered = torch.argsort(bins, stable=True)
    out = torch.empty_like(eps)
    out[shuffled] = eps[ordered]
    return out


_LIKE_BASELINE = {"lr": 1e-3, "base_augment": True}  # the public baseline and LS scripts
_LIKE_IM = {"lr": 5e-4, "base_augment": False}  # the public IM script

# Colours: seaborn's colorblind palette; none is a kind's colour.
VARIANT_SPECS.register(Variant(
    "baseline", "Baseline", "#0173b2", _constant(lambda config: 0.0), spread="all",
    reference_code=_LIKE_BASELINE, description="hard labels"))
VARIANT_SPECS.register(Variant(
    "ls", "LS", "#de8f05", _constant(lambda config: config.ls_eps), spread="all",
    reference_code=_LIKE_BASELINE, description="fixed label smoothing ls_eps"))
VARIANT_SPECS.register(Variant(
    "im", "IM", "#029e73", lambda config, draws: im_eps(draws.nmi, config.im_max_eps),
    needs="nmi", reference_code=_LIKE_IM, description="eps = clamp(1 - NMI, 0, im_max_eps)"))
VARIANT_SPECS.register(Variant(
    "level", "Level", "#cc78bc",
    lambda config, draws: draws.levels.clamp(0, config.im_max_eps), needs="level",
    reference_code=_LIKE_IM, description="eps = clamp(d, 0, im_max_eps): our control"))
VARIANT_SPECS.register(Variant(
    "im-binned", "IM binned", "#56b4e9", _binned_im_eps, needs="nmi", reference_code=_LIKE_IM,
    description="IM's eps shuffled within kind x level bins: no per-image part"))
VARIANT_SPECS.register(Variant(
    "clean", "Clean", "#ca9161", _constant(lambda config: 0.0), spread="all", degrades=False,
    reference_code=_LIKE_BASELINE, description="no degradation, hard labels"))


def variant_smoothing(config: TrainConfig, draws: BatchDraws) -> tuple[Tensor, str]:
    """``config.variant``'s smoothing eps per sample and the spread of its targets
    (:func:`imlib.labels.soft_targets`)."""
    spec = VARIANT_SPECS[config.variant]
    return spec.eps(config, draws), spec.spread_for(config)
