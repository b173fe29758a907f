"""One training engine for every variant of the study.

The variants (:mod:`imlib.variants`) differ only in the soft targets, and the clean reference in
skipping the degradation; data, augmentation, model, optimiser and selection are the same code.
The whole training set lives on the device as uint8, and each step runs there without a host
sync; ``training_batch`` is the one place where a batch is made:

    indices -> crop + flip -> random_degrade -> nmi -> eps -> targets -> normalise -> step

Each epoch appends a line to ``history.jsonl`` and saves ``last.pt`` atomically (and the
weights-only ``best.pt`` when the selection metric improves), so an interrupted run resumes where
it stopped. Weights and losses are checked after every epoch: a checkpoint is never non-finite,
and a diverged run is never marked complete. ``result.json``, written last, marks a finished run;
``imlib.runs`` holds the settings (``TrainConfig``) and how evaluation, figures and reports find a
finished run (``completed_run``) or learn what is wrong with it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imlib.data import ImageData, holdout_split, normalize
from imlib.degradations import DegradationConfig, random_degrade
from imlib.io import append_jsonl, atomic_save, atomic_write_text, file_record, provenance
from imlib.labels import soft_cross_entropy, soft_targets
from imlib.models import build_model
from imlib.nmi import nmi
from imlib.progress import on_interrupt, progress
from imlib.runs import (RETRAIN_HINT, IncompleteRunError, RunFiles, TrainConfig,
                        check_same_settings, completed_run, read_checkpoint, read_history,
                        resolve_device, weights_digest)
from imlib.variants import VARIANT_SPECS, BatchDraws, variant_smoothing

__all__ = ["RunResult", "TrainingBatch", "train", "crop_flip", "prepare", "clean_images",
           "training_batch", "train_steps"]


@dataclass
class RunResult:
    """What a finished run leaves: its history (one dict per epoch) and its checkpoints."""

    config: TrainConfig
    history: list[dict[str, Any]]
    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    out_dir: Path = field(default=Path("."))


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
    """The live state of a run: data on the device, model, optimiser, generator, history.

    ``forward`` is the (possibly compiled) model the full training batches go through; the last,
    shorter batch of an epoch and the evaluation use the eager ``model`` (same weights), so a
    compiled or captured model sees one input shape and never recompiles.
    """

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
    # As plain JSON values (torch's version string is a class of its own), so that checkpoints
    # load with weights_only=True.
    provenance: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(provenance())))

    @property
    def out(self) -> Path:
        return Path(self.config.out_dir)

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.out)


def _compiled(model: torch.nn.Module, mode: str, device: torch.device
              ) -> Callable[[Tensor], Tensor]:
    """The model compiled for one fixed batch shape; "reduce-overhead" is eager on the CPU."""
    if mode == "none" or (mode == "reduce-overhead" and device.type != "cuda"):
        return model
    return torch.compile(model, mode=None if mode == "default" else mode, dynamic=False)


def prepare(config: TrainConfig) -> RunState:
    """Resolve the device (a missing GPU is refused here), load the data onto it and build
    model, optimiser, schedule and generator."""
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay,
                                  fused=device.type == "cuda")
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs,
                                                               eta_min=config.eta_min)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    return RunState(config, device, data, train, holdout, test, model,
                    _compiled(model, config.compile, device), optimizer, scheduler, generator,
                    DegradationConfig(kinds=config.degrade_kinds))


def _autocast(run: RunState):
    return torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.config.amp)


def _inputs(run: RunState, x: Tensor) -> Tensor:
    """Normalised network input from [0, 1] images (normalisation after degradation, always)."""
    x = normalize(x, run.data.mean, run.data.std)
    return x.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class TrainingBatch:
    """One training batch as ``training_batch`` makes it, every stage kept for inspection.

    ``kinds`` (int64 indices into ``KINDS``) and ``levels`` are None when the config does not
    degrade; ``nmi`` is None unless the variant needs it or it was asked for.
    """

    clean: Tensor  # float [0, 1] images after crop + flip
    degraded: Tensor  # after random_degrade (= clean without degradation)
    kinds: Tensor | None
    levels: Tensor | None
    nmi: Tensor | None  # NMI(clean, degraded) per sample
    eps: Tensor  # the variant's smoothing per sample
    labels: Tensor
    targets: Tensor  # soft targets (N, K)
    inputs: Tensor  # normalised, channels_last: what the network sees


def clean_images(run: RunState, idx: Tensor) -> Tensor:
    """The training images ``idx`` as the step starts from them: cropped and flipped with the
    run's generator when the config asks for it, then float in [0, 1]."""
    x = run.train.x[idx]
    if run.config.base_augment:
        x = crop_flip(x, run.generator)
    return x.float().div_(255)


@torch.no_grad()
def training_batch(run: RunState, idx: Tensor, with_nmi: bool = False) -> TrainingBatch:
    """The training batch of images ``idx``: crop + flip of the stored uint8 images, then
    ``random_degrade``, NMI, the variant's eps (its spec in :mod:`imlib.variants`) and targets
    (:func:`imlib.labels.soft_targets`), normalisation.

    Batched on the device, no host sync. ``with_nmi`` computes the NMI for display even where
    the variant does not use it (the baseline's training does not pay for it).
    """
    cfg, y = run.config, run.train.y[idx]
    clean = clean_images(run, idx)
    degraded, kinds, levels = clean, None, None
    if cfg.degrades:
        degraded, kinds, levels = random_degrade(clean, run.generator, run.degradation,
                                                 validate_args=False)
    nmi_values = None
    if VARIANT_SPECS[cfg.variant].needs == "nmi" or with_nmi:
        nmi_values = nmi(clean, degraded, bins=cfg.nmi_bins, validate_args=False)
    eps, spread = variant_smoothing(cfg, BatchDraws(y, kinds, levels, nmi_values, run.generator))
    targets = soft_targets(y, run.data.num_classes, eps, spread, validate_args=False)
    return TrainingBatch(clean, degraded, kinds, levels, nmi_values, eps, y, targets,
                         _inputs(run, degraded))


def train_steps(run: RunState, order: Tensor, on_step: Callable[[], None] | None = None
                ) -> tuple[Tensor, Tensor]:
    """Optimise on the training images ``order``, ``batch_size`` at a time.

    Batches are made ``augment_batches`` at a time by ``training_batch``: one launch of each
    augmentation kernel serves several steps, which keeps a GPU busy with the model. A batch
    shorter than ``batch_size`` runs through the eager model. Returns, on the device and without
    a host sync, the sums ``[loss * samples, correct, eps]`` and the index of the first step whose
    loss was not finite (-1 if none).
    """
    bs = run.config.batch_size
    sums = torch.zeros(3, device=run.device)
    first_bad_step = torch.full((), -1, device=run.device)
    step = 0
    for chunk in order.split(bs * run.config.augment_batches):
        batch = training_batch(run, chunk)
        for x, t, e, y in zip(batch.inputs.split(bs), batch.targets.split(bs),
                              batch.eps.split(bs), batch.labels.split(bs), strict=True):
            with _autocast(run):
                logits = (run.forward if len(y) == bs else run.model)(x)
            loss = soft_cross_entropy(logits, t, validate_args=False)  # value checks would sync
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


def _weights_finite(run: RunState) -> Tensor:
    """Whether every floating tensor of the model (weights and BN statistics) is finite."""
    tensors = [t for t in run.model.state_dict().values() if t.is_floating_point()]
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all()


def _diverged(run: RunState, epoch: int, what: str) -> FloatingPointError:
    """Record the divergence in ``diverged.json`` and the error that names the last good
    checkpoint (checkpoints are checked before saving, so that one is finite)."""
    last_good = (f"the last good checkpoint is {run.files.last} (epoch {epoch - 1})"
                 if epoch > 1 else "no epoch finished cleanly")
    message = f"diverged: {what} at epoch {epoch} (lr {run.config.lr}); {last_good}"
    atomic_write_text(json.dumps(message), run.files.diverged)
    return FloatingPointError(f"run {run.out} {message}; lower the learning rate (-p lr ...) "
                              f"and {RETRAIN_HINT}")


def _train_epoch(run: RunState, epoch: int, bar: Any) -> dict[str, float]:
    """One pass over the training set in a random order; one host sync, at the end."""
    run.model.train()
    n = len(run.train.y)
    order = torch.randperm(n, generator=run.generator, device=run.device)
    sums, first_bad_step = train_steps(run, order, lambda: bar.update(1))
    first_bad, finite = torch.stack([first_bad_step.float(), _weights_finite(run).float()]).tolist()
    if first_bad >= 0:
        raise _diverged(run, epoch, f"non-finite training loss at epoch {epoch}, "
                                    f"step {int(first_bad)}")
    if not finite:
        raise _diverged(run, epoch, "non-finite weights")
    loss_sum, correct, eps_sum = sums.tolist()
    return {"train_loss": loss_sum / n, "train_acc": correct / n, "mean_eps": eps_sum / n}


@torch.no_grad()
def _evaluate(run: RunState, split: _Split | None) -> tuple[float | None, float | None]:
    """Clean cross-entropy and accuracy on a split (None, None when there is none), through the
    eager model: the compiled one keeps its single training shape."""
    if split is None:
        return None, None
    run.model.eval()
    sums = torch.zeros(2, device=run.device)
    for start in range(0, len(split.y), run.config.eval_batch_size):
        x = split.x[start:start + run.config.eval_batch_size].float().div_(255)
        y = split.y[start:start + run.config.eval_batch_size]
        with _autocast(run):
            logits = run.model(_inputs(run, x)).float()
        sums += torch.stack([torch.nn.functional.cross_entropy(logits, y, reduction="sum"),
                             (logits.argmax(1) == y).sum().float()])
    loss_sum, correct = sums.tolist()
    return loss_sum / len(split.y), correct / len(split.y)


def _selection_score(run: RunState, record: dict[str, Any]) -> float:
    cfg = run.config
    if cfg.selection == "last":
        return float(record["epoch"])
    return record["holdout_acc" if cfg.selection == "holdout" else "test_acc"]


def _weights(run: RunState, epoch: int) -> dict[str, Any]:
    """``best.pt``: what evaluation loads, the weights and nothing to resume with."""
    return {"model": run.model.state_dict(), "config": run.config.to_dict(),
            "classes": list(run.data.classes), "epoch": epoch, "provenance": run.provenance}


def _resume_state(run: RunState, epoch: int) -> dict[str, Any]:
    """``last.pt``: the weights plus everything an interrupted run needs to continue exactly."""
    state = {**_weights(run, epoch),
             "optimizer": run.optimizer.state_dict(),
             "scheduler": run.scheduler.state_dict(),
             "generator": run.generator.get_state(),
             "torch_rng": torch.get_rng_state(),
             "history": run.history,
             "best_score": run.best_score,
             "best_epoch": run.best_epoch}
    if run.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    return state


_RESUME_KEYS = ("model", "optimizer", "scheduler", "generator", "torch_rng", "config",
                "history", "best_score", "best_epoch", "epoch")


def _resume(run: RunState) -> int:
    """Load out_dir/last.pt into the run; the number of epochs already done (0 if none)."""
    path = run.files.last
    if not (run.config.resume and path.exists()):
        return 0
    state = read_checkpoint(path, _RESUME_KEYS)
    check_same_settings(run.out, state["config"], run.config)
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
    atomic_write_text("".join(json.dumps(r) + "\n" for r in run.history), run.files.history)
    return state["epoch"]


def _start_over(run: RunState) -> None:
    """Remove what an earlier attempt left, so nothing stale outlives a fresh start."""
    files = run.files
    for path in (files.result, files.diverged, files.history, files.best, files.last):
        path.unlink(missing_ok=True)
    atomic_write_text(json.dumps({"config": run.config.to_dict(), "provenance": run.provenance},
                                 indent=2), files.config)


def _reused(config: TrainConfig, result: dict[str, Any]) -> RunResult:
    files = RunFiles(config.out_dir)
    print(f"{_label(config)}: reused (finished: {config.epochs} epochs, best epoch "
          f"{result['best_epoch']})", flush=True)
    return RunResult(config, read_history(files.history, config.epochs), files.best, files.last,
                     result["best_epoch"], files.folder)


PROGRESS_LINE_S = 30.0  # without progress bars, a line at least this often (and at the end)


def _label(config: TrainConfig) -> str:
    return f"{config.variant} seed {config.seed}"


def _epoch_line(config: TrainConfig, record: dict[str, Any]) -> str:
    return (f"{_label(config)}: epoch {record['epoch']}/{config.epochs}, train loss "
            f"{record['train_loss']:.3f}, test acc {100 * record['test_acc']:.1f} %, "
            f"{record['seconds']:.1f} s")


def train(config: TrainConfig, job: dict[str, Any] | None = None) -> RunResult:
    """Train one variant as ``config`` says; resume from ``config.out_dir`` when possible.

    A finished run with the same settings is returned as it is, without retraining or rewriting
    anything (its provenance stays the one of the run that trained). Files in ``out_dir``:
    ``config.json``, ``history.jsonl``, ``last.pt``, ``best.pt`` (weights only), ``result.json``
    (written last: its presence marks a finished run), or ``diverged.json`` if it diverged.
    ``job`` (the launcher and job id that train the run: ``imlib.launch``) joins its provenance.
    ``result.json`` records the sha256 of ``best.pt`` and of the history (readers check them:
    :func:`imlib.runs.completed_run`) and a digest of the weights alone
    (:func:`imlib.runs.weights_digest`: two runs with equal weights have equal digests).

    It prints one line saying whether the run was reused, resumed or trained; an interrupt
    raises :class:`imlib.progress.Interrupted`, one line naming the epochs saved and how to
    resume. Without progress
    bars (headless, ``TQDM_DISABLE``) it prints an epoch line every epoch in a job (its log) and
    at least every ``PROGRESS_LINE_S`` seconds inline, then a closing line.
    """
    if config.resume:
        try:
            return _reused(config, completed_run(config))
        except IncompleteRunError as err:
            if err.reason in ("mismatch", "damaged"):
                raise
    run = prepare(config)
    run.provenance.update(job or {})
    run.out.mkdir(parents=True, exist_ok=True)
    done = _resume(run)
    if done == 0:
        _start_over(run)
    run.files.diverged.unlink(missing_ok=True)
    steps = math.ceil(len(run.train.y) / config.batch_size)
    label = _label(config)
    print(f"{label}: training {config.epochs} epochs" if not done else
          f"{label}: resuming at epoch {done + 1} of {config.epochs}" if done < config.epochs
          else f"{label}: all {done} epochs saved, writing its result", flush=True)
    every_epoch = bool(job) and job.get("launcher") not in (None, "inline")
    last_line = time.monotonic()
    saved = [done]  # the last epoch whose last.pt is written, for the interrupt's line

    def interrupted() -> str:
        kept = (f"epochs 1-{saved[0]} are saved in {run.files.last}" if saved[0]
                else "no epoch finished, nothing saved")
        return (f"training of {label} interrupted at epoch {saved[0] + 1} of {config.epochs}: "
                f"{kept}; run the cell again (or ./run_all.sh --only 03_training) to resume "
                f"from epoch {saved[0] + 1}")

    with on_interrupt(interrupted), progress(
            total=config.epochs * steps, initial=done * steps, desc=label, unit="step",
            mininterval=2.0, dynamic_ncols=True) as bar:
        for epoch in range(done + 1, config.epochs + 1):
            started = time.perf_counter()
            lr = run.optimizer.param_groups[0]["lr"]
            record: dict[str, Any] = {"epoch": epoch, **_train_epoch(run, epoch, bar)}
            run.scheduler.step()
            record["holdout_loss"], record["holdout_acc"] = _evaluate(run, run.holdout)
            record["test_loss"], record["test_acc"] = _evaluate(run, run.test)
            if not all(math.isfinite(record[k]) for k in ("holdout_loss", "test_loss")
                       if record[k] is not None):
                raise _diverged(run, epoch, "non-finite holdout or test loss")
            record.update(lr=lr, seconds=time.perf_counter() - started)
            run.history.append(record)
            score = _selection_score(run, record)
            if score > run.best_score:
                run.best_score, run.best_epoch = score, epoch
                atomic_save(_weights(run, epoch), run.files.best)
            atomic_save(_resume_state(run, epoch), run.files.last)
            saved[0] = epoch
            append_jsonl(record, run.files.history)
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{record['train_acc']:.3f}",
                            test_acc=f"{record['test_acc']:.3f}")
            if bar.disable and epoch < config.epochs and (
                    every_epoch or time.monotonic() - last_line >= PROGRESS_LINE_S):
                print(_epoch_line(config, record), flush=True)
                last_line = time.monotonic()
    best = run.history[run.best_epoch - 1]
    summary = {"completed": True, "best_epoch": run.best_epoch, "best": best,
               "config": config.to_dict(), "provenance": run.provenance,
               "best_sha256": file_record(run.files.best)["sha256"],
               "history_sha256": file_record(run.files.history)["sha256"],
               "weights_sha256": weights_digest(run.model.state_dict()
                                                if run.best_epoch == config.epochs else
                                                read_checkpoint(run.files.best,
                                                                ("model",))["model"])}
    atomic_write_text(json.dumps(summary, indent=2), run.files.result)
    if bar.disable:
        print(f"{label}: {config.epochs} epochs, best epoch {run.best_epoch}, test acc "
              f"{best['test_acc']:.3f}, {sum(r['seconds'] for r in run.history):.0f} s",
              flush=True)
    return RunResult(config, run.history, run.files.best, run.files.last, run.best_epoch,
                     run.out)
