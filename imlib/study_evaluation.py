"""A study's evaluation: its runs' own checkpoints evaluated (:func:`evaluate_study`), and its
saved evaluation kept current (:func:`update_evaluation`): what is saved and still current is
reused, the rest evaluated again, and the folder written whole.

Reading a finished study interactively (notebook 04 after ``./run_all.sh``) then costs the
checks, not the 24 models' sweeps. Each model's rows depend only on its checkpoint and the
evaluation settings (every model sees the same degraded images, seeded per condition), so the
saved rows of a current model equal what evaluating it again would give.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from imlib.evaluate import evaluate_checkpoints
from imlib.io import project_path
from imlib.results import (EvalResults, EvalSettings, eval_settings, load_results,
                           save_results, stale_runs)
from imlib.runs import RunFiles, completed_run

if TYPE_CHECKING:
    from imlib.data import ImageData
    from imlib.study import StudyParams, StudyRun

__all__ = ["study_checkpoints", "evaluate_study", "update_evaluation"]

_TABLES = ("clean", "sweeps", "reliability", "per_image")  # EvalResults' tables


def _own_checkpoint(run: StudyRun, checkpoint: str) -> Path:
    """The checkpoint ``checkpoint`` of a complete ``run``: :func:`imlib.runs.completed_run`
    checks that the run is finished with the settings the profile asks for and that its
    ``best.pt`` is the run's own (the file it wrote, not another run's model)."""
    completed_run(run.config)
    return RunFiles(run.dir).checkpoint(checkpoint)


def study_checkpoints(params: StudyParams, protocol: str, data: ImageData,
                      checkpoint: str = "best") -> list[Path]:
    """The checkpoints of ``params.runs(protocol)``, in that order, each checked: the
    run complete, trained with the settings the profile asks for, its checkpoint its own (see
    :func:`evaluate_study`); ``data`` must be the runs' data set."""
    if data.name != params.training.dataset:
        raise ValueError(f"data is {data.name!r} but the study's training dataset is "
                         f"{params.training.dataset!r}")
    return [_own_checkpoint(run, checkpoint) for run in params.runs(protocol)]


def evaluate_study(params: StudyParams, protocol: str, data: ImageData,
                   settings: EvalSettings | None = None, *, checkpoint: str = "best"
                   ) -> EvalResults:
    """:func:`imlib.evaluate.evaluate_checkpoints` of every run of ``params.runs(protocol)``.

    Every run must be complete, trained with the settings the profile asks for
    (:func:`imlib.runs.completed_run` raises naming the run and the fix otherwise) and hold its
    own checkpoint (not another variant's or seed's; the one ``result.json`` records); all are
    checked before the first is evaluated. ``settings`` defaults to the profile's
    (:func:`imlib.results.eval_settings`: its class, degradation constants, the runs' NMI bins,
    eps clamp, spread and evaluation batch); ``checkpoint`` is ``"best"`` (the selected epoch)
    or ``"last"`` (the final one).

    By default the sweeps hold both evaluation orders (``ORDERS``: the ``order`` column), so a
    report can show what the paper script's normalise-then-degrade order changes; the figures
    read the ``"degrade_first"`` rows. The second order costs only diffusion and dropout
    (blur and mosaic are copied).
    """
    paths = study_checkpoints(params, protocol, data, checkpoint)
    settings = eval_settings(params, protocol) if settings is None else settings
    print(f"evaluating {len(paths)} models ({protocol} protocol)", flush=True)
    return evaluate_checkpoints(paths, data, settings, device=params.training.device)


def _rows_of(results: EvalResults, key: tuple[str, int], settings: dict) -> EvalResults:
    """The rows and run record of one model (variant, seed) of ``results``."""
    picked = {name: frame[(frame["variant"] == key[0]) & (frame["seed"] == key[1])]
              for name, frame in ((t, getattr(results, t)) for t in _TABLES)}
    runs = [r for r in results.runs if (r.get("variant"), r.get("seed")) == key]
    return EvalResults(**picked, settings=settings, runs=runs)


def _saved_evaluation(eval_dir: Path, settings: EvalSettings) -> tuple[EvalResults | None, str]:
    """The evaluation saved in ``eval_dir`` when it is whole and made with ``settings``
    (``batch_size``, which changes no number, aside), else None and why not."""
    shown = project_path(eval_dir)
    try:
        saved = load_results(eval_dir)
        made_with = dataclasses.replace(saved.eval_settings, batch_size=settings.batch_size)
    except FileNotFoundError:
        return None, f"no saved evaluation in {shown}"
    except (ValueError, KeyError, TypeError):
        return None, f"the one in {shown} is damaged or incomplete"
    if made_with != settings:
        differing = [f.name for f in dataclasses.fields(settings)
                     if getattr(made_with, f.name) != getattr(settings, f.name)]
        return None, f"the one in {shown} was made with other {', '.join(differing)}"
    return saved, ""


def update_evaluation(params: StudyParams, protocol: str, data: ImageData,
                      settings: EvalSettings | None = None) -> EvalResults:
    """The evaluation of ``protocol``'s runs, as :func:`evaluate_study` makes it, reusing what
    ``params.eval_dir(protocol)`` holds.

    Every run is checked first (complete, trained as the profile asks, its own checkpoint:
    :func:`study_checkpoints`). The saved rows of each model whose settings and
    checkpoint are those the evaluation recorded are kept (:func:`imlib.results.stale_runs`);
    the other models are evaluated again. Saved (:func:`imlib.results.save_results`, whole or
    not at all) only when anything changed; one printed line says what was reused, what was
    evaluated and why. ``settings`` defaults to the profile's
    (:func:`imlib.results.eval_settings`). ``./run_all.sh --fresh --only 04_evaluation``
    deletes the folder, so everything is evaluated again."""
    if settings is not None and not isinstance(settings, EvalSettings):
        raise ValueError(f"settings must be an imlib.results.EvalSettings, "
                         f"got {type(settings).__name__}")
    checkpoints = study_checkpoints(params, protocol, data)
    runs = params.runs(protocol)
    settings = eval_settings(params, protocol) if settings is None else settings
    eval_dir = params.eval_dir(protocol)
    saved, why_not = _saved_evaluation(eval_dir, settings)
    problems = (stale_runs(saved.runs, params, protocol) if saved is not None
                else {(run.variant, run.seed): f": {why_not}" for run in runs})
    head = f"evaluation, {protocol} protocol:"
    if not problems:
        print(f"{head} reused {len(runs)} of {len(runs)} models from {project_path(eval_dir)}",
              flush=True)
        return saved
    redo = [(run, path) for run, path in zip(runs, checkpoints, strict=True)
            if (run.variant, run.seed) in problems]
    fresh = (evaluate_checkpoints([path for _, path in redo], data, settings,
                                  device=params.training.device) if redo else None)
    kept = (fresh or saved).settings
    parts = [_rows_of(fresh if (run.variant, run.seed) in problems else saved,
                      (run.variant, run.seed), kept) for run in runs]
    save_results(EvalResults.concat(parts), eval_dir, params=params.record(protocol))
    if saved is None:
        print(f"{head} evaluated {len(runs)} models ({why_not}) -> {project_path(eval_dir)}",
              flush=True)
    else:
        reasons = "; ".join(f"{v} seed {s}{why}" for (v, s), why in problems.items())
        print(f"{head} reused {len(runs) - len(redo)} of {len(runs)} models from "
              f"{project_path(eval_dir)}, re-evaluated {len(redo)} ({reasons})", flush=True)
    return load_results(eval_dir)
