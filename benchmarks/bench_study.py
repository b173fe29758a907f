"""Time of the whole paper study, measured end to end at a few epochs and extrapolated.

Runs every notebook of the ``paper`` profile (``imlib.pipeline.run``, one notebook at a time,
as ``run_all.sh --profile paper`` does) on CIFAR-shaped synthetic data (100 classes x 500
training + 100 test images, generated offline) with a few epochs and seeds, in a temporary
folder. It reports:

- fixed costs: each notebook's wall time, the data loading and the evaluation per model (the
  durations papermill records for the cells of notebook 04 that call ``load_data`` and
  ``update_evaluation``);
- per protocol: the first epoch (compilation, warm-up) and the steady epoch, from the runs'
  ``history.jsonl`` (each epoch's ``seconds``: training plus its holdout and test evaluation);
- the extrapolated time of the whole study (every protocol x variant x seed of the profile at
  its full epochs, plus evaluation) against the goal of 45 minutes on one H100.

    python benchmarks/bench_study.py --device cuda --epochs 3 --seeds 1 --out study.json
    python benchmarks/bench_study.py --tiny        # the CPU, tiny sizes: checks this script

``-p KEY VALUE`` changes the profile for the measured runs and the extrapolated study alike;
``--epochs`` and ``--seeds`` only the measured runs.

How the study is extrapolated, per protocol with n full runs: each run costs its full epochs at
the steady epoch's time; the first epoch's extra (compilation) is the first measured run's for
the first run and the mean of the later measured runs' for the others; the time of notebook
03's training cell outside the epochs (data, model, checkpoints) and the evaluation scale with
the runs; everything else in the notebooks is counted once.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from imlib.execution import NotebookFailed
from imlib.pipeline import notebooks, run
from imlib.runs import RunFiles, read_history, resolve_device
from imlib.study import StudyParams, load_params, parse_override

PROFILE = "paper"
GOAL_MINUTES = 45.0
# CIFAR-100's shape: 100 classes, 500 training and 100 test images each.
CIFAR_SHAPED = {"dataset": "synthetic", "synthetic_classes": 100, "synthetic_per_class": 500,
                "synthetic_test_per_class": 100}
# --tiny: seconds on two CPU cores; checks the script, its numbers mean nothing.
# No batch_size: the reference-code protocol fixes its own (128), and 30 images a class leave
# the paper protocol one whole batch of 256 after the holdout.
TINY = {"dataset": "synthetic", "synthetic_classes": 10, "synthetic_per_class": 30,
        "synthetic_test_per_class": 10, "model": "small_cnn", "nmi_pairs": 16,
        "amp": False, "compile": "none", "device": "cpu"}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def time_notebooks(overrides: dict[str, Any]) -> tuple[StudyParams, dict[str, float]]:
    """Run every notebook of the profile in order, one ``run`` call each; their wall times."""
    seconds = {}
    params = None
    for name in notebooks():
        start = time.perf_counter()
        params = run(PROFILE, overrides, only=[name], log_output=False)
        seconds[name] = time.perf_counter() - start
    return params, seconds


def cell_seconds(executed: Path, call: str) -> float:
    """Seconds papermill recorded for the code cells of an executed notebook whose source
    matches the regular expression ``call``, summed."""
    cells = [cell for cell in json.loads(executed.read_text(encoding="utf-8"))["cells"]
             if cell["cell_type"] == "code" and re.search(call, "".join(cell["source"]))]
    if not cells:
        raise ValueError(f"{executed.name} has no cell matching {call!r}; update bench_study")
    return sum(cell["metadata"]["papermill"]["duration"] for cell in cells)


def epoch_costs(params: StudyParams) -> dict[str, dict[str, Any]]:
    """Per protocol, from the measured runs' histories in run order: each run's first-epoch
    seconds, the median of all later epochs (the steady epoch) and the sum of all epochs."""
    costs = {}
    for protocol in params.protocols:
        histories = [read_history(RunFiles(r.dir).history, r.config.epochs)
                     for r in params.runs(protocol)]
        costs[protocol] = {
            "runs": len(histories),
            "first_epochs": [history[0]["seconds"] for history in histories],
            "steady_epoch": statistics.median(record["seconds"] for history in histories
                                              for record in history[1:]),
            "all_epochs": sum(record["seconds"] for history in histories for record in history),
        }
    return costs


def measure(params: StudyParams, notebook_seconds: dict[str, float]) -> dict[str, Any]:
    """What the executed notebooks recorded: the data loading, training and evaluation cells
    (papermill's cell durations), next to each notebook's wall time and the epochs' costs."""
    executed = params.runs_root / "notebooks"
    return {"notebooks": notebook_seconds,
            "data_loading": cell_seconds(executed / "04_evaluation.ipynb", r"\bload_data\("),
            "training_cells": cell_seconds(executed / "03_training.ipynb", r"(?<![\w.])train\("),
            "evaluation_cells": cell_seconds(executed / "04_evaluation.ipynb",
                                             r"\bupdate_evaluation\("),
            "protocols": epoch_costs(params)}


def extrapolate(full: StudyParams, measured: dict[str, Any]) -> dict[str, Any]:
    """The whole study's time in seconds, split into parts (see the module docstring)."""
    costs = measured["protocols"]
    measured_runs = sum(cost["runs"] for cost in costs.values())
    all_epochs = sum(cost["all_epochs"] for cost in costs.values())
    outside_epochs = max(measured["training_cells"] - all_epochs, 0.0) / measured_runs
    per_model = measured["evaluation_cells"] / measured_runs
    walls = measured["notebooks"]
    once = {name: seconds for name, seconds in walls.items()
            if name not in ("03_training", "04_evaluation")}
    once["03_training outside train()"] = walls["03_training"] - measured["training_cells"]
    once["04_evaluation outside update_evaluation()"] = (walls["04_evaluation"]
                                                     - measured["evaluation_cells"])
    protocols = {}
    for protocol, cost in costs.items():
        n_runs = len(full.runs(protocol))
        extras = [first - cost["steady_epoch"] for first in cost["first_epochs"]]
        warmup = max(extras[0] + (n_runs - 1) * statistics.mean(extras[1:] or extras), 0.0)
        protocols[protocol] = {
            "runs": n_runs,
            "epochs": full.training.epochs,
            "training": n_runs * full.training.epochs * cost["steady_epoch"] + warmup,
            "warmup": warmup,
            "outside_epochs": n_runs * outside_epochs,
            "evaluation": n_runs * per_model,
        }
    total = sum(once.values()) + sum(part["training"] + part["outside_epochs"]
                                     + part["evaluation"] for part in protocols.values())
    return {"once": once, "protocols": protocols, "evaluation_per_model": per_model,
            "total_seconds": total, "goal_seconds": GOAL_MINUTES * 60,
            "goal_met": total <= GOAL_MINUTES * 60}


def report(header: str, measured: dict[str, Any], full: StudyParams,
           study: dict[str, Any]) -> None:
    """The measured costs and the extrapolation, as tables."""
    print(f"\n{header}\n")
    print(f"{'fixed costs':<48}{'seconds':>9}")
    for name, seconds in measured["notebooks"].items():
        print(f"  notebook {name:<37}{seconds:>9.1f}")
    print(f"  {'data loading (a cell of 04)':<46}{measured['data_loading']:>9.1f}")
    print(f"  {'evaluation per model (update_evaluation in 04)':<46}"
          f"{study['evaluation_per_model']:>9.1f}")
    print(f"\n{'per protocol':<18}{'runs':>5}{'1st epoch s':>13}{'steady epoch s':>16}")
    for protocol, cost in measured["protocols"].items():
        print(f"  {protocol:<16}{cost['runs']:>5}{statistics.mean(cost['first_epochs']):>13.2f}"
              f"{cost['steady_epoch']:>16.2f}")
    print(f"\nwhole study: {len(full.protocols)} protocols x {len(full.variants)} variants x "
          f"{len(full.seeds)} seeds x {full.training.epochs} epochs, plus evaluation"
          f"{'minutes':>10}")
    rows = [("once: the notebooks outside training and evaluation",
             sum(study["once"].values()))]
    for protocol, part in study["protocols"].items():
        rows += [(f"{protocol}: training, {part['runs']} runs (warm-up {part['warmup']:.0f} s)",
                  part["training"]),
                 (f"{protocol}: run setup and checkpoints", part["outside_epochs"]),
                 (f"{protocol}: evaluation", part["evaluation"])]
    for label, seconds in rows:
        print(f"  {label:<72}{seconds / 60:>8.1f}")
    verdict = "met" if study["goal_met"] else "NOT met"
    print(f"  {'total':<72}{study['total_seconds'] / 60:>8.1f}   "
          f"goal {GOAL_MINUTES:.0f} min: {verdict}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per measured run, at least 2 (the first one warms up)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds measured: 0, 1, ...")
    parser.add_argument("--device", default=None,
                        help="the training device (default: the profile's, cuda)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"),
                        help="override one more parameter of the profile (YAML value), "
                             "e.g. -p compile none")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny synthetic data and the small CNN on the CPU: checks this script "
                             "(a minute or two, mostly the notebooks' own start-up)")
    parser.add_argument("--out", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run folder")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes compilation")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    overrides: dict[str, Any] = dict(TINY if args.tiny else CIFAR_SHAPED)
    if args.device is not None:
        overrides["device"] = args.device
    try:
        overrides.update({key: parse_override(value) for key, value in args.param})
        full = load_params(PROFILE, overrides)  # the whole study: the profile's epochs, seeds
    except ValueError as err:
        print(f"bench_study: {err}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench_study_"))
    overrides.update(epochs=args.epochs, seeds=list(range(args.seeds)),
                     runs_dir=str(workdir / "runs"), figures_dir=str(workdir / "figures"))
    try:
        params, notebook_seconds = time_notebooks(overrides)
    except ValueError as err:  # e.g. no CUDA device
        shutil.rmtree(workdir)
        print(f"bench_study: {err}", file=sys.stderr)
        return 2
    except NotebookFailed as err:
        print(f"bench_study: {err}\n(the run folder {workdir} is kept)", file=sys.stderr)
        return 1
    measured = measure(params, notebook_seconds)
    study = extrapolate(full, measured)
    device = resolve_device(params.training.device)
    header = (f"# {date.today()}  bench_study{' --tiny' if args.tiny else ''}: profile "
              f"{PROFILE}, {args.epochs} epochs x seeds {list(params.seeds)}, "
              f"{params.training.model}, {params.num_classes} classes, "
              f"device {_device_name(device)}, torch {torch.__version__}, "
              f"compile {params.training.compile}, amp {params.training.amp}")
    report(header, measured, full, study)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(
            {"date": str(date.today()), "device": _device_name(device),
             "torch": torch.__version__, "overrides": overrides, "measured": measured,
             "extrapolation": study}, indent=2))
        print(f"\nfigures written to {args.out}")
    if args.keep:
        print(f"run folder kept: {workdir}")
    else:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
