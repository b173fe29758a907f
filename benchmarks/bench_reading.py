"""Interactive reading: how long a reader waits, after ``./run_all.sh``, from opening notebook 04
to its explorer, with the saved evaluation reused against recomputed.

The finished study's runs folder (``runs_dir`` of the profile, default ``runs/smoke``) is copied
without its evaluation into a temporary folder, and notebook 04 is run there up to the explorer's
cell in a kernel (``imlib.execution.execute_until``), as a reader runs it in JupyterLab: first
with no saved evaluation (every model evaluated: the baseline, what a reader waited for before
the evaluation was reused), then again (the evaluation just written, reused). The study's own
folder is only read.

    ./run_all.sh                                   # the smoke study, once
    .venv/bin/python benchmarks/bench_reading.py   # then this: about 4 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_reading.py --profile digits
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from imlib.execution import execute_until
from imlib.pipeline import NOTEBOOKS_DIR
from imlib.runs import IncompleteRunError, completed_run
from imlib.study import load_params

GOAL_S = 60.0  # issue 24: opening 04 and running every cell up to the explorer, on 2 cores
EXPLORER_CELL = "explorer("


def _reach_explorer(params, overrides) -> tuple[float, str]:
    """Seconds from a new kernel to the explorer's cell done, and the evaluation's one line."""
    start = time.perf_counter()
    executed = execute_until(NOTEBOOKS_DIR / "04_evaluation.py", params, overrides, EXPLORER_CELL)
    seconds = time.perf_counter() - start
    said = [line for cell in executed.cells if cell.cell_type == "code"
            for output in cell.outputs for line in "".join(output.get("text", "")).splitlines()
            if line.startswith("evaluation, ")]
    return seconds, "; ".join(said)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke")
    args = parser.parse_args()
    try:
        study = load_params(args.profile)
    except ValueError as err:  # an unknown or broken profile: one line, as run_all.sh says it
        raise SystemExit(f"bench_reading.py: {err}") from None
    missing = []
    for run in study.runs():
        try:
            completed_run(run.config)
        except IncompleteRunError:
            missing.append(run.name)
    if missing:
        raise SystemExit(f"{study.runs_root} holds no finished {args.profile} study "
                         f"({len(missing)} runs missing, e.g. {missing[0]}): run "
                         f"./run_all.sh --profile {args.profile} first")
    with tempfile.TemporaryDirectory(prefix="bench_reading_") as folder:
        runs = Path(folder) / "runs"
        shutil.copytree(study.runs_root, runs, ignore=shutil.ignore_patterns("eval", "*.lock"))
        overrides = {"runs_dir": str(runs), "figures_dir": str(Path(folder) / "figures")}
        params = load_params(args.profile, overrides)
        print(f"{args.profile} study, {len(params.runs())} models; notebook 04 up to its "
              f"explorer, in a kernel, on {platform.machine()} ({torch.get_num_threads()} "
              f"threads), {date.today()}")
        recomputed, said_first = _reach_explorer(params, overrides)
        print(f"  no saved evaluation (every model evaluated): {recomputed:7.1f} s  [{said_first}]")
        reused, said_again = _reach_explorer(params, overrides)
        print(f"  saved evaluation reused:                     {reused:7.1f} s  [{said_again}]")
        verdict = "met" if reused <= GOAL_S else "NOT met"
        print(f"  ratio {recomputed / reused:.1f}x; goal {GOAL_S:.0f} s with the saved "
              f"evaluation: {verdict}")


if __name__ == "__main__":
    main()
