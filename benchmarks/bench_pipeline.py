"""Per-sample loop vs imlib's batched IM pipeline, in images per second.

The loop is what a DataLoader worker would do for each image: pick a kind and a level, degrade
that one image (``degrade`` on a batch of 1), compute its NMI with a per-channel
``torch.bincount`` of the joint bin codes, and build its 100-class IM target vector. The batched
path is imlib's ``random_degrade`` + ``nmi(validate_args=False)`` + ``information_matching`` on
whole batches. Both run in the same process on the same thread count; each stage is warmed up,
timed ``--repeats`` times, and the median is reported.

    python benchmarks/bench_pipeline.py                       # CPU, torch's thread count
    python benchmarks/bench_pipeline.py --threads 1
    python benchmarks/bench_pipeline.py --device cuda --batches 8
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import time
from collections.abc import Callable

import torch

from imlib.degradations import KINDS, degrade, random_degrade
from imlib.labels import information_matching
from imlib.nmi import nmi

NUM_CLASSES = 100  # CIFAR-100
BINS = 64  # the paper's histogram bins
MAX_EPS = 0.9  # IM's cap on eps (imlib's default)


# --- the per-sample path ----------------------------------------------------------------------


def loop_nmi(x: torch.Tensor, y: torch.Tensor, bins: int = BINS) -> float:
    """NMI of one image pair (C, H, W): per channel, a bincount of ``code_x * bins + code_y``,
    entropies from the joint histogram, ``2 I / (H(x) + H(y))`` (0 where both are constant)."""
    cx = (x * (bins - 1)).floor().clamp(0, bins - 1).long().flatten(1)
    cy = (y * (bins - 1)).floor().clamp(0, bins - 1).long().flatten(1)
    total = 0.0
    for c in range(x.shape[0]):
        joint = torch.bincount(cx[c] * bins + cy[c], minlength=bins * bins).double()
        p_xy = (joint / joint.sum()).view(bins, bins)
        p_x, p_y = p_xy.sum(1), p_xy.sum(0)
        h_x = -torch.special.xlogy(p_x, p_x).sum()
        h_y = -torch.special.xlogy(p_y, p_y).sum()
        h_xy = -torch.special.xlogy(p_xy, p_xy).sum()
        denom = float(h_x + h_y)
        if denom > 0:
            total += min(max(2 * float(h_x + h_y - h_xy) / denom, 0.0), 1.0)
    return total / x.shape[0]


def loop_target(label: int, nmi_value: float) -> torch.Tensor:
    """IM target of one sample: true class 1 - eps, every other class eps / (K - 1)."""
    eps = min(max(1.0 - nmi_value, 0.0), MAX_EPS)
    target = torch.full((NUM_CLASSES,), eps / (NUM_CLASSES - 1))
    target[label] = 1.0 - eps
    return target


def loop_pipeline(x: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    targets = []
    for i in range(x.shape[0]):
        kind = KINDS[int(torch.randint(len(KINDS), (1,), generator=g, device=g.device))]
        level = float(torch.rand(1, generator=g, device=g.device))
        y = degrade(x[i : i + 1], kind, level, generator=g, validate_args=False)
        targets.append(loop_target(int(labels[i]), loop_nmi(x[i], y[0])))
    return torch.stack(targets)


def loop_degrade(x: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
    out = []
    for i in range(x.shape[0]):
        kind = KINDS[int(torch.randint(len(KINDS), (1,), generator=g, device=g.device))]
        level = float(torch.rand(1, generator=g, device=g.device))
        out.append(degrade(x[i : i + 1], kind, level, generator=g, validate_args=False))
    return out


# --- the batched path -------------------------------------------------------------------------


def batched_pipeline(x: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    y, _, _ = random_degrade(x, generator=g, validate_args=False)
    scores = nmi(x, y, bins=BINS, validate_args=False)
    return information_matching(labels, NUM_CLASSES, scores, max_eps=MAX_EPS, validate_args=False)


# --- timing -----------------------------------------------------------------------------------


def median_rate(work: Callable[[], object], images: int, repeats: int, device: torch.device,
                warmup: int = 1) -> float:
    """Median images/second of ``work`` (which processes ``images`` images) over ``repeats``."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        work()
    sync()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        sync()
        seconds.append(time.perf_counter() - start)
    return images / statistics.median(seconds)


def check_agreement(x: torch.Tensor, g: torch.Generator) -> float:
    """Loop NMI and imlib's batched NMI on the same degraded batch: the two sides of the table
    compute the same number."""
    y, _, _ = random_degrade(x, generator=g)
    batched = nmi(x, y, bins=BINS).double().cpu()
    looped = torch.tensor([loop_nmi(x[i], y[i]) for i in range(x.shape[0])], dtype=torch.float64)
    diff = float((batched - looped).abs().max())
    assert diff < 1e-5, f"loop and batched NMI disagree by {diff}"
    return diff


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch")
    parser.add_argument("--batches", type=int, default=2,
                        help="batches per timed repetition of the batched path")
    parser.add_argument("--loop-images", type=int, default=None,
                        help="images per timed repetition of the loop (default: one batch)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads (default: torch's current)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    n_batched = args.batch_size * args.batches
    n_loop = args.loop_images or args.batch_size

    # CIFAR-sized images with some spatial structure (smoothed noise), labels for 100 classes.
    x = torch.rand(n_batched, 3, 32, 32, generator=g, device=device)
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    labels = torch.randint(NUM_CLASSES, (n_batched,), generator=g, device=device)
    batches = [(x[i : i + args.batch_size], labels[i : i + args.batch_size])
               for i in range(0, n_batched, args.batch_size)]
    loop_x, loop_labels = x[:n_loop], labels[:n_loop].cpu()

    diff = check_agreement(x[: args.batch_size], g)
    y_fixed, _, _ = random_degrade(x, generator=g)  # for the NMI-only stage

    rows = []

    def stage(name, loop_work, batched_work):
        loop = median_rate(loop_work, n_loop, args.repeats, device)
        batched = median_rate(batched_work, n_batched, args.repeats, device)
        rows.append((name, loop, batched, batched / loop))

    stage("degrade+nmi+target",
          lambda: loop_pipeline(loop_x, loop_labels, g),
          lambda: [batched_pipeline(b, lab, g) for b, lab in batches])
    stage("degrade only",
          lambda: loop_degrade(loop_x, g),
          lambda: [random_degrade(b, generator=g, validate_args=False) for b, _ in batches])
    stage("nmi only",
          lambda: [loop_nmi(loop_x[i], y_fixed[i]) for i in range(n_loop)],
          lambda: [nmi(x[i : i + args.batch_size], y_fixed[i : i + args.batch_size], bins=BINS,
                       validate_args=False) for i in range(0, n_batched, args.batch_size)])

    print(f"date      {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"device    {device_name(device)}")
    print(f"threads   {torch.get_num_threads()}")
    print(f"torch     {torch.__version__}")
    print(f"setup     32x32 RGB, {NUM_CLASSES} classes, {BINS} bins; batched: {args.batches} x "
          f"{args.batch_size} images, loop: {n_loop} images per repetition; median of "
          f"{args.repeats} after 1 warm-up")
    print(f"check     max |loop NMI - batched NMI| = {diff:.1e} on {args.batch_size} images")
    print()
    print(f"{'stage':<20} {'loop img/s':>12} {'batched img/s':>14} {'ratio':>8}")
    for name, loop, batched, ratio in rows:
        print(f"{name:<20} {loop:>12,.0f} {batched:>14,.0f} {ratio:>7.1f}x")
    assert all(math.isfinite(r[3]) for r in rows)


if __name__ == "__main__":
    main()
