"""Time of the degradation sweep of notebook 04 for one model: 4 kinds x 11 levels over a
CIFAR-100-sized test set (10 000 images, 100 classes), prediction + NMI, on one device.

    python benchmarks/bench_eval_sweep.py --device cuda --model resnet18
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import torch

from imlib.data import ImageData
from imlib.evaluate import sweep_model
from imlib.models import build_model
from imlib.results import EvalSettings
from imlib.runs import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="small_cnn", choices=["small_cnn", "resnet18"])
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    device = resolve_device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(args.images) % 100
    data = ImageData("random", x[:1], y[:1], x, y, tuple(map(str, range(100))),
                     (0.5,) * 3, (0.25,) * 3)
    model = build_model(args.model, 100).to(device).eval()
    sweep_model(model, data, EvalSettings(kinds=("mosaic",), levels=(0.5,)))  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    rows = sweep_model(model, data)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(f"# {date.today()}  device={args.device}  model={args.model}  torch={torch.__version__}")
    print(f"sweep of {len(rows) // 2} conditions x {args.images} images: {seconds:.1f} s "
          f"({len(rows) // 2 * args.images / seconds:,.0f} img/s)")


if __name__ == "__main__":
    main()
