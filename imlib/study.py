"""The study's parameters (a profile) and where its files live.

A profile is a YAML file in ``notebooks/profiles/``. It holds two kinds of keys:

- the study's own (``STUDY_FIELDS``): which variants, seeds and protocols, the evaluation class,
  the folders;
- any field of :class:`imlib.runs.TrainConfig` that shapes a run (``TRAINING_FIELDS``): each
  default is written once, in ``TrainConfig``, and a profile or ``-p FIELD VALUE`` changes it.

Each notebook's ``parameters`` cell holds only the profile's name and overrides; the next cell
calls ``load_params`` and gets a validated ``StudyParams``. ``run_all.sh`` validates the same way
before it runs any notebook. Loading a profile resolves no device, so a GPU profile's figures can
be redrawn on a laptop from runs copied from a server.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from imlib._checks import check_int, check_names
from imlib.data import ImageData
from imlib.datasets import dataset_classes
from imlib.degradations import PAPER_EVAL, TRAIN, DegradationConfig
from imlib.io import PROJECT_ROOT, project_path
from imlib.launch import check_launcher
from imlib.runs import TrainConfig
from imlib.variants import VARIANT_SPECS, VARIANTS

__all__ = ["PROFILES_DIR", "EVAL_DEGRADATIONS", "PROTOCOLS", "REFERENCE_CODE_ALL", "pinned",
           "STUDY_FIELDS", "TRAINING_FIELDS", "PATH_FIELDS", "NMI_MAX_BINS", "StudyRun",
           "StudyParams", "profiles", "parse_override", "load_params"]

PROFILES_DIR = PROJECT_ROOT / "notebooks" / "profiles"
EVAL_DEGRADATIONS = {"paper_eval": PAPER_EVAL, "train": TRAIN}

# How the runs of each variant are set up. "paper": the paper's text, the same for every variant
# (the profile's own training fields). "reference-code": the public code's scripts
# (scripts/train_*.py of the author's repository), which differ per variant (each variant's
# spec holds its own: imlib.variants); each difference is a TrainConfig field, so an ablation
# can flip one at a time. Those scripts train on all 50,000 images in fp32 and keep the epoch
# of best *test* accuracy; IM's targets spread eps over all K classes, (1 - eps) onehot + eps / K.
PROTOCOLS = ("paper", "reference-code")
REFERENCE_CODE_ALL = {"batch_size": 128, "schedule": "cosine", "eta_min": 1e-6,
                      "selection": "test", "holdout_fraction": 0.0, "amp": False,
                      "im_spread": "all"}

# TrainConfig fields set per run by the study itself, never by a profile.
_PER_RUN_FIELDS = ("variant", "seed", "out_dir", "resume")
TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                        if f.name not in _PER_RUN_FIELDS)


@dataclass(frozen=True)
class StudyRun:
    """One training run of the study: its protocol, variant, seed and full config."""

    protocol: str
    variant: str
    seed: int
    config: TrainConfig

    @property
    def dir(self) -> Path:
        """The run's folder (history, checkpoints, result.json)."""
        return Path(self.config.out_dir)

    @property
    def name(self) -> str:
        return f"{self.protocol}/{self.variant}/seed{self.seed}"


@dataclass(frozen=True)
class StudyParams:
    """One profile's parameters: the study's own fields and its base ``TrainConfig``.

    ``training`` holds the profile's training settings; its ``variant``, ``seed`` and
    ``out_dir`` are placeholders that ``train_config`` fills per run.
    """

    profile: str
    training: TrainConfig
    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    runs_dir: str
    figures_dir: str
    protocols: tuple[str, ...] = ("paper",)
    # The companion's own controls (imlib.variants: level, im-binned, clean), trained under the
    # paper protocol only: the public code, which the reference-code protocol follows, has none.
    ablations: tuple[str, ...] = ()
    eval_class: int = 0  # the class of Figs. 3-5 (apple in CIFAR-100)
    eval_degradation: str = "paper_eval"  # constants of the sweeps: paper_eval | train
    nmi_pairs: int = 512  # image pairs of notebook 02's NMI validation
    cifar100c_dir: str | None = None  # extracted CIFAR-100-C folder; None skips that section
    launcher: str = "inline"  # how notebook 03 trains the runs: inline | local | slurm
    jobs: int | None = None  # runs trained at once as jobs; None: one per GPU (slurm: all)
    slurm: dict[str, Any] | None = None  # launcher slurm's settings (imlib.launch)

    def __post_init__(self) -> None:
        if not isinstance(self.training, TrainConfig):
            raise ValueError(f"training must be a TrainConfig, got {type(self.training).__name__}")
        object.__setattr__(self, "variants", check_names(self.variants, VARIANTS, "variants"))
        object.__setattr__(self, "protocols", check_names(self.protocols, PROTOCOLS, "protocols"))
        object.__setattr__(self, "ablations", () if not self.ablations else
                           check_names(self.ablations, VARIANTS, "ablations"))
        both = sorted(set(self.variants) & set(self.ablations))
        if both:
            raise ValueError(f"ablations must not repeat variants, got {both} in both")
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        for name in ("runs_dir", "figures_dir"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a folder name, got {value!r}")
        if self.eval_degradation not in EVAL_DEGRADATIONS:
            raise ValueError(f"eval_degradation must be one of {tuple(EVAL_DEGRADATIONS)}, "
                             f"got {self.eval_degradation!r}")
        check_int(self.nmi_pairs, "nmi_pairs", 1)
        check_launcher(self.launcher, self.jobs, self.slurm)
        check_int(self.eval_class, "eval_class", 0)
        if self.eval_class >= self.num_classes:
            raise ValueError(f"eval_class must lie in [0, {self.num_classes}), "
                             f"got {self.eval_class}")
        if self.cifar100c_dir is not None:
            if not isinstance(self.cifar100c_dir, str):
                raise ValueError(f"cifar100c_dir must be a folder or null, "
                                 f"got {self.cifar100c_dir!r}")
            if not self.cifar100c.is_dir():
                raise ValueError(f"cifar100c_dir {self.cifar100c_dir!r} is not a folder; give "
                                 "the extracted CIFAR-100-C folder, or null to skip it")

    @property
    def profile_file(self) -> Path:
        """The profile's YAML file (``imlib.io.provenance(profile_file)`` records its sha256)."""
        return PROFILES_DIR / f"{self.profile}.yaml"

    @property
    def num_classes(self) -> int:
        """K of the profile's data set, known without loading it."""
        return dataset_classes(self.training.dataset, self.training.synthetic_classes)

    # --- the runs ---------------------------------------------------------------------------

    def _check_protocol(self, protocol: str) -> str:
        if protocol not in self.protocols:
            raise ValueError(f"protocol must be one of the study's protocols "
                             f"{list(self.protocols)}, got {protocol!r}")
        return protocol

    def train_config(self, protocol: str, variant: str, seed: int) -> TrainConfig:
        """The TrainConfig of one run of the study, under ``protocol``."""
        fields: dict[str, Any] = {"variant": variant, "seed": seed,
                                  "out_dir": str(self.train_dir(protocol, variant, seed))}
        if protocol == "reference-code":
            fields.update(pinned(variant))
        return dataclasses.replace(self.training, **fields)

    def variants_for(self, protocol: str) -> tuple[str, ...]:
        """The variants trained under ``protocol``: ``variants``, and under the paper protocol
        the ``ablations`` too."""
        return self.variants + (self.ablations if protocol == "paper" else ())

    @property
    def all_variants(self) -> tuple[str, ...]:
        """Every variant any protocol of the study trains."""
        return self.variants_for("paper") if "paper" in self.protocols else self.variants

    def runs(self, protocol: str | None = None) -> list[StudyRun]:
        """Every run of the study (protocol x variant x seed), or of one protocol, in order."""
        protocols = self.protocols if protocol is None else (self._check_protocol(protocol),)
        return [StudyRun(name, variant, seed, self.train_config(name, variant, seed))
                for name in protocols for variant in self.variants_for(name)
                for seed in self.seeds]

    def record(self, protocol: str) -> dict[str, Any]:
        """The study's parameters as the results of ``protocol`` record them (``meta.json``)."""
        return {**dataclasses.asdict(self), "protocol": self._check_protocol(protocol)}

    def load_data(self) -> ImageData:
        """The profile's data set, as its training runs load it."""
        return self.training.load_data()

    # --- the file layout: the same for every profile, so the notebooks read any of them -------

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path

    @property
    def runs_root(self) -> Path:
        """runs/<profile>: executed notebooks, checkpoints, result tables."""
        return self._path(self.runs_dir)

    @property
    def cifar100c(self) -> Path | None:
        """The CIFAR-100-C folder (relative paths from the project root), or None."""
        return None if self.cifar100c_dir is None else self._path(self.cifar100c_dir)

    @property
    def figures_root(self) -> Path:
        """paper_figures/<profile> (the profile's figures_dir): every protocol's figures."""
        return self._path(self.figures_dir)

    def figures(self, protocol: str) -> Path:
        """paper_figures/<profile>/<protocol>: what notebook 05 writes for ``protocol``."""
        return self.figures_root / self._check_protocol(protocol)

    def train_dir(self, protocol: str, variant: str, seed: int) -> Path:
        """runs/<profile>/train/<protocol>/<variant>/seed<seed>: one run's folder."""
        return (self.runs_root / "train" / self._check_protocol(protocol) / variant
                / f"seed{seed}")

    def eval_dir(self, protocol: str) -> Path:
        """runs/<profile>/eval/<protocol>: notebook 04's evaluation of ``protocol``'s runs."""
        return self.runs_root / "eval" / self._check_protocol(protocol)

    @property
    def nmi_dir(self) -> Path:
        return self.runs_root / "nmi"

    @property
    def eval_degradation_config(self) -> DegradationConfig:
        return EVAL_DEGRADATIONS[self.eval_degradation]

    def summary(self) -> str:
        """One line naming the study, for the notebooks other than 03, which tables every
        setting (:meth:`settings`) once."""
        return (f"profile {self.profile}: {self.training.dataset} data, {self.training.model}, "
                f"protocols {', '.join(self.protocols)}, variants {', '.join(self.variants)}"
                + (f" (and under the paper protocol {', '.join(self.ablations)})"
                   if self.ablations else "") + ", "
                f"seeds {', '.join(map(str, self.seeds))} (notebook 03 tables every setting)")

    def settings(self) -> pd.DataFrame:
        """A compact table of what this study runs: one row per setting, one column per
        protocol (the reference-code column shows the settings as they vary per variant)."""
        rows: dict[str, dict[str, str]] = {}
        study = {"profile": self.profile, "variants": ", ".join(self.variants),
                 "ablations (paper protocol)": ", ".join(self.ablations) or "none",
                 "seeds": ", ".join(map(str, self.seeds)), "eval class": str(self.eval_class),
                 "eval degradation": self.eval_degradation}
        for protocol in self.protocols:
            column = dict(study)
            configs = [r.config for r in self.runs(protocol) if r.seed == self.seeds[0]]
            for name in ("dataset", "model", "epochs", "batch_size", "lr", "schedule",
                         "base_augment", "im_spread", "holdout_fraction", "selection", "amp",
                         "device", "compile"):
                if not hasattr(self.training, name):
                    continue
                values = {c.variant: getattr(c, name) for c in configs}
                distinct = list(dict.fromkeys(values.values()))
                column[name.replace("_", " ")] = (
                    str(distinct[0]) if len(distinct) == 1
                    else ", ".join(f"{v}: {x}" for v, x in values.items()))
            rows[protocol] = column
        return pd.DataFrame(rows).rename_axis("setting")


def _check_seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f"seeds must be a non-empty list of ints >= 0, e.g. [0, 1], got {seeds!r}")
    for seed in seeds:
        check_int(seed, "each seed", 0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    return tuple(seeds)


# --- reading profiles and overrides ---------------------------------------------------------


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's resolution of plain scalars: null
    (``null``, ``~``, empty), booleans (``true``, ``False``...), integers (decimal with any
    leading zeros, ``0o`` octal, ``0x`` hex), floats (``1e-3``, ``.5``, ``.inf``, ``.nan``);
    everything else is a string (``yes``, ``on``, ``1:00``, ``2001-12-14``, ``0b1``). YAML 1.1's
    ``<<`` merge is a plain key. A duplicate key, or an alias (``*name``: no profile needs one,
    and nested aliases can expand to gigabytes), is an error naming its line."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} refused: write the value out (profiles take "
                "no anchors or aliases)", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = lines.get(key)
            except TypeError:
                continue  # an unhashable key: PyYAML's own error names it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {first}); keep one",
                    key_node.start_mark)
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _core_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text)


def _core_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    return float("nan") if text == ".nan" else float(text)


def _core_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


# The core schema's tag resolution (YAML 1.2.2, section 10.3.2), in place of YAML 1.1's.
_Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
        ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
        ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
        ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
        ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                  r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+0123456789."))):
    _Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), _first)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _core_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _core_float)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _core_bool)


def parse_override(text: str) -> Any:
    """A ``-p KEY VALUE`` value, read as YAML 1.2 (``1e-3`` -> 0.001, ``[0, 1]`` -> a list,
    ``[010]`` -> [10], ``yes`` and ``1:00`` -> strings)."""
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as err:
        raise ValueError(f"cannot read the value {text!r}: {_yaml_problem(err)}") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


def _read_profile(path: Path) -> dict[str, Any]:
    shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)  # noqa: S506
    except yaml.YAMLError as err:
        raise ValueError(f"{shown}: YAML syntax error at {_yaml_problem(err)}") from None
    if values is None:
        raise ValueError(f"{shown} is empty; a profile needs at least profile, variants, "
                         "seeds, runs_dir and figures_dir")
    if not isinstance(values, dict):
        raise ValueError(f"{shown} must be a mapping of parameter: value")
    return values


def profiles() -> list[str]:
    """Names of the profiles in notebooks/profiles/."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


PATH_FIELDS = ("runs_dir", "figures_dir", "cifar100c_dir", "data_root")
NMI_MAX_BINS = 256  # the values of an 8-bit channel: more bins only add empty ones
_LIST_FIELDS = ("variants", "ablations", "protocols", "seeds", "degrade_kinds")
STUDY_FIELDS = tuple(f.name for f in dataclasses.fields(StudyParams) if f.name != "training")


def _check_finite_numbers(values: dict[str, Any]) -> None:
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


def _check_paths(values: dict[str, Any]) -> None:
    """Each folder a path string (YAML reads a folder called 5 as a number: made a string);
    data_root and cifar100c_dir may be null. A list or a mapping is refused unprinted (an
    alias bomb would print for hours)."""
    for name in PATH_FIELDS:
        value = values.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name] = value = str(value)
        if value is None and name in ("data_root", "cifar100c_dir"):
            continue
        if name in values and not (isinstance(value, str) and value.strip()):
            shown = repr(value) if isinstance(value, (str, bool)) or value is None else \
                f"a {type(value).__name__}"
            raise ValueError(f"{name} must be a folder (a path), got {shown}")


def _check_nmi_bins(values: dict[str, Any]) -> None:
    bins = values.get("nmi_bins")
    if isinstance(bins, int) and not isinstance(bins, bool) and bins > NMI_MAX_BINS:
        raise ValueError(f"nmi_bins must be at most {NMI_MAX_BINS} (an 8-bit channel holds 256 "
                         f"values: more bins are empty), got {bins}")


def _check_lists(values: dict[str, Any]) -> None:
    """A bare string where a list belongs (``-p degrade_kinds blur``) would be read letter by
    letter; refuse it with the spelling that works."""
    for name in _LIST_FIELDS:
        if isinstance(values.get(name), str):
            raise ValueError(f"{name} must be a list, e.g. [{values[name]}], got the bare string "
                             f"{values[name]!r}")


def pinned(variant: str) -> dict[str, Any]:
    """The settings the reference-code protocol fixes for ``variant``'s runs: the public
    scripts' common ones and the variant's own (its spec's ``reference_code``)."""
    return {**REFERENCE_CODE_ALL, **VARIANT_SPECS[variant].reference_code}


def _check_pins(params: StudyParams, overrides: dict[str, Any]) -> None:
    """Refuse an override that a selected protocol would silently replace: the reference-code
    protocol fixes its runs' optimiser, schedule, augmentation, spread, precision and holdout,
    so ``-p lr 2e-3`` would reach only the paper protocol's runs."""
    if "reference-code" not in params.protocols:
        return
    for name, value in overrides.items():
        pins = {v: pinned(v)[name] for v in params.variants if name in pinned(v)}
        if all(pin == value for pin in pins.values()):
            continue
        by_value: dict[Any, list[str]] = {}
        for variant, pin in pins.items():
            by_value.setdefault(pin, []).append(variant)
        shown = "; ".join(f"{', '.join(variants)}: {pin}" for pin, variants in by_value.items())
        raise ValueError(f"{name} {value}: the reference-code protocol pins {name} ({shown}), so "
                         "its runs would not use this value; to train with it, select only the "
                         'paper protocol: -p protocols "[paper]"')


# Overrides that change how a study runs, never what it computes: the plain run's figures stay.
_HOW_NOT_WHAT = ("device", "compile", "eval_batch_size", "launcher", "jobs", "slurm")


def _figures_dir(values: dict[str, Any], overrides: dict[str, Any]) -> str:
    """The profile's figures folder for the plain run (no overrides but ``_HOW_NOT_WHAT``);
    with other overrides, unless they name figures_dir, ``<runs_dir>/figures``: a changed study
    never overwrites the figures the plain run drew (the smoke profile's are the README's,
    tracked in git)."""
    changed = set(overrides) - set(_HOW_NOT_WHAT)
    if not changed or "figures_dir" in overrides or not isinstance(values["runs_dir"], str):
        return values["figures_dir"]
    return str(Path(values["runs_dir"]) / "figures")


def load_params(profile: str = "smoke", overrides: dict[str, Any] | None = None) -> StudyParams:
    """The validated parameters of ``profile`` with ``overrides`` applied on top."""
    if profile not in profiles():
        raise ValueError(f"unknown profile {profile!r}; available: {profiles()}")
    overrides = dict(overrides or {})
    if "profile" in overrides:
        raise ValueError("profile is not a parameter: choose the profile with --profile NAME "
                         "(one profile per run; its file names the run's folders)")
    allowed = set(STUDY_FIELDS) | set(TRAINING_FIELDS)
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; allowed: {sorted(allowed)}")
    path = PROFILES_DIR / f"{profile}.yaml"
    values = {**_read_profile(path), **overrides}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"profile {profile!r} has unknown parameter(s) {unknown}; "
                         f"allowed: {sorted(allowed)}")
    missing = sorted(n for n in ("profile", "variants", "seeds", "runs_dir", "figures_dir")
                     if n not in values)
    if missing:
        raise ValueError(f"profile {profile!r} misses parameter(s) {missing}")
    if values["profile"] != profile:
        raise ValueError(f"{project_path(path)} says profile: {values['profile']!r}; it must be "
                         f"the file's name, {profile!r}")
    _check_finite_numbers(values)
    _check_lists(values)
    _check_paths(values)
    _check_nmi_bins(values)
    values["figures_dir"] = _figures_dir(values, overrides)
    training = TrainConfig(**{k: v for k, v in values.items() if k in TRAINING_FIELDS})
    params = StudyParams(training=training,
                         **{k: v for k, v in values.items() if k in STUDY_FIELDS})
    _check_pins(params, overrides)
    return params
