"""The study's parameters (a profile) and where its files live.

A profile is a YAML file in ``notebooks/profiles/``: every parameter of every notebook, written
once there. Each notebook's ``parameters`` cell holds only the profile's name and overrides; the
next cell calls ``load_params`` and gets a validated ``StudyParams``. ``run_all.sh`` validates the
same way before it runs any notebook.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imlib.data import ImageData
from imlib.degradations import PAPER_EVAL, TRAIN, DegradationConfig
from imlib.train import VARIANTS, TrainConfig

__all__ = ["PROJECT_ROOT", "PROFILES_DIR", "EVAL_DEGRADATIONS", "PROTOCOLS", "REFERENCE_CODE",
           "StudyParams", "profiles", "load_params"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = PROJECT_ROOT / "notebooks" / "profiles"
EVAL_DEGRADATIONS = {"paper_eval": PAPER_EVAL, "train": TRAIN}

# How the runs of each variant are set up. "paper": the paper's text, the same for every variant
# (the profile's own fields). "reference-code": the public code's settings, which differ per
# variant; each is a TrainConfig field, so an ablation can flip one at a time. The holdout split
# is kept in both, so each protocol reports both the holdout- and the test-selected epoch.
PROTOCOLS = ("paper", "reference-code")
REFERENCE_CODE = {
    "all": {"batch_size": 128, "schedule": "cosine", "eta_min": 1e-6, "selection": "test"},
    "baseline": {"lr": 1e-3, "base_augment": True},
    "ls": {"lr": 1e-3, "base_augment": True},
    "im": {"lr": 5e-4, "base_augment": False},
    "level": {"lr": 5e-4, "base_augment": False},  # our control, set up like IM
}


@dataclass(frozen=True)
class StudyParams:
    """One profile's parameters; the meaning of each is in the profile files' comments."""

    profile: str
    dataset: str
    model: str
    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    schedule: str
    selection: str
    device: str
    amp: bool
    compile: bool
    eval_class: int
    eval_degradation: str
    nmi_pairs: int
    runs_dir: str
    figures_dir: str
    protocols: tuple[str, ...] = ("paper",)
    cifar100c_dir: str | None = None  # extracted CIFAR-100-C folder; None skips that section
    synthetic_per_class: int = 0  # synthetic data only (0 when the dataset is CIFAR-100)
    synthetic_classes: int = 0
    protocol: str | None = None  # the protocol the paths refer to; None: the first of protocols

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "protocols", tuple(self.protocols))
        if not self.protocols or any(p not in PROTOCOLS for p in self.protocols):
            raise ValueError(f"protocols must be a non-empty list drawn from {PROTOCOLS}, "
                             f"got {list(self.protocols)}")
        if self.protocol is None:
            object.__setattr__(self, "protocol", self.protocols[0])
        elif self.protocol not in self.protocols:
            raise ValueError(f"protocol must be one of protocols {list(self.protocols)}, "
                             f"got {self.protocol!r}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if not self.variants or unknown:
            raise ValueError(f"variants must be a non-empty list drawn from {VARIANTS}, "
                             f"got {list(self.variants)}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                 for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {list(self.seeds)}")
        if self.eval_degradation not in EVAL_DEGRADATIONS:
            raise ValueError(f"eval_degradation must be one of {tuple(EVAL_DEGRADATIONS)}, "
                             f"got {self.eval_degradation!r}")
        for name in ("eval_class", "nmi_pairs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        for variant in self.variants:  # validates the training fields
            self.train_config(variant, self.seeds[0])
        classes = self.synthetic_classes if self.dataset == "synthetic" else 100
        if self.eval_class >= classes:
            raise ValueError(f"eval_class must lie in [0, {classes}), got {self.eval_class}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StudyParams:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; allowed: {sorted(fields)}")
        missing = sorted(n for n, f in fields.items()
                         if f.default is dataclasses.MISSING and n not in values)
        if missing:
            raise ValueError(f"missing parameter(s) {missing}")
        return cls(**values)

    # --- the file layout: the same for every profile, so the notebooks read any of them -------

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path

    @property
    def runs(self) -> Path:
        """runs/<profile>: executed notebooks, checkpoints, result tables."""
        return self._path(self.runs_dir)

    @property
    def cifar100c(self) -> Path | None:
        """The CIFAR-100-C folder (relative paths from the project root), or None."""
        return None if self.cifar100c_dir is None else self._path(self.cifar100c_dir)

    def for_protocol(self, protocol: str) -> StudyParams:
        """The same study with its paths and training configs for ``protocol``."""
        return dataclasses.replace(self, protocol=protocol)

    @property
    def figures(self) -> Path:
        """paper_figures/<profile>/<protocol>: what notebook 05 writes."""
        return self._path(self.figures_dir) / self.protocol

    def train_dir(self, variant: str, seed: int) -> Path:
        return self.runs / "train" / self.protocol / variant / f"seed{seed}"

    @property
    def eval_dir(self) -> Path:
        return self.runs / "eval" / self.protocol

    @property
    def nmi_dir(self) -> Path:
        return self.runs / "nmi"

    @property
    def eval_degradation_config(self) -> DegradationConfig:
        return EVAL_DEGRADATIONS[self.eval_degradation]

    def load_data(self) -> ImageData:
        """The profile's data set, as its training runs load it."""
        return self.train_config(self.variants[0], self.seeds[0]).load_data()

    def train_config(self, variant: str, seed: int) -> TrainConfig:
        """The TrainConfig of one run of the study, under ``self.protocol``."""
        fields = dict(dataset=self.dataset, model=self.model, variant=variant,
                      epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                      weight_decay=self.weight_decay, schedule=self.schedule,
                      selection=self.selection, seed=seed, device=self.device, amp=self.amp,
                      compile=self.compile, out_dir=str(self.train_dir(variant, seed)))
        if self.dataset == "synthetic":
            fields.update(synthetic_per_class=self.synthetic_per_class,
                          synthetic_classes=self.synthetic_classes)
        if self.protocol == "reference-code":
            fields.update(REFERENCE_CODE["all"], **REFERENCE_CODE[variant])
        return TrainConfig(**fields)


def profiles() -> list[str]:
    """Names of the profiles in notebooks/profiles/."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_params(profile: str = "smoke", overrides: dict[str, Any] | None = None) -> StudyParams:
    """The validated parameters of ``profile`` with ``overrides`` applied on top."""
    if profile not in profiles():
        raise ValueError(f"unknown profile {profile!r}; available: {profiles()}")
    values = yaml.safe_load((PROFILES_DIR / f"{profile}.yaml").read_text())
    unknown = sorted(set(overrides or {}) - {f.name for f in dataclasses.fields(StudyParams)})
    if unknown:
        allowed = sorted(f.name for f in dataclasses.fields(StudyParams))
        raise ValueError(f"unknown parameter(s) {unknown}; allowed: {allowed}")
    return StudyParams.from_dict({**values, **(overrides or {})})
