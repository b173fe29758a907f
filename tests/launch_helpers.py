"""What the launcher's tests share (a test module imports no other): a tiny study, the weights
of two checkpoints compared bit for bit, histories without their timings, a run's job record,
and a wait for a condition that names what never happened.

``tests/test_launch.py`` uses them with local jobs, ``tests/cluster/`` with a real SLURM.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from imlib.runs import TrainConfig
from imlib.study import StudyParams

# Small enough for seconds per run on two cores (as tests/test_train.py's TINY).
TINY = TrainConfig(dataset="synthetic", synthetic_per_class=60, synthetic_classes=4,
                   synthetic_test_per_class=10, model="small_cnn", epochs=2, batch_size=64,
                   device="cpu", holdout_fraction=0.2)


def study(tmp_path: Path, variants=("baseline", "im"), **fields) -> StudyParams:
    """A one-protocol, one-seed study of tiny runs in ``tmp_path``, trained as local jobs."""
    values = dict(profile="smoke", training=TINY, variants=variants, seeds=(0,),
                  runs_dir=str(tmp_path / "runs"), figures_dir=str(tmp_path / "figures"),
                  launcher="local", jobs=2)
    return StudyParams(**{**values, **fields})


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["model"]


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def job_of(run) -> dict:
    return json.loads((run.dir / "job.json").read_text())


def wait_for(condition, what: str, limit_s: float = 300.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)
