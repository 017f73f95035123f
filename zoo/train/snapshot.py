"""``zoo export RUN``: a run's checkpoint as a model folder, without training.

A long run (hours, across sessions) is worth publishing before it ends: this exports the weights
training would export now (the best validation epoch where the recipe keeps it, else the last
finished epoch) from the run folder, while the run goes on in another process or after it
stopped. Nothing in the run folder is written; the model folder is what ``zoo train`` exports at
the end of a run (projected, verified, evaluated on the test split, with its card), and its card
says which epochs it holds and that it is a snapshot.

The run's own files are read: ``recipe.yaml``, ``checkpoints/{last,best}.ckpt`` (loaded without
unpickling objects), ``logs/metrics.csv`` with the earlier segments' rows that a training process
keeps aside while it runs (``logs/metrics.earlier.csv``), ``segments.json`` and, for runs
started by this version, ``model.json`` (the architecture as built, e.g. a fine-tuned parent's
with refitted reference energies) and ``parent.json`` (the model it was fine-tuned from).
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import platform
import time
from pathlib import Path
from typing import Any

import torch

from zoo import relax
from zoo.hub.errors import ZooError
from zoo.tasks import get_task
from zoo.train.export import export_run, metrics_from_rows
from zoo.train.module import TrainingModule
from zoo.train.recipe import load_recipe
from zoo.train.run import (
    _DTYPES,
    MODEL_FILE,
    PARENT_FILE,
    _combine_rows,
    _read_segments,
    attach_relaxation,
    command_line,
    model_to_train,
)

#: How often, and how many seconds apart, a checkpoint that fails to load is read again: a
#: training process may be rewriting it at that moment (Lightning does not write atomically).
READ_ATTEMPTS, READ_PAUSE_S = 5, 3.0


class SnapshotError(ZooError, RuntimeError):
    """A run folder that cannot be exported (no checkpoint, unreadable, or incomplete)."""


def export_checkpoint(run: str | Path, output: str | Path | None = None) -> Path:
    """Export a run's checkpoint as a model folder, without training.

    Parameters
    ----------
    run
        A ``zoo train`` run folder, finished, stopped or still training in another process.
    output
        The model folder to write (default ``<run>/snapshot-epoch<N>``, ``N`` the epochs done:
        ``<run>/export`` stays the run's own final export).

    Returns
    -------
    pathlib.Path
        The model folder: ``config.json``, ``model.safetensors``, ``README.md`` and figures,
        loadable with ``zoo.load(folder)`` and publishable as it is.

    Raises
    ------
    SnapshotError
        No checkpoint in ``run``, a checkpoint that stays unreadable, or a fine-tuned run started
        before run folders recorded the architecture they train.
    """
    run = Path(run)
    last_path = run / "checkpoints" / "last.ckpt"
    if not last_path.is_file():
        raise SnapshotError(
            f"{run} holds no checkpoint (checkpoints/last.ckpt): nothing to export. A run "
            "writes its first checkpoint at the end of its first epoch."
        )
    recipe = load_recipe(run / "recipe.yaml")
    keep_best = recipe.training.keep == "best"
    chosen, last = _read_checkpoints(run, keep_best)
    epochs_done = int(last["epoch"]) + 1
    architecture = _architecture(run)
    parent = _parent(run)

    task = get_task(recipe.data.dataset)
    # The run's own RNG stream, as in training; the caller's global random state is kept.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        dtype = _DTYPES[recipe.training.dtype]
        train_data, val_data, test_data = task.load_splits(recipe, dtype)
        if architecture is None:  # a run from scratch, started before model.json existed
            model = model_to_train(task, recipe, train_data, None)
        else:
            from zoo._registry import create_model

            model = create_model(architecture["architecture"],
                                 model_args=architecture["model_args"])
            model = attach_relaxation(model.train().to(dtype), recipe)
        module = TrainingModule(model, task, recipe, train_data, val_data)
        try:
            module.load_state_dict(chosen["state_dict"])
        except RuntimeError as err:  # another architecture than the one rebuilt here
            raise SnapshotError(
                f"the checkpoint of {run} does not fit the model its recipe builds ({err}). "
                + _RESUME_TO_EXPORT
            ) from err
        if module.ema is not None:
            if "ema" not in chosen:
                raise SnapshotError(f"{run}: the recipe averages the weights (ema_decay) but "
                                    "the checkpoint holds no average")
            module.ema.load_state_dict(chosen["ema"])
            module.ema.copy_to_model()  # the averaged weights are what was validated

    model.eval()
    relaxed_test = None
    if relax.branches(model):
        relaxed_test = task.evaluate(model, test_data, recipe.training.eval_batch_size)
    relax.project(model)
    segments = _read_segments(run)
    metrics = _finished_epochs_metrics(run, epochs_done)
    if keep_best and not any(e == int(chosen["epoch"]) for e, _ in
                             metrics.get(task.validation_curve, [])):
        raise SnapshotError(
            f"{run}: the logs hold no {task.validation_curve} of the selected epoch "
            f"{int(chosen['epoch'])}; try again once the current epoch has ended"
        )
    info: dict[str, Any] = {
        "command": segments[-1]["command"] if segments else command_line(),
        "wall_time_s": round(float(last.get("wall_seconds", 0.0)), 1),
        "cpu_hours": round(float(last.get("cpu_seconds", 0.0)) / 3600.0, 3),
        "segments": segments,
        "hardware": next((s["hardware"] for s in reversed(segments) if s.get("hardware")),
                         _this_machine()),
        "snapshot": {"epochs": epochs_done, "planned_epochs": recipe.training.epochs,
                     "command": command_line(),
                     "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        **(parent or {}),
        **({"selected_epoch": int(chosen["epoch"])} if keep_best else {}),
    }
    folder = Path(output) if output is not None else run / f"snapshot-epoch{epochs_done}"
    return export_run(model, task, recipe, run, test_data, training_info=info,
                      relaxed_test=relaxed_test, metrics=metrics, folder=folder)


#: How to export a run this module cannot rebuild: the training code itself, on the run.
_RESUME_TO_EXPORT = (
    "Export it with the code that trained it: stop its training process, then resume it for no "
    "further epoch with the command it was trained with (the same recipe, --init-from or `zoo "
    "finetune` options) plus --resume --epochs <epochs done>."
)


def _read_checkpoints(run: Path, keep_best: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint to export and the last one. A training process writes ``last.ckpt``,
    then ``best.ckpt`` at an epoch's end: ``best`` is read first, and again while it is newer
    than the ``last`` read after it (the two read between those writes)."""
    checkpoints = run / "checkpoints"
    for attempt in range(READ_ATTEMPTS):
        if attempt:
            time.sleep(READ_PAUSE_S)
        best = _read_checkpoint(checkpoints / "best.ckpt") if keep_best else None
        last = _read_checkpoint(checkpoints / "last.ckpt")
        if best is None:
            return last, last
        if int(best["epoch"]) <= int(last["epoch"]):
            return best, last
    raise SnapshotError(
        f"{checkpoints}: best.ckpt (epoch {int(best['epoch'])}) stays newer than last.ckpt "
        f"(epoch {int(last['epoch'])}); last.ckpt was replaced by an older copy? Resume the run "
        "for an epoch to write both again"
    )


def _finished_epochs_metrics(run: Path, epochs_done: int) -> dict[str, list[tuple[int, float]]]:
    """The run's per-epoch metrics of its ``epochs_done`` finished epochs, from every segment:
    the rows an interrupted training process kept aside and the current segment's, without
    a row a training process is writing (no line end yet) or of the epoch in progress."""
    logs = run / "logs"
    rows = _combine_rows(_complete_rows(logs / "metrics.earlier.csv"),
                         _complete_rows(logs / "metrics.csv"))
    return metrics_from_rows(
        [r for r in rows if not r.get("epoch") or int(float(r["epoch"])) < epochs_done]
    )


def _complete_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint this run's training wrote, loaded without unpickling objects; read again
    a few seconds later while it fails (a training process may be rewriting it)."""
    problem: Exception | None = None
    for attempt in range(READ_ATTEMPTS):
        if attempt:
            time.sleep(READ_PAUSE_S)
        if not path.is_file():
            problem = FileNotFoundError(f"no {path.name}")
            continue
        try:
            return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu",
                              weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as err:
            problem = err
    if isinstance(problem, FileNotFoundError):
        raise SnapshotError(
            f"{path} is missing: a run writes it at the end of its first epoch (best.ckpt where "
            "the recipe keeps its best validation epoch). Try again once an epoch has ended."
        )
    raise SnapshotError(
        f"{path} could not be read ({type(problem).__name__}: {problem}) in {READ_ATTEMPTS} "
        f"tries {READ_PAUSE_S:g} s apart. If a training process is writing it, try again once "
        "its epoch has ended; otherwise it is not a checkpoint this run wrote, or it is "
        "damaged: resume training from an intact copy."
    ) from problem


def _architecture(run: Path) -> dict[str, Any] | None:
    """The architecture the run trains (``model.json``), or ``None`` for a run from scratch
    started before run folders recorded it (its recipe's model section builds it)."""
    path = run / MODEL_FILE
    if path.is_file():
        return json.loads(path.read_text())
    # Only a plain `zoo train` without --init-from is known to build its model from the recipe
    # alone; a fine-tuned model (zoo finetune, --init-from, or a Python call that may have
    # passed init_from) keeps constants outside its weights that a rebuild would refit wrongly.
    commands = [s.get("command", "") for s in _read_segments(run)]
    if not commands or not all(c.startswith("zoo train ") and "--init-from" not in c
                               for c in commands):
        raise SnapshotError(
            f"{run} holds no {MODEL_FILE}: it was started before run folders recorded the model "
            "they train, and not by a plain `zoo train` (it may be fine-tuned), so its model "
            f"cannot be rebuilt from the recipe alone. {_RESUME_TO_EXPORT}"
        )
    return None


def _parent(run: Path) -> dict[str, Any] | None:
    """``{"init_from": ..., "parent": ...}`` of a fine-tuned run (``parent.json``), if any."""
    path = run / PARENT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _this_machine() -> str:
    # Runs started before segments recorded their hardware: the machine of this export.
    return (f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (the "
            "machine of the export; the run's segments did not record theirs)")
