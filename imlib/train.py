"""One training engine for every variant of the study.

The variants (``baseline``, ``ls``, ``im``, ``level``) differ only in the soft targets; data,
augmentation, model, optimiser and selection are the same code. The whole training set lives on
the device as uint8, and each step runs on the device without a host sync:

    permuted indices -> crop + flip -> random_degrade -> nmi -> targets -> normalise -> step

Each epoch appends a line to ``history.jsonl`` and saves ``last.pt`` atomically (and
``best.pt`` when the selection metric improves), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from imlib import labels as policies
from imlib.data import DATASETS, ImageData, holdout_split, load_dataset, normalize
from imlib.degradations import KINDS, DegradationConfig, random_degrade
from imlib.io import append_jsonl, atomic_save, atomic_write_text, provenance
from imlib.labels import SPREADS, soft_cross_entropy
from imlib.models import MODELS, build_model
from imlib.nmi import nmi

__all__ = ["VARIANTS", "TrainConfig", "RunResult", "train", "load_model", "resolve_device",
           "crop_flip", "prepare", "augment", "train_steps"]

VARIANTS = ("baseline", "ls", "im", "level")
SCHEDULES = ("constant", "cosine")
SELECTIONS = ("holdout", "test", "last")

# Fields that change neither the data, the model nor the optimisation: a run may resume under
# different values of these.
_RESUMABLE_FIELDS = ("resume", "out_dir", "device", "compile", "eval_batch_size", "data_root")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on. Defaults are the paper's text unless noted."""

    dataset: str = "synthetic"  # "synthetic" (embedded, offline) | "cifar100"
    data_root: str | None = None  # CIFAR-100 folder; None: $IMLIB_DATA, else ./data
    synthetic_per_class: int = 500  # training images per class of the synthetic set
    synthetic_classes: int = 10
    model: str = "small_cnn"  # "small_cnn" | "resnet18" (the paper)
    variant: str = "im"  # "baseline" | "ls" | "im" | "level"
    epochs: int = 100  # the paper trains "up to 100 epochs"
    batch_size: int = 256  # the paper's
    augment_batches: int = 8  # batches augmented in one go (fewer kernel launches on a GPU)
    lr: float = 1e-3  # AdamW learning rate, the paper's
    weight_decay: float = 1e-4  # AdamW weight decay, the paper's
    schedule: str = "constant"  # "constant" (the paper's text) | "cosine" (its public code)
    eta_min: float = 1e-6  # cosine schedule's final learning rate (the public code's)
    base_augment: bool = True  # random crop (4-pixel zero padding) + horizontal flip
    degrade: bool = True  # random_degrade every training image (all variants, as in the paper)
    degrade_kinds: tuple[str, ...] = KINDS  # kinds drawn uniformly per sample
    ls_eps: float = 0.1  # fixed smoothing of the ls variant, the paper's
    im_max_eps: float = 0.9  # eps clamp of im and level, the paper's
    im_spread: str = "others"  # "others": eps / (K - 1), the paper's formula; "all": eps / K (code)
    nmi_bins: int = 64  # histogram bins of the NMI, the paper's
    holdout_fraction: float = 0.1  # share of the training set held out for model selection
    selection: str = "holdout"  # best epoch by "holdout" acc | "test" acc (the paper) | "last"
    seed: int = 0
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    amp: bool = False  # bf16 autocast
    compile: bool = False  # torch.compile the model
    eval_batch_size: int = 1024  # evaluation batch; does not change results
    out_dir: str = "runs/default"
    resume: bool = True  # continue from out_dir/last.pt when it exists

    def __post_init__(self) -> None:
        object.__setattr__(self, "degrade_kinds", tuple(self.degrade_kinds))
        choices = {"dataset": DATASETS, "model": tuple(MODELS), "variant": VARIANTS,
                   "schedule": SCHEDULES, "selection": SELECTIONS, "im_spread": SPREADS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("synthetic_per_class", "synthetic_classes", "epochs", "batch_size",
                     "augment_batches", "nmi_bins", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.nmi_bins < 2:
            raise ValueError(f"nmi_bins must be >= 2, got {self.nmi_bins}")
        for name in ("lr", "weight_decay", "eta_min"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("ls_eps", "im_max_eps"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)!r}")
        if not 0 <= self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must lie in [0, 1), got {self.holdout_fraction!r}")
        if self.selection == "holdout" and self.holdout_fraction == 0:
            raise ValueError('selection="holdout" needs holdout_fraction > 0')
        if self.variant in ("im", "level") and not self.degrade:
            raise ValueError(f"variant {self.variant!r} needs degrade=True: "
                             "it smooths by degradation")
        DegradationConfig(kinds=self.degrade_kinds)  # validates the kinds
        resolve_device(self.device)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from plain values (a profile, JSON); unknown keys are refused by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def load_data(self) -> ImageData:
        """The data set this config trains on (the synthetic sizes apply to ``synthetic``)."""
        if self.dataset == "synthetic":
            return load_dataset("synthetic", n_per_class=self.synthetic_per_class,
                                num_classes=self.synthetic_classes)
        return load_dataset(self.dataset, root=self.data_root)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["degrade_kinds"] = list(self.degrade_kinds)
        return values


@dataclass
class RunResult:
    """What a finished run leaves: its history (one dict per epoch) and its checkpoints."""

    config: TrainConfig
    history: list[dict[str, Any]]
    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    out_dir: Path = field(default=Path("."))


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


# --- the steps of a run ---------------------------------------------------------------------


def crop_flip(x: Tensor, generator: torch.Generator | None = None, padding: int = 4) -> Tensor:
    """Random crop after zero padding, and a horizontal flip with probability 1/2, per sample.

    One gather does both on the whole batch (any dtype, any device).
    """
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    offset = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=x.device)
    flip = torch.rand(n, generator=generator, device=x.device) < 0.5
    rows = offset[:, 0:1] + torch.arange(h, device=x.device)  # (N, H)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = offset[:, 1:2] + torch.where(flip[:, None], cols.flip(1), cols)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2).contiguous()


@dataclass
class _Split:
    """Images (uint8 on the device) and labels of one split."""

    x: Tensor
    y: Tensor


@dataclass
class RunState:
    """The live state of a run: data on the device, model, optimiser, generator, history."""

    config: TrainConfig
    device: torch.device
    data: ImageData
    train: _Split
    holdout: _Split | None
    test: _Split
    model: torch.nn.Module
    forward: Callable[[Tensor], Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    degradation: DegradationConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0

    @property
    def out(self) -> Path:
        return Path(self.config.out_dir)


def prepare(config: TrainConfig) -> RunState:
    """Load the data onto the device and build model, optimiser, schedule and generator."""
    device = resolve_device(config.device)
    data = config.load_data()
    if config.holdout_fraction > 0:
        train_idx, holdout_idx = holdout_split(data.y_train, config.holdout_fraction, config.seed)
        holdout = _Split(data.x_train[holdout_idx].to(device), data.y_train[holdout_idx].to(device))
    else:
        train_idx, holdout = torch.arange(len(data.y_train)), None
    train = _Split(data.x_train[train_idx].to(device), data.y_train[train_idx].to(device))
    test = _Split(data.x_test.to(device), data.y_test.to(device))

    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its kernels
    # channels_last: faster convolutions on CPUs (oneDNN, about 2x here) and tensor cores alike.
    model = build_model(config.model, data.num_classes).to(device,
                                                           memory_format=torch.channels_last)
    forward = torch.compile(model) if config.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay,
                                  fused=device.type == "cuda")
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs,
                                                               eta_min=config.eta_min)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    return RunState(config, device, data, train, holdout, test, model, forward, optimizer,
                    scheduler, generator, DegradationConfig(kinds=config.degrade_kinds))


def _autocast(run: RunState):
    return torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.config.amp)


def _inputs(run: RunState, x: Tensor) -> Tensor:
    """Normalised network input from [0, 1] images (normalisation after degradation, always)."""
    x = normalize(x, run.data.mean, run.data.std)
    return x.contiguous(memory_format=torch.channels_last)


def _targets(run: RunState, clean: Tensor, degraded: Tensor, y: Tensor, level: Tensor | None
             ) -> tuple[Tensor, Tensor]:
    """The variant's soft targets and the per-sample eps they used."""
    cfg, k = run.config, run.data.num_classes
    if cfg.variant == "baseline":
        eps = torch.zeros(len(y), device=y.device)
    elif cfg.variant == "ls":
        eps = torch.full((len(y),), cfg.ls_eps, device=y.device)
    elif cfg.variant == "im":
        nmi_values = nmi(clean, degraded, bins=cfg.nmi_bins, validate_args=False)
        eps = policies.im_eps(nmi_values, cfg.im_max_eps)
    else:  # level
        eps = level.clamp(0, cfg.im_max_eps)
    spread = "all" if cfg.variant == "ls" else cfg.im_spread
    return policies.soft_targets(y, k, eps, spread), eps


@torch.no_grad()
def augment(run: RunState, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Network inputs, soft targets and eps for the training images ``idx``, batched over all
    of them: crop + flip, ``random_degrade``, NMI, the variant's targets, normalisation."""
    cfg = run.config
    x, y = run.train.x[idx], run.train.y[idx]
    if cfg.base_augment:
        x = crop_flip(x, run.generator)
    clean = x.float().div_(255)
    degraded, level = clean, None
    if cfg.degrade:
        degraded, _, level = random_degrade(clean, run.generator, run.degradation,
                                            validate_args=False)
    targets, eps = _targets(run, clean, degraded, y, level)
    return _inputs(run, degraded), targets, eps


def train_steps(run: RunState, order: Tensor, on_step: Callable[[], None] | None = None
                ) -> tuple[Tensor, Tensor]:
    """Optimise on the training images ``order``, ``batch_size`` at a time.

    Images are augmented ``augment_batches`` batches at a time: one launch of each augmentation
    kernel serves several steps, which keeps a GPU busy with the model. Returns, on the device
    and without a host sync, the sums ``[loss * samples, correct, eps]`` and the index of the
    first step whose loss was not finite (-1 if none).
    """
    bs = run.config.batch_size
    sums = torch.zeros(3, device=run.device)
    first_bad_step = torch.full((), -1, device=run.device)
    step = 0
    for chunk in order.split(bs * run.config.augment_batches):
        inputs, targets, eps = augment(run, chunk)
        for x, t, e, y in zip(inputs.split(bs), targets.split(bs), eps.split(bs),
                              run.train.y[chunk].split(bs), strict=True):
            with _autocast(run):
                logits = run.forward(x)
            loss = soft_cross_entropy(logits, t)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            loss = loss.detach()
            bad = ~torch.isfinite(loss) & (first_bad_step < 0)
            first_bad_step = torch.where(bad, torch.full_like(first_bad_step, step),
                                         first_bad_step)
            sums += torch.stack([loss * len(y), (logits.argmax(1) == y).sum().float(), e.sum()])
            step += 1
            if on_step is not None:
                on_step()
    return sums, first_bad_step


def _train_epoch(run: RunState, epoch: int, bar: tqdm) -> dict[str, float]:
    """One pass over the training set in a random order; one host sync, at the end."""
    run.model.train()
    n = len(run.train.y)
    order = torch.randperm(n, generator=run.generator, device=run.device)
    sums, first_bad_step = train_steps(run, order, lambda: bar.update(1))
    if int(first_bad_step) >= 0:
        raise FloatingPointError(
            f"non-finite training loss at epoch {epoch}, step {int(first_bad_step)} "
            f"(lr {run.config.lr}); the last good checkpoint is {run.out / 'last.pt'}")
    loss_sum, correct, eps_sum = sums.tolist()
    return {"train_loss": loss_sum / n, "train_acc": correct / n, "mean_eps": eps_sum / n}


@torch.no_grad()
def _evaluate(run: RunState, split: _Split | None) -> tuple[float | None, float | None]:
    """Clean cross-entropy and accuracy on a split (None, None when there is none)."""
    if split is None:
        return None, None
    run.model.eval()
    sums = torch.zeros(2, device=run.device)
    for start in range(0, len(split.y), run.config.eval_batch_size):
        x = split.x[start:start + run.config.eval_batch_size].float().div_(255)
        y = split.y[start:start + run.config.eval_batch_size]
        with _autocast(run):
            logits = run.forward(_inputs(run, x)).float()
        sums += torch.stack([torch.nn.functional.cross_entropy(logits, y, reduction="sum"),
                             (logits.argmax(1) == y).sum().float()])
    loss_sum, correct = sums.tolist()
    return loss_sum / len(split.y), correct / len(split.y)


def _selection_score(run: RunState, record: dict[str, Any]) -> float:
    cfg = run.config
    if cfg.selection == "last":
        return float(record["epoch"])
    return record["holdout_acc" if cfg.selection == "holdout" else "test_acc"]


def _checkpoint(run: RunState, epoch: int) -> dict[str, Any]:
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "epoch": epoch,
        "generator": run.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "config": run.config.to_dict(),
        "history": run.history,
        "best_score": run.best_score,
        "best_epoch": run.best_epoch,
        "classes": list(run.data.classes),
        "provenance": provenance(),
    }
    if run.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    return state


def _config_mismatch(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    current = config.to_dict()
    return sorted(k for k in current if k not in _RESUMABLE_FIELDS and saved.get(k) != current[k])


def _resume(run: RunState) -> int:
    """Load out_dir/last.pt into the run; the number of epochs already done (0 if none)."""
    path = run.out / "last.pt"
    if not (run.config.resume and path.exists()):
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    differing = _config_mismatch(state["config"], run.config)
    if differing:
        saved = state["config"]
        detail = ", ".join(f"{k}: saved {saved.get(k)!r} vs now {getattr(run.config, k)!r}"
                           for k in differing)
        raise ValueError(f"cannot resume {path}: the config differs ({detail}). "
                         "Use another out_dir, or resume=False to start over.")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], run.device)
    run.history = state["history"]
    run.best_score, run.best_epoch = state["best_score"], state["best_epoch"]
    # The history file is rewritten from the checkpoint: an epoch logged after the last save
    # (a crash between the two) must not appear twice.
    atomic_write_text("".join(json.dumps(r) + "\n" for r in run.history), run.out / "history.jsonl")
    return state["epoch"]


def _finish(run: RunState) -> RunResult:
    result = RunResult(run.config, run.history, run.out / "best.pt", run.out / "last.pt",
                       run.best_epoch, run.out)
    summary = {"completed": True, "best_epoch": run.best_epoch,
               "best": run.history[run.best_epoch - 1] if run.history else None,
               "config": run.config.to_dict(), "provenance": provenance()}
    atomic_write_text(json.dumps(summary, indent=2), run.out / "result.json")
    return result


def train(config: TrainConfig,
          on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    """Train one variant as ``config`` says; resume from ``config.out_dir`` when possible.

    ``on_epoch_end`` receives each epoch's history record (to plot curves as they come).
    Files in ``out_dir``: ``config.json``, ``history.jsonl``, ``last.pt``, ``best.pt``,
    ``result.json`` (written last: its presence marks a finished run).
    """
    run = prepare(config)
    run.out.mkdir(parents=True, exist_ok=True)
    done = _resume(run)
    if done == 0:
        (run.out / "history.jsonl").unlink(missing_ok=True)
        atomic_write_text(json.dumps({"config": config.to_dict(), "provenance": provenance()},
                                     indent=2), run.out / "config.json")
    steps = math.ceil(len(run.train.y) / config.batch_size)
    label = f"{config.variant} seed {config.seed}"
    with tqdm(total=config.epochs * steps, initial=done * steps, desc=label, unit="step",
              mininterval=2.0, dynamic_ncols=True) as bar:
        for epoch in range(done + 1, config.epochs + 1):
            started = time.perf_counter()
            lr = run.optimizer.param_groups[0]["lr"]
            record: dict[str, Any] = {"epoch": epoch, **_train_epoch(run, epoch, bar)}
            run.scheduler.step()
            record["holdout_loss"], record["holdout_acc"] = _evaluate(run, run.holdout)
            record["test_loss"], record["test_acc"] = _evaluate(run, run.test)
            record.update(lr=lr, seconds=time.perf_counter() - started)
            run.history.append(record)
            score = _selection_score(run, record)
            if score > run.best_score:
                run.best_score, run.best_epoch = score, epoch
                atomic_save(_checkpoint(run, epoch), run.out / "best.pt")
            atomic_save(_checkpoint(run, epoch), run.out / "last.pt")
            append_jsonl(record, run.out / "history.jsonl")
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{record['train_acc']:.3f}",
                            test_acc=f"{record['test_acc']:.3f}")
            if on_epoch_end is not None:
                on_epoch_end(record)
    return _finish(run)


def load_model(checkpoint: str | Path, device: str = "auto") -> tuple[torch.nn.Module, TrainConfig]:
    """The model stored in a checkpoint (in eval mode, on ``device``) and its config."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = TrainConfig.from_dict({**state["config"], "device": device})
    model = build_model(config.model, len(state["classes"]))
    model.load_state_dict(state["model"])
    return model.to(resolve_device(device), memory_format=torch.channels_last).eval(), config
