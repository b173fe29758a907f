"""Cost of the IM pipeline inside a training step, and the time of a full IM epoch.

Times ``imlib.train.train_steps`` (the steps the training loop runs) for two configs on the same
model, batch size and device:

  plain  hard labels, no degradation (crop + flip only)
  im     crop + flip, random_degrade, NMI, IM targets

and prints the overhead of ``im`` over ``plain`` in percent. With ``--epoch`` it also times one
whole IM epoch (``--per-class`` x ``--classes`` synthetic images: 500 x 100 is CIFAR-100's size),
training only, as the training loop runs it.

    python benchmarks/bench_train_step.py --device cpu --model small_cnn --batch-size 256
    python benchmarks/bench_train_step.py --device cuda --model resnet18 --amp --epoch
    python benchmarks/bench_train_step.py --device cuda --model resnet18 --amp --compile --epoch

``--compile`` alone is ``--compile reduce-overhead`` (CUDA graphs; eager on the CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date

import torch
from tqdm import tqdm

from imlib.runs import COMPILE_MODES, TrainConfig
from imlib.train import _train_epoch, prepare, train_steps


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(configs: dict[str, TrainConfig], steps: int, warmup: int, repeats: int
               ) -> dict[str, float]:
    """Median over ``repeats`` of the mean seconds per step, per config. The configs take turns
    within each repeat, so clock ramps and background load hit all of them alike."""
    runs = {name: prepare(config) for name, config in configs.items()}
    orders = {}
    for name, run in runs.items():
        run.model.train()
        orders[name] = torch.randperm(len(run.train.y), generator=run.generator,
                                      device=run.device)[:steps * run.config.batch_size]
        train_steps(run, orders[name][:warmup * run.config.batch_size])
        _sync(run.device)
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            train_steps(run, orders[name])
            _sync(run.device)
            timings[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in timings.items()}


def time_epoch(config: TrainConfig) -> float:
    """Seconds of one training epoch (after a warm-up epoch), without evaluation."""
    run = prepare(config)
    with tqdm(disable=True) as bar:
        _train_epoch(run, 1, bar)  # warm-up: cudnn autotuning, compilation
        _sync(run.device)
        start = time.perf_counter()
        _train_epoch(run, 2, bar)
        _sync(run.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="small_cnn", choices=["small_cnn", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast + channels_last")
    parser.add_argument("--compile", nargs="?", const="reduce-overhead", default="none",
                        choices=COMPILE_MODES, help="torch.compile mode of the model")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--augment-batches", type=int, default=TrainConfig.augment_batches)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--epoch", action="store_true", help="also time one full IM epoch")
    args = parser.parse_args()

    base = dict(dataset="synthetic", synthetic_classes=args.classes,
                synthetic_per_class=args.per_class, model=args.model, batch_size=args.batch_size,
                device=args.device, amp=args.amp, compile=args.compile, holdout_fraction=0.0,
                augment_batches=args.augment_batches,
                selection="last", out_dir="/tmp/bench_train_step")
    plain = TrainConfig(**base, variant="baseline", degrade=False)
    im = TrainConfig(**base, variant="im")
    device = torch.device(plain.device) if plain.device != "auto" else None
    name = torch.cuda.get_device_name(device) if args.device.startswith("cuda") else "cpu"
    print(f"# {date.today()}  device={name}  threads={torch.get_num_threads()}  "
          f"torch={torch.__version__}  model={args.model}  batch={args.batch_size}  "
          f"amp={args.amp}  compile={args.compile}  augment_batches={args.augment_batches}")
    seconds = time_steps({"plain": plain, "im": im}, args.steps, args.warmup, args.repeats)
    print(f"{'step':<8}{'ms/step':>10}{'img/s':>12}")
    for label, t in seconds.items():
        print(f"{label:<8}{t * 1e3:>10.2f}{args.batch_size / t:>12.0f}")
    print(f"IM overhead: {100 * (seconds['im'] / seconds['plain'] - 1):+.1f}%")
    if args.epoch:
        n = args.classes * args.per_class
        print(f"one IM epoch of {n} images: {time_epoch(im):.2f} s")


if __name__ == "__main__":
    main()
