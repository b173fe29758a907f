"""What a training run is: its settings (``TrainConfig``), its folder's files (``RunFiles``,
the one place that names them), whether that folder holds a finished run (``completed_run``),
its history (``read_history``) and its checkpoints, read safely (``load_model``).

``imlib.train`` runs the engine; evaluation, figures and reports read runs through this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imlib._checks import check_choice, check_fraction, check_int
from imlib.data import SYNTHETIC_CUES, ImageData
from imlib.datasets import DATASETS, load_dataset
from imlib.degradations import PAPER_KINDS, DegradationConfig
from imlib.io import file_record, read_jsonl
from imlib.labels import SPREADS
from imlib.models import MODELS, build_model
from imlib.variants import VARIANT_SPECS, VARIANTS

__all__ = ["VARIANTS", "COMPILE_MODES", "NEUTRAL_FIELDS", "RETRAIN_HINT", "CHECKPOINTS",
           "TrainConfig", "RunFiles", "IncompleteRunError", "resolve_device",
           "check_same_settings", "read_checkpoint", "read_history", "completed_run",
           "load_model", "weights_digest"]

SCHEDULES = ("constant", "cosine")
SELECTIONS = ("holdout", "test", "last")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
CHECKPOINTS = ("best", "last")  # the selected epoch's weights | the final state, to resume

# Fields that change neither the data, the model nor the optimisation: a run may resume under
# different values of these, and a finished run stays valid.
NEUTRAL_FIELDS = ("resume", "out_dir", "device", "compile", "eval_batch_size", "data_root")
_DEVICE_SPELLING = re.compile(r"auto|cpu|cuda(:\d+)?")
_FINISH_HINT = "run ./run_all.sh --only 03_training (same --profile and -p options) to finish it"
RETRAIN_HINT = "delete that folder, or run ./run_all.sh with --fresh, to train it again"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on. Defaults are the paper's text unless noted."""

    # "synthetic" (generated, offline) | "cifar100" | "digits" (scikit-learn's, offline)
    dataset: str = "synthetic"
    data_root: str | None = None  # CIFAR-100 folder; None: $IMLIB_DATA, else ./data
    synthetic_per_class: int = 500  # training images per class of the synthetic set
    synthetic_test_per_class: int | None = None  # its test images per class; None: a fifth
    synthetic_classes: int = 10
    synthetic_cue: str = "both"  # where its class lives: "both" | "coarse" colour | "fine" texture
    model: str = "small_cnn"  # "small_cnn" | "resnet18" (the paper)
    variant: str = "im"  # a name of imlib.variants.VARIANTS
    epochs: int = 100  # the paper trains "up to 100 epochs"
    batch_size: int = 256  # the paper's
    augment_batches: int = 8  # batches augmented in one go (fewer kernel launches on a GPU)
    lr: float = 1e-3  # AdamW learning rate, the paper's
    weight_decay: float = 1e-4  # AdamW weight decay, the paper's
    schedule: str = "constant"  # "constant" (the paper's text) | "cosine" (its public code)
    eta_min: float = 1e-6  # cosine schedule's final learning rate (the public code's)
    base_augment: bool = True  # random crop (4-pixel zero padding) + horizontal flip
    # random_degrade every training image (every variant of the paper; not the clean reference)
    degrade: bool = True
    degrade_kinds: tuple[str, ...] = PAPER_KINDS  # kinds drawn uniformly per sample
    ls_eps: float = 0.1  # fixed smoothing of the ls variant, the paper's
    im_max_eps: float = 0.9  # eps clamp of im and level, the paper's
    im_spread: str = "others"  # "others": eps / (K - 1), the paper's formula; "all": eps / K (code)
    nmi_bins: int = 64  # histogram bins of the NMI, the paper's
    holdout_fraction: float = 0.1  # share of the training set held out for model selection
    selection: str = "holdout"  # best epoch by "holdout" acc | "test" acc (the paper) | "last"
    seed: int = 0
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1"; resolved by prepare
    amp: bool = False  # bf16 autocast
    # torch.compile mode of the model: "none" (eager) | "default" | "reduce-overhead" (CUDA
    # graphs; eager on the CPU, which has none) | "max-autotune". Does not change results.
    compile: str = "none"
    eval_batch_size: int = 1024  # evaluation batch; does not change results
    out_dir: str = "runs/default"
    resume: bool = True  # continue from out_dir/last.pt when it exists

    def __post_init__(self) -> None:
        object.__setattr__(self, "degrade_kinds", tuple(self.degrade_kinds))
        choices = {"dataset": DATASETS, "synthetic_cue": SYNTHETIC_CUES,
                   "model": tuple(MODELS), "variant": VARIANTS,
                   "schedule": SCHEDULES, "selection": SELECTIONS, "im_spread": SPREADS,
                   "compile": COMPILE_MODES}
        for name, allowed in choices.items():
            check_choice(getattr(self, name), allowed, name)
        for name in ("synthetic_per_class", "epochs", "batch_size", "augment_batches",
                     "eval_batch_size"):
            check_int(getattr(self, name), name, 1)
        check_int(self.synthetic_classes, "synthetic_classes", 2)
        if self.synthetic_test_per_class is not None:
            check_int(self.synthetic_test_per_class, "synthetic_test_per_class", 1)
        check_int(self.nmi_bins, "nmi_bins", 2)
        for name in ("base_augment", "degrade", "amp", "resume"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("lr", "weight_decay", "eta_min"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                    or math.isinf(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("ls_eps", "im_max_eps", "holdout_fraction"):
            check_fraction(getattr(self, name), name)
        if self.selection == "holdout" and self.holdout_fraction == 0:
            raise ValueError('selection="holdout" needs holdout_fraction > 0')
        if VARIANT_SPECS[self.variant].needs != "nothing" and not self.degrade:
            raise ValueError(f"variant {self.variant!r} needs degrade=True: "
                             "it smooths by degradation")
        DegradationConfig(kinds=self.degrade_kinds)  # validates the kinds
        if not isinstance(self.device, str) or not _DEVICE_SPELLING.fullmatch(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                             f"got {self.device!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from plain values (a profile, JSON); unknown keys are refused by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    @property
    def degrades(self) -> bool:
        """Whether its training images are degraded: ``degrade``, unless its variant never
        degrades (the clean reference)."""
        return self.degrade and VARIANT_SPECS[self.variant].degrades

    def load_data(self) -> ImageData:
        """The data set this config trains on (the synthetic fields apply to ``synthetic``)."""
        if self.dataset == "synthetic":
            return load_dataset("synthetic", n_per_class=self.synthetic_per_class,
                                num_classes=self.synthetic_classes,
                                test_per_class=self.synthetic_test_per_class,
                                cue=self.synthetic_cue)
        return load_dataset(self.dataset, root=self.data_root)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["degrade_kinds"] = list(self.degrade_kinds)
        return values


class IncompleteRunError(ValueError):
    """A run folder that cannot be used as a finished run; ``reason`` is one of "missing",
    "unfinished", "mismatch", "diverged", "damaged". The message says how to fix it."""

    def __init__(self, folder: Path, reason: str, detail: str, fix: str) -> None:
        super().__init__(f"run {folder}: {detail}; {fix}")
        self.folder, self.reason = folder, reason


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; refuse a device this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {name!r}") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but this machine has no CUDA GPU; "
                             "use 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {name!r}")
    return device


# --- the folder of a run --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFiles:
    """The files of one run folder, named here and nowhere else."""

    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def config(self) -> Path:
        """Settings and provenance, written when a run starts (or starts over)."""
        return self.folder / "config.json"

    @property
    def history(self) -> Path:
        """One JSON record per finished epoch (:func:`read_history`)."""
        return self.folder / "history.jsonl"

    @property
    def last(self) -> Path:
        """Everything an interrupted run needs to resume, saved after every epoch."""
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        """The weights of the selected epoch: what evaluation loads."""
        return self.folder / "best.pt"

    @property
    def result(self) -> Path:
        """Written last: its presence marks a finished run."""
        return self.folder / "result.json"

    @property
    def diverged(self) -> Path:
        """Written instead of ``result`` when the run diverged."""
        return self.folder / "diverged.json"

    @property
    def job(self) -> Path:
        """The launcher and id of the job that trains the run (``imlib.launch``), if any."""
        return self.folder / "job.json"

    def checkpoint(self, which: str) -> Path:
        """The checkpoint ``which`` (one of ``CHECKPOINTS``: "best" or "last")."""
        check_choice(which, CHECKPOINTS, "checkpoint")
        return self.best if which == "best" else self.last


def _config_mismatch(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """The fields where ``saved`` differs from ``config`` and results change; a field a run of
    an older version did not save holds its default (it did not exist, so it was not set)."""
    current = config.to_dict()
    defaults = TrainConfig().to_dict()
    return sorted(k for k in current if k not in NEUTRAL_FIELDS
                  and saved.get(k, defaults[k]) != current[k])


def check_same_settings(folder: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    """Refuse a run folder whose saved config differs from ``config`` where results change."""
    differing = _config_mismatch(saved, config)
    if differing:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r}, asked {getattr(config, k)!r}"
                           for k in differing)
        use_saved = " ".join(f"-p {k} {json.dumps(saved.get(k))}" for k in differing)
        raise IncompleteRunError(folder, "mismatch", f"trained with other settings ({detail})",
                                 f"to use it, ask for its settings ({use_saved}); "
                                 f"or {RETRAIN_HINT}")


def read_checkpoint(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """A checkpoint's dict, or a ValueError naming the file and what to do if it is damaged."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        problem = "" if isinstance(state, dict) and set(keys) <= set(state) else "keys missing"
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        problem = f"unreadable: {type(err).__name__}"
    if problem:
        raise ValueError(f"checkpoint {path} is damaged or not an imlib checkpoint ({problem}); "
                         f"delete that run's folder ({path.parent}) and train it again "
                         "(./run_all.sh --only 03_training), or use --fresh")
    return state


def _epochs_text(epochs: list[Any]) -> str:
    shown = ", ".join(map(str, epochs[:12])) + (", ..." if len(epochs) > 12 else "")
    return f"the epochs [{shown}]" if epochs else "no epoch"


def read_history(path: str | Path, epochs: int | None = None) -> list[dict[str, Any]]:
    """The records of a run's history, one per finished epoch.

    Without ``epochs`` (a run still training or resuming) a missing file is empty and a torn
    last line, cut by a crash mid-append, is dropped. With ``epochs`` (a finished run) the file
    must hold exactly the records of epochs 1 to ``epochs``, each once and in order, and end
    with a whole line; anything else raises ``IncompleteRunError`` naming the file.
    """
    path = Path(path)
    if epochs is None:
        return read_jsonl(path) if path.exists() else []
    if not path.is_file():
        raise IncompleteRunError(path.parent, "damaged", f"{path} is missing", RETRAIN_HINT)
    content = path.read_bytes()
    if content and not content.endswith(b"\n"):
        raise IncompleteRunError(path.parent, "damaged", f"{path} ends in a torn line",
                                 RETRAIN_HINT)
    records = read_jsonl(path)
    found = [r.get("epoch") if isinstance(r, dict) else None for r in records]
    if found != list(range(1, epochs + 1)):
        result = RunFiles(path.parent).result.name
        raise IncompleteRunError(path.parent, "damaged",
                                 f"{path} holds {_epochs_text(found)}, but {result} says "
                                 f"epochs 1 to {epochs} were trained (each once, in order)",
                                 RETRAIN_HINT)
    return records


def completed_run(config: TrainConfig) -> dict[str, Any]:
    """The ``result.json`` of the finished run ``config`` asks for, or ``IncompleteRunError``
    naming the folder, what is wrong (missing, unfinished, other settings, diverged, damaged:
    a history that does not hold exactly the epochs the result says were trained, a
    ``best.pt`` or history that is not the file the run wrote) and the fix.
    Fields that do not change results (``NEUTRAL_FIELDS``) may differ. A folder whose run
    stopped before its first epoch holds nothing to keep: it counts as not trained yet."""
    files = RunFiles(config.out_dir)
    folder = files.folder
    if files.diverged.exists():
        raise IncompleteRunError(folder, "diverged", json.loads(files.diverged.read_text()),
                                 f"lower the learning rate (-p lr ...) and {RETRAIN_HINT}")
    if not files.result.exists():
        done = len(read_history(files.history))
        if not (files.last.exists() or done):
            raise IncompleteRunError(folder, "missing", "not trained yet",
                                     "run ./run_all.sh --only 03_training (same --profile and "
                                     "-p options) to train it")
        if files.config.exists():
            check_same_settings(folder, json.loads(files.config.read_text())["config"], config)
        raise IncompleteRunError(folder, "unfinished",
                                 f"unfinished at epoch {done} of {config.epochs}", _FINISH_HINT)
    try:
        result = json.loads(files.result.read_text())
        saved = result["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise IncompleteRunError(folder, "damaged", f"{files.result} is damaged ({err})",
                                 RETRAIN_HINT) from err
    check_same_settings(folder, saved, config)
    if not files.best.exists():
        raise IncompleteRunError(folder, "damaged", f"{files.best.name} is missing",
                                 RETRAIN_HINT)
    read_history(files.history, config.epochs)
    _check_own_files(files, result, config)
    return result


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 of a model's weights alone (every entry's name, dtype, shape and bytes, in
    order): equal for equal weights, whatever else a checkpoint file stores (its folder, the
    time, the job), so two runs compare by one field of their ``result.json``."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_own_files(files: RunFiles, result: dict[str, Any], config: TrainConfig) -> None:
    """Refuse a finished run whose ``best.pt`` or history is not the file its ``result.json``
    recorded (replaced, edited or copied in). A ``best.pt`` whose sha256 is not the recorded
    one (or, in runs from before the digests were kept, any ``best.pt``) must at least hold a
    model of this run's settings: another run's is named as such."""
    recorded = result.get("best_sha256")
    if recorded is None or file_record(files.best)["sha256"] != recorded:
        saved = read_checkpoint(files.best, ("config",))["config"]
        differing = _config_mismatch(saved, config)
        if differing:
            held = ", ".join(f"{k} {saved.get(k)!r}" for k in differing)
            asked = ", ".join(f"{k} {getattr(config, k)!r}" for k in differing)
            raise IncompleteRunError(files.folder, "mismatch",
                                     f"{files.best.name} holds another run's model ({held}; "
                                     f"this folder's run has {asked})", RETRAIN_HINT)
        if recorded is not None:
            raise IncompleteRunError(files.folder, "damaged",
                                     f"{files.best.name} is not the file this run wrote (its "
                                     f"sha256 differs from the one in {files.result.name}: "
                                     "replaced or edited since)", RETRAIN_HINT)
    recorded = result.get("history_sha256")
    if recorded is not None and file_record(files.history)["sha256"] != recorded:
        raise IncompleteRunError(files.folder, "damaged",
                                 f"{files.history.name} is not the file this run wrote (its "
                                 f"sha256 differs from the one in {files.result.name}: edited "
                                 "since)", RETRAIN_HINT)


def load_model(checkpoint: str | Path, device: str = "auto") -> tuple[torch.nn.Module, TrainConfig]:
    """The model stored in a checkpoint (in eval mode, on ``device``) and its config; a damaged
    file is refused by name, with what to do."""
    state = read_checkpoint(Path(checkpoint), ("model", "config", "classes"))
    config = TrainConfig.from_dict({**state["config"], "device": device})
    model = build_model(config.model, len(state["classes"]))
    model.load_state_dict(state["model"])
    return model.to(resolve_device(device), memory_format=torch.channels_last).eval(), config
