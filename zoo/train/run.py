"""``zoo train``: run a recipe end to end (train relaxed, project, verify, evaluate, export).

The run folder holds ``recipe.yaml`` (the merged recipe), ``logs/metrics.csv`` (every metric per
epoch), ``checkpoints/last.ckpt`` (written every epoch; ``resume=True`` continues from it) and,
at the end, ``export/`` (the model folder ready for ``zoo.publish``).
"""

from __future__ import annotations

import csv
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from zoo import relax
from zoo.train.family import get_family
from zoo.train.recipe import load_recipe
from zoo.train.task import RelaxationCallback

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def load_data(recipe: dict[str, Any], dtype: torch.dtype):
    """Train / validation / test data of the recipe's split (from its dataset's family)."""
    return get_family(recipe["data"]["dataset"]).load_data(recipe, dtype)


def build_model(recipe: dict[str, Any], train_data: Any, init_from: str | None):
    """The (relaxed) model of a recipe: fresh (fitted to the training data where the family
    needs it) or a published one, cast to the recipe's dtype, in training mode."""
    model = get_family(recipe["data"]["dataset"]).build_model(recipe, train_data, init_from)
    model = model.train().to(_DTYPES[recipe["training"]["dtype"]])
    method = recipe["relaxation"]["method"]
    if method != "none":
        r = recipe["relaxation"]
        relax.relax(model, method, form=r["form"], hidden_factor=r["hidden_factor"])
    return model.train()


def train(
    recipe_or_path: str | Path | dict[str, Any],
    output: str | Path | None = None,
    *,
    epochs: int | None = None,
    devices: int | None = None,
    init_from: str | None = None,
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
        A published model to fine-tune, with fresh relaxation branches from the recipe.
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
    if isinstance(recipe_or_path, dict):
        from zoo.train.recipe import _merge, validate

        recipe = validate(_merge(_merge(recipe_or_path, extra), overrides or {}))
    else:
        recipe = load_recipe(recipe_or_path, _merge_overrides(extra, overrides))
    run = Path(output or Path("runs") / recipe["name"])
    run.mkdir(parents=True, exist_ok=True)
    checkpoint = run / "checkpoints" / "last.ckpt"
    if checkpoint.exists() and not resume:
        raise FileExistsError(
            f"{run} already holds a run; pass resume=True (--resume) to continue it, or choose "
            "another output folder"
        )
    if resume and not checkpoint.exists():
        raise FileNotFoundError(f"nothing to resume: {checkpoint} does not exist")
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("zoo", "cli.py"):
        argv[0] = "zoo"  # the console script, however it was started
    command = " ".join(shlex.quote(a) for a in argv)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))

    # A private RNG stream: the run is reproducible from its seed and the caller's global
    # random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(recipe["seed"]))
        dtype = _DTYPES[recipe["training"]["dtype"]]
        family = get_family(recipe["data"]["dataset"])
        train_data, val_data, test_data = load_data(recipe, dtype)
        model = build_model(recipe, train_data, init_from)
        task = family.make_task(model, recipe, train_data, val_data)
        callbacks: list[L.Callback] = [
            # `last.ckpt` rewritten at every epoch end. (Lightning 2.6 writes `save_last`
            # only when a top-k checkpoint was saved in the same step, i.e. never with
            # save_top_k=0: the file would appear only when training ends.)
            ModelCheckpoint(dirpath=run / "checkpoints", filename="last", save_top_k=1,
                            every_n_epochs=1, save_on_train_epoch_end=True,
                            enable_version_counter=False),
        ]
        keep_best = recipe["training"]["keep"] == "best"
        if keep_best:
            callbacks.append(ModelCheckpoint(
                dirpath=run / "checkpoints", filename="best", save_top_k=1,
                monitor=family.validation_curve, mode="max" if family.higher_is_better else "min",
                enable_version_counter=False,
            ))
        method = recipe["relaxation"]["method"]
        if method != "none":
            controller = relax.make_controller(method, **recipe["relaxation"]["controller"])
            callbacks.append(RelaxationCallback(controller))
        n_devices = int(recipe["training"]["devices"])
        trainer = L.Trainer(
            max_epochs=int(recipe["training"]["epochs"]),
            accelerator="cpu" if not torch.cuda.is_available() else "auto",
            devices=n_devices,
            strategy="ddp" if n_devices > 1 else "auto",
            logger=CSVLogger(run, name="logs", version=""),
            callbacks=callbacks,
            inference_mode=False,  # forces are gradients: validation needs autograd
            use_distributed_sampler=False,  # the task builds its own seeded samplers
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            deterministic=False,
        )
        if resume and _is_rank_zero_process():
            _stash_metrics(run / "logs")
        started = time.time()
        trainer.fit(task, ckpt_path=str(checkpoint) if resume else None)
        wall = time.time() - started
        if trainer.is_global_zero:
            _restore_metrics(run / "logs")
        if keep_best:
            # This run's own checkpoint, read without unpickling arbitrary objects.
            best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu",
                              weights_only=True)
            task.load_state_dict(best["state_dict"])
            best_epoch = int(best["epoch"])
    if export and trainer.is_global_zero:
        from zoo.train.export import export_run

        relaxed_test = None
        if relax.branches(model):
            # The relaxed model as trained (levels as the controller left them), for the card's
            # before/after-projection comparison.
            relaxed_test = family.evaluate(
                model.eval(), test_data, int(recipe["training"]["eval_batch_size"])
            )
        relax.project(model)
        export_run(
            model.eval(), recipe, run, test_data, relaxed_test=relaxed_test,
            training_info={
                "command": command,
                "wall_time_s": round(wall, 1) + _previous_wall(run),
                "hardware": _hardware(n_devices),
                "init_from": init_from,
                **({"selected_epoch": best_epoch} if keep_best else {}),
            },
        )
    if trainer.is_global_zero:
        _record_wall(run, wall)
    return run


def _merge_overrides(a: dict[str, Any], b: dict[str, Any] | None) -> dict[str, Any]:
    from zoo.train.recipe import _merge

    return _merge(a, b or {})


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


def _stash_metrics(logs: Path) -> None:
    earlier = logs / "metrics.earlier.csv"
    rows = _combine_rows(_read_rows(earlier), _read_rows(logs / "metrics.csv"))
    if rows:
        _write_rows(earlier, rows)


def _restore_metrics(logs: Path) -> None:
    earlier = logs / "metrics.earlier.csv"
    if earlier.exists():
        current = logs / "metrics.csv"
        _write_rows(current, _combine_rows(_read_rows(earlier), _read_rows(current)))
        earlier.unlink()


def _previous_wall(run: Path) -> float:
    path = run / "wall_time_s.txt"
    return float(path.read_text()) if path.exists() else 0.0


def _record_wall(run: Path, wall: float) -> None:
    # Wall time accumulates across resumed sessions, for the card.
    path = run / "wall_time_s.txt"
    path.write_text(f"{_previous_wall(run) + wall:.1f}\n")


def _hardware(n_devices: int) -> str:
    if torch.cuda.is_available():
        return f"{n_devices} x {torch.cuda.get_device_name(0)}"
    return (
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, {n_devices} process(es)"
    )
