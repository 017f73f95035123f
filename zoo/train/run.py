"""``zoo train``: run a recipe end to end (train relaxed, project, verify, evaluate, export).

The run folder holds ``recipe.yaml`` (the merged recipe), ``model.json`` (the architecture as
built) and, when fine-tuned, ``parent.json``, ``segments.json`` (command and hardware of every
segment), ``logs/metrics.csv`` (every metric per epoch), ``checkpoints/last.ckpt`` (written every
epoch; ``resume=True`` continues from it) and, at the end, ``export/`` (the model folder ready
for ``zoo.publish``; ``zoo export`` writes it from the checkpoint at any time, see
:mod:`zoo.train.snapshot`).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from zoo import relax
from zoo.hub.errors import ZooError
from zoo.tasks import get_task
from zoo.train.module import RelaxationCallback, TrainingModule
from zoo.train.recipe import _merge, differing_keys, load_recipe, validate
from zoo.train.recipe_schema import Recipe, RecipeError

if TYPE_CHECKING:
    from zoo.tasks.base import Task

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Files of a run folder beside the recipe: the architecture as built (``model.config()``, which
#: holds what training does not change, e.g. a fine-tuned model's refitted reference energies),
#: and the model it was fine-tuned from. ``zoo export`` rebuilds the model from them.
MODEL_FILE, PARENT_FILE = "model.json", "parent.json"


def model_to_train(task: Task, recipe: Recipe, train_data: Any, init_from: Any):
    """The model a run trains: the task's initial model (fresh, fitted to the training data where
    the task needs it, or a published one: a name, folder or model object), cast to the recipe's
    dtype, with relaxation branches attached where the recipe asks for them, in training mode."""
    model = task.initial_model(recipe, train_data, init_from)
    return attach_relaxation(model.train().to(_DTYPES[recipe.training.dtype]), recipe)


def attach_relaxation(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    """``model`` with the recipe's relaxation branches attached (none for ``method: none``), in
    training mode."""
    r = recipe.relaxation
    if r.method != "none":
        relax.relax(model, r.method, form=r.form, hidden_factor=r.hidden_factor, rank=r.rank,
                    penalty_rows=r.penalty_rows, penalty_every=r.penalty_every,
                    init_scale=r.init_scale)
    return model.train()


def train(
    recipe_or_path: str | Path | dict[str, Any],
    output: str | Path | None = None,
    *,
    epochs: int | None = None,
    devices: int | None = None,
    init_from: str | os.PathLike[str] | torch.nn.Module | None = None,
    relaxation: str | None = None,
    resume: bool = False,
    export: bool = True,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Train a recipe and export the projected model.

    Parameters
    ----------
    recipe_or_path
        A recipe file, a published model's name (``training/recipes/NAME.yaml``) or a merged
        recipe dict.
    output
        Run folder (default ``runs/<recipe name>``).
    epochs, devices
        Overrides of ``training.epochs`` and ``training.devices`` (DDP on CPU uses gloo).
    init_from
        A published model (name or folder) to fine-tune; rMD17 recipes also take a
        model object (left unchanged: a copy is trained). Its per-element reference energies
        are refit on the training data, and relaxation is re-enabled: a recipe with
        ``relaxation.method: none`` gets the method the model was trained with, or CR
        (``relaxation="none"`` keeps it off). The new model's config and card record the
        parent (name, revision, sha256 of its weights).
    relaxation
        ``"cr"``, ``"ace"``, ``"recm"`` or ``"none"``: override the recipe's relaxation method
        (with the parent's recorded settings for that method, or the defaults).
    resume
        Continue from ``<output>/checkpoints/last.ckpt`` (losing at most one epoch).
    export
        Project, verify, evaluate on the test split and write ``<output>/export``.
    progress
        Show Lightning's progress bar.
    overrides
        Further recipe overrides, nested like the recipe.

    Returns
    -------
    pathlib.Path
        The run folder.
    """
    extra: dict[str, Any] = {"training": {}}
    if epochs is not None:
        extra["training"]["epochs"] = epochs
    if devices is not None:
        extra["training"]["devices"] = devices
    # Everything is validated before anything is written: a bad value never leaves a stub run.
    if isinstance(recipe_or_path, dict | Recipe):
        base = recipe_or_path.to_dict() if isinstance(recipe_or_path, Recipe) else recipe_or_path
        recipe = validate(_merge(_merge(base, extra), overrides or {}))
    else:
        recipe = load_recipe(recipe_or_path, _merge(extra, overrides or {}))
    parent = None
    if init_from is not None:
        from zoo.train.parent import parent_record

        if isinstance(init_from, torch.nn.Module) and recipe.data.dataset != "rmd17":
            raise RecipeError(
                f"init_from takes a model object for rmd17 recipes only; for "
                f"{recipe.data.dataset}, give the model's name or folder"
            )
        parent = parent_record(init_from)  # a bad name fails here, before any run folder
    recipe = _with_relaxation(recipe, init_from, relaxation)
    init_from_text = None if parent is None else (
        parent["name"] if isinstance(init_from, torch.nn.Module) else str(init_from)
    )
    task = get_task(recipe.data.dataset)
    warn_short_schedule(recipe)
    run = Path(output or Path("runs") / recipe.name)
    checkpoint = run / "checkpoints" / "last.ckpt"
    if checkpoint.exists() and not resume:
        raise RunFolderError(
            f"{run} already holds a run; pass resume=True (--resume) to continue it, or choose "
            "another output folder"
        )
    if resume:
        _check_resumable(run, checkpoint, recipe)
    command = command_line()
    run.mkdir(parents=True, exist_ok=True)
    if _is_rank_zero_process():  # DDP workers run this function again: one record per segment
        _write_text(run / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        _append_segment(run, command, resume, _hardware(recipe.training.devices))

    # A private RNG stream: the run is reproducible from its seed and the caller's global
    # random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        dtype = _DTYPES[recipe.training.dtype]
        train_data, val_data, test_data = task.load_splits(recipe, dtype)
        model = model_to_train(task, recipe, train_data, init_from)
        # Written by the segment that starts the run: a resumed segment rebuilds the same model.
        if _is_rank_zero_process() and not (resume and (run / MODEL_FILE).exists()):
            _write_json(run / MODEL_FILE, model.config())
            if parent is not None:
                _write_json(run / PARENT_FILE, {"init_from": init_from_text, "parent": parent})
        module = TrainingModule(model, task, recipe, train_data, val_data)
        callbacks: list[L.Callback] = [
            # `last.ckpt` rewritten at every epoch end. (Lightning 2.6 writes `save_last`
            # only when a top-k checkpoint was saved in the same step, i.e. never with
            # save_top_k=0: the file would appear only when training ends.)
            ModelCheckpoint(dirpath=run / "checkpoints", filename="last", save_top_k=1,
                            every_n_epochs=1, save_on_train_epoch_end=True,
                            enable_version_counter=False),
        ]
        keep_best = recipe.training.keep == "best"
        if keep_best:
            callbacks.append(ModelCheckpoint(
                dirpath=run / "checkpoints", filename="best", save_top_k=1,
                monitor=task.validation_curve, mode="max" if task.higher_is_better else "min",
                enable_version_counter=False,
            ))
        if recipe.relaxation.method != "none":
            controller = relax.make_controller(recipe.relaxation.method,
                                               **recipe.relaxation.controller)
            callbacks.append(RelaxationCallback(controller))
        n_devices = recipe.training.devices
        trainer = L.Trainer(
            max_epochs=recipe.training.epochs,
            accelerator="cpu" if not torch.cuda.is_available() else "auto",
            devices=n_devices,
            strategy="ddp" if n_devices > 1 else "auto",
            logger=CSVLogger(run, name="logs", version=""),
            callbacks=callbacks,
            inference_mode=False,  # forces are gradients: validation needs autograd
            use_distributed_sampler=False,  # the module builds its own seeded samplers
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            deterministic=False,
        )
        if resume and _is_rank_zero_process():
            _stash_metrics(run / "logs", _epochs_done(checkpoint))
        try:
            trainer.fit(module, ckpt_path=str(checkpoint) if resume else None)
        except SystemExit as stop:
            # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1), ignoring SIGINT
            # from then on: restore both, keep the earlier metrics, and say how to continue.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if trainer.is_global_zero:
                _restore_metrics(run / "logs")
            if trainer.interrupted:
                raise TrainingInterrupted(
                    f"training interrupted; the last finished epoch is in {checkpoint}. "
                    f"Continue with: zoo train {_recipe_argument(recipe_or_path, run)} "
                    f"--output {shlex.quote(str(run))} --resume"
                ) from stop
            raise
        if trainer.is_global_zero:
            _restore_metrics(run / "logs")
        if keep_best:
            # This run's own checkpoint, read without unpickling arbitrary objects.
            best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu",
                              weights_only=True)
            module.load_state_dict(best["state_dict"])
            if module.ema is not None:
                module.ema.load_state_dict(best["ema"])
            best_epoch = int(best["epoch"])
        if module.ema is not None:
            module.ema.copy_to_model()  # the averaged weights are what was validated
    if export and trainer.is_global_zero:
        from zoo.train.export import export_run

        relaxed_test = None
        if relax.branches(model):
            # The relaxed model as trained (levels as the controller left them), for the card's
            # before/after-projection comparison.
            relaxed_test = task.evaluate(model.eval(), test_data,
                                         recipe.training.eval_batch_size)
        relax.project(model)
        export_run(
            model.eval(), task, recipe, run, test_data, relaxed_test=relaxed_test,
            training_info={
                "command": command,
                # Over every segment of the run, interrupted ones included (from checkpoints).
                "wall_time_s": round(module.wall_seconds(), 1),
                "cpu_hours": round(module.cpu_seconds() / 3600.0, 3),
                "segments": _read_segments(run),
                "hardware": _hardware(n_devices),
                "init_from": init_from_text,
                **({"parent": parent} if parent is not None else {}),
                **({"selected_epoch": best_epoch} if keep_best else {}),
            },
        )
    return run


class ScheduleWarning(UserWarning):
    """A run too short for its schedules (learning-rate warm-up, relaxation level)."""


def warn_short_schedule(recipe: Recipe) -> list[str]:
    """Warn (:class:`ScheduleWarning`) where a run is too short for its schedules.

    Two cases: the learning-rate warm-up lasts the whole run, and a CR level schedule that has
    not come down by the last epoch (the model is then projected while its branches still
    carry a large part of the function) or never rises above 0. Returns the messages.
    """
    import warnings

    epochs = int(recipe.training.epochs)
    messages = []
    schedule = recipe.schedule
    if schedule.name != "plateau" and schedule.warmup_epochs >= epochs:
        messages.append(
            f"the learning-rate warm-up ({schedule.warmup_epochs} epochs) lasts the whole "
            f"{epochs}-epoch run: the learning rate never reaches its value; lower "
            "schedule.warmup_epochs"
        )
    r = recipe.relaxation
    if r.method == "cr":
        controller = relax.make_controller("cr", **r.controller)
        levels = [controller.level_at(e, epochs) for e in range(epochs)]
        cooldown = controller.cooldown_epochs
        if max(levels) <= 0.0:
            messages.append(
                f"the CR level stays at 0 for all {epochs} epochs (cooldown {cooldown}): "
                f"relaxation has no effect; give at least {cooldown + 2} epochs"
            )
        elif levels[-1] > 0.1 * controller.peak:
            messages.append(
                f"the CR level is still {levels[-1]:.2g} in the last of {epochs} epochs: the "
                "model is projected before its level has come down; give more epochs or set "
                "relaxation.controller.cooldown_epochs (last epochs at level 0)"
            )
    for message in messages:
        warnings.warn(message, ScheduleWarning, stacklevel=3)
    return messages


def _with_relaxation(recipe: Recipe, init_from: Any, method: str | None) -> Recipe:
    """The recipe with relaxation re-enabled for fine-tuning (see :func:`train`)."""
    current = recipe.relaxation.method
    if method is None and (init_from is None or current != "none"):
        return recipe
    if method == current:
        return recipe
    from zoo.train.parent import base_config, inherited_relaxation

    config = base_config(init_from) if init_from is not None else {}
    section = inherited_relaxation(config, method)
    merged = recipe.to_dict()
    merged["relaxation"] = {**merged["relaxation"], **section}
    return validate(merged)


class RunFolderError(ZooError, FileExistsError):
    """The output folder holds another run, or a run that this recipe cannot resume."""


class NothingToResumeError(ZooError, FileNotFoundError):
    """``--resume`` was asked for a folder without a checkpoint."""


class TrainingInterrupted(ZooError, KeyboardInterrupt):
    """Training was stopped (Ctrl-C); the message says how to resume."""


def _recipe_argument(recipe_or_path: Any, run: Path) -> str:
    if isinstance(recipe_or_path, str | Path):
        return shlex.quote(str(recipe_or_path))
    return shlex.quote(str(run / "recipe.yaml"))


def _check_resumable(run: Path, checkpoint: Path, recipe: Recipe) -> None:
    """Refuse, before touching anything, to resume with a recipe that differs from the stored
    one in anything but the number of epochs (which a resumed run may extend)."""
    if not checkpoint.exists():
        raise NothingToResumeError(f"nothing to resume: {checkpoint} does not exist; start the "
                                   "run without --resume")
    stored_path = run / "recipe.yaml"
    if not stored_path.exists():
        return
    stored = yaml.safe_load(stored_path.read_text()) or {}
    try:
        stored = validate(stored).to_dict()
    except RecipeError:
        pass  # written by an older version: compare the raw values
    differing = [k for k in differing_keys(stored, recipe.to_dict())
                 if k not in _RESUMABLE_CHANGES]
    if any(k in _ANNEAL_KEYS for k in differing):
        _check_anneal_change(stored, recipe, checkpoint)
        differing = [k for k in differing if k not in _ANNEAL_KEYS]
    if differing:
        raise RunFolderError(
            f"cannot resume {run} with a different recipe: {', '.join(differing)} differ from "
            f"{stored_path}. Resume with the same recipe (only training.epochs may change), or "
            "train into a new --output folder"
        )


# What may change when a run is resumed: more epochs (schedules that depend on the total, such as
# cosine or CR's triangle, then continue on the new total) and the devices it runs on.
_RESUMABLE_CHANGES = {"training.epochs", "training.devices"}


# The final annealing stage of a plateau schedule may be declared (or moved) on resuming, as
# long as it starts no earlier than the next epoch: what the earlier epochs did stays the same.
_ANNEAL_KEYS = {"schedule.anneal_start", "schedule.anneal_epochs"}


def _check_anneal_change(stored: dict[str, Any], recipe: Recipe, checkpoint: Path) -> None:
    # Our own run folder's checkpoint; weights_only keeps it to plain tensors and containers.
    following = int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]) + 1
    before = (stored.get("schedule") or {}).get("anneal_start")
    after = recipe.schedule.anneal_start
    started = [s for s in (before, after) if s is not None and s < following]
    if started:
        raise RunFolderError(
            f"cannot change schedule.anneal_start/anneal_epochs of {checkpoint.parent.parent}: "
            f"the annealing stage {'starts' if after == started[0] else 'started'} at epoch "
            f"{started[0]}, before the next epoch ({following}), so earlier epochs would have "
            f"been trained differently. Set anneal_start to {following} or later, or keep "
            "the stored values"
        )


def command_line() -> str:
    """This process's command, as the run records it (``zoo ...`` for the console script,
    however it was started)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("zoo", "cli.py"):
        argv[0] = "zoo"
    return " ".join(shlex.quote(a) for a in argv)


def _append_segment(run: Path, command: str, resume: bool, hardware: str) -> None:
    """Record the command and hardware of every training segment of the run (for the card)."""
    path = run / "segments.json"
    segments = json.loads(path.read_text()) if path.exists() and resume else []
    segments.append({"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "resumed": bool(resume), "hardware": hardware})
    _write_json(path, segments)


def _write_json(path: Path, value: Any) -> None:
    _write_text(path, json.dumps(value, indent=2) + "\n")


def _write_text(path: Path, text: str) -> None:
    # Whole or not at all: `zoo export` may read the run folder while a segment starts.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_segments(run: Path) -> list[dict[str, Any]]:
    path = run / "segments.json"
    return json.loads(path.read_text()) if path.exists() else []


def _is_rank_zero_process() -> bool:
    # Before the Trainer exists: the DDP workers Lightning starts carry LOCAL_RANK > 0.
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


# Lightning's CSVLogger deletes an existing metrics.csv when a resumed session logs its first
# metric: the earlier sessions' rows are kept aside in metrics.earlier.csv (which survives a
# second interruption) and put back in front of the new rows once training ends.
def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _combine_rows(earlier: list[dict[str, str]], later: list[dict[str, str]]) -> list:
    # A resumed session re-runs the epoch it was interrupted in: earlier rows from there on go.
    epochs = [int(float(r["epoch"])) for r in later if r.get("epoch")]
    if epochs:
        first = min(epochs)
        earlier = [r for r in earlier if not r.get("epoch") or int(float(r["epoch"])) < first]
    return earlier + later


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    keys = sorted({k for row in rows for k in row})
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _epochs_done(checkpoint: Path) -> int:
    # The run's own checkpoint (written at an epoch's end), read without unpickling objects.
    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]) + 1


def _stash_metrics(logs: Path, epochs_done: int) -> None:
    earlier = logs / "metrics.earlier.csv"
    rows = _combine_rows(_read_rows(earlier), _read_rows(logs / "metrics.csv"))
    # Rows of the epoch that was interrupted are re-run (or, when the run is only exported,
    # never finished): they are not part of the run's history.
    rows = [r for r in rows if not r.get("epoch") or int(float(r["epoch"])) < epochs_done]
    if rows:
        _write_rows(earlier, rows)


def _restore_metrics(logs: Path) -> None:
    earlier = logs / "metrics.earlier.csv"
    if earlier.exists():
        current = logs / "metrics.csv"
        _write_rows(current, _combine_rows(_read_rows(earlier), _read_rows(current)))
        earlier.unlink()


def _hardware(n_devices: int) -> str:
    if torch.cuda.is_available():
        return f"{n_devices} x {torch.cuda.get_device_name(0)}"
    return (
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, {n_devices} process(es)"
    )
