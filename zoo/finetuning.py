"""``zoo.finetune``: fine-tune a published energy/force model on the user's own labelled frames.

::

    import zoo
    model, metrics, folder = zoo.finetune("equiformer-md17-aspirin", "ethanol.xyz", "my-model",
                                          epochs=10)
    zoo.load("my-model")                      # the same model, verified, from its folder

One call reads the frames (any file ``ase.io.read`` reads, labels under ``energy_key`` and
``forces_key``), refuses elements the model never saw, builds a recipe from the model's own
config, re-enables relaxation (the method the model was trained with, or CR) with its level
schedule scaled to the run, refits the per-element reference energies, trains with
:func:`zoo.train.run.train` (progress bars, checkpoints, ``resume=True``), projects the model back
to an exactly equivariant one and writes it to the output folder with a card that names the
model by that folder and records its parent (name, revision, sha256 of its weights). The run
itself (recipe, logs, checkpoints) stays in ``<output>/.training``.

Energy/force models only (Equiformer: the models that take atoms): point-cloud classifiers and
N-body models are fine-tuned with a recipe, ``zoo train RECIPE --init-from NAME``.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from zoo.errors import ZooError

__all__ = ["TRAINING_FOLDER", "FinetuneResult", "UnsupportedModelError", "finetune"]

#: Where, inside the output folder, the run keeps its recipe, logs and checkpoints (hidden: the
#: output folder itself is a model folder, loadable and publishable as it is).
TRAINING_FOLDER = ".training"
_FITTED_ARGS = frozenset({"atomic_energies", "energy_scale", "energy_shift"})


class UnsupportedModelError(ZooError, ValueError):
    """A model ``zoo finetune`` cannot fine-tune (it takes energy/force models only)."""


class OutputFolderError(ZooError, FileExistsError):
    """An output folder that holds something other than a fine-tuning run of ours."""


class FinetuneResult(NamedTuple):
    """What :func:`finetune` returns (unpacks as ``model, metrics, folder``).

    Attributes
    ----------
    model
        The projected, exactly equivariant model, loaded back from ``folder`` (verified).
    metrics
        ``energy_mae`` (meV), ``forces_mae`` (meV/Å), ``n_frames`` and ``split`` (``"test"``, or
        ``"validation"`` where no test frames were given) of the exported model;
        ``before_projection`` (the relaxed model's, or ``None``), ``validation`` (last epoch),
        ``equivariance_error``, ``wall_time_s`` and ``cpu_hours``.
    folder
        The model folder (``output``).
    """

    model: Any
    metrics: dict[str, Any]
    folder: Path


def finetune(
    model_or_name: Any,
    frames_or_path: str | os.PathLike[str] | Sequence[Any],
    output: str | os.PathLike[str],
    *,
    val: str | os.PathLike[str] | Sequence[Any] | None = None,
    val_fraction: float | None = None,
    test: str | os.PathLike[str] | Sequence[Any] | None = None,
    relax: str | None = None,
    epochs: int = 10,
    energy_key: str = "energy",
    forces_key: str = "forces",
    batch_size: int = 8,
    lr: float = 5e-4,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune an energy/force model on labelled frames, relaxed, and export it projected.

    Parameters
    ----------
    model_or_name
        A published model's name, a model folder, or a model from :func:`zoo.load` (left
        unchanged: a copy is trained; it must be the projected model).
    frames_or_path
        The training frames: a structure file (extended XYZ, ``.traj``, ...; any file
        ``ase.io.read`` reads) or a list of ``ase.Atoms`` (written to ``<output>/.training``).
    output
        The folder of the new model; it names the model (``zoo.load(output)``).
    val, val_fraction
        Validation frames (file or list), or the fraction of the training frames held out for
        validation (seeded; default 0.1). Not both.
    test
        Held-out test frames for the card's metrics; without them the export is evaluated on the
        validation frames, and its card says so.
    relax
        ``"cr"``, ``"ace"``, ``"recm"`` or ``"none"``; ``None``: the method the model was
        trained with, or CR. CR's triangle spans the run but its last ``max(1, epochs // 10)``
        epochs, which train at level 0, so the model is projected after the level has come down.
    epochs, batch_size, lr, seed
        Training length, batch size, AdamW learning rate (cosine schedule), seed of the run and
        of the validation split.
    energy_key, forces_key
        Where the frames keep their energy (eV) and forces (eV/Å).
    resume
        Continue an interrupted run in ``output`` (same arguments; only ``epochs`` may change).
    progress
        Show progress bars.
    overrides
        Further recipe values, nested like a recipe (``{"training": {"ema_decay": 0.99}}``).

    Returns
    -------
    FinetuneResult
        ``(model, metrics, folder)``.

    Raises
    ------
    UnsupportedModelError
        Not an energy/force model.
    UnseenElementsError
        The frames hold elements the model was never trained on.
    InvalidFrameError
        A frame without an energy or forces under the given keys, or otherwise unusable.
    OutputFolderError
        ``output`` holds other files.
    """
    from zoo.train.parent import base_config, inherited_relaxation, parent_record
    from zoo.train.recipe import _merge, recipe_defaults, validate

    if val is not None and val_fraction is not None:
        raise ValueError("give val (validation frames) or val_fraction, not both")
    output = Path(output)
    training = output / TRAINING_FOLDER
    _check_output(output, training, resume)
    config = base_config(model_or_name)
    parent = parent_record(model_or_name)
    _check_supported(model_or_name, config, parent["name"])

    # Every data source is read and checked before anything is written.
    sources = {"train": frames_or_path, "val": val, "test": test}
    rows = {role: _rows(source, energy_key, forces_key)
            for role, source in sources.items() if source is not None}
    from zoo.tasks.rmd17.references import check_known_elements

    known = _known_elements(model_or_name, config)
    for role_rows in rows.values():
        check_known_elements(known, [r["z"] for r in role_rows], parent["name"])
    if val is None and len(rows["train"]) < 2:
        raise ValueError(
            f"{len(rows['train'])} training frame(s): too few to hold out validation frames; "
            "give more frames or separate validation frames (val=)"
        )

    relaxation = inherited_relaxation(config, relax)
    if relaxation["method"] == "cr":
        relaxation["controller"] = {**relaxation["controller"],
                                    "cooldown_epochs": max(1, epochs // 10)}
    architecture = config.get("architecture") or model_or_name.architecture
    model_args = config.get("model_args") or getattr(model_or_name, "model_args", {})
    preset, args = _preset_and_args(architecture, model_args)
    in_memory = {role: not _is_path(sources[role]) for role in rows}
    files = {role: (training / f"{role}.xyz") if in_memory[role] else Path(sources[role])
             for role in rows}
    recipe = _merge(recipe_defaults("rmd17"), {
        "name": str(output),
        "seed": seed,
        "data": {
            "molecule": None,
            "train_file": str(files["train"].resolve()),
            "val_file": str(files["val"].resolve()) if "val" in files else None,
            "val_fraction": val_fraction,
            "test_file": str(files["test"].resolve()) if "test" in files else None,
            "split_seed": seed,
            "energy_key": energy_key,
            "forces_key": forces_key,
        },
        "model": {"architecture": architecture, "preset": preset, "args": args},
        "relaxation": relaxation,
        "optimizer": {"name": "adamw", "lr": lr, "weight_decay": 1e-6},
        "schedule": {"name": "cosine", "warmup_epochs": epochs // 10, "min_lr_ratio": 0.01},
        "training": {"epochs": epochs, "batch_size": batch_size,
                     "dtype": config.get("dtype", "float32")},
        "export": {"license": _licence(parent)},
    })
    if resume:
        recipe = _keep_stored_schedules(recipe, training / "recipe.yaml")
    recipe = validate(_merge(recipe, overrides or {}))
    for role, rows_of_role in rows.items():
        if in_memory[role]:
            _write_rows(rows_of_role, files[role], energy_key, forces_key)

    from zoo.train.run import train

    run = train(recipe, training, init_from=model_or_name,
                relaxation=recipe.relaxation.method, resume=resume, progress=progress)
    _move_export(run / "export", output)
    return _result(output)


def _check_output(output: Path, training: Path, resume: bool) -> None:
    if output.exists() and not output.is_dir():
        raise OutputFolderError(f"{output} is a file; the output must be a folder")
    if output.is_dir() and any(output.iterdir()) and not training.is_dir():
        raise OutputFolderError(
            f"{output} is not empty and holds no fine-tuning run: choose a new output folder"
        )
    if resume and not training.is_dir():
        raise OutputFolderError(f"nothing to resume: {output} holds no fine-tuning run")
    if not resume and (training / "checkpoints" / "last.ckpt").exists():
        raise OutputFolderError(
            f"{output} already holds a fine-tuning run; pass resume=True (--resume) to continue "
            "it, or choose another output folder"
        )


def _keep_stored_schedules(recipe: dict[str, Any], stored_path: Path) -> dict[str, Any]:
    """A resumed run may extend its epochs, but keeps the warm-up and CR cooldown it started
    with (derived from the first run's epochs; a resumed recipe may differ in epochs only)."""
    import yaml

    if not stored_path.is_file():
        return recipe
    stored = yaml.safe_load(stored_path.read_text()) or {}
    recipe["schedule"]["warmup_epochs"] = stored.get("schedule", {}).get(
        "warmup_epochs", recipe["schedule"]["warmup_epochs"])
    controller = stored.get("relaxation", {}).get("controller") or {}
    if "cooldown_epochs" in controller and recipe["relaxation"]["method"] == "cr":
        recipe["relaxation"]["controller"]["cooldown_epochs"] = controller["cooldown_epochs"]
    return recipe


def _check_supported(model_or_name: Any, config: dict[str, Any], name: str) -> None:
    from zoo._registry import get_architecture

    architecture = config.get("architecture") or getattr(model_or_name, "architecture", None)
    if not architecture:
        raise UnsupportedModelError(f"{name} is not a zoo model (no architecture recorded)")
    if not isinstance(model_or_name, str | os.PathLike):
        from zoo.relax import branches

        if branches(model_or_name):
            raise UnsupportedModelError(
                "the model to fine-tune still has relaxation branches: pass the projected model "
                "(zoo.load(name), or zoo.relax.project(model)); fine-tuning attaches fresh ones"
            )
    cls = get_architecture(architecture).cls
    if getattr(cls, "input_kind", None) == "atoms" and hasattr(cls, "set_atomic_energies"):
        return
    kind = {"point_cloud": "point-cloud classifier", "nbody": "N-body model",
            "grid": "grid (smoke-plume) model"}.get(getattr(cls, "input_kind", None), "model")
    raise UnsupportedModelError(
        f"zoo finetune takes energy/force models (architectures that read atoms, such as "
        f"equiformer) on labelled structure files; {name} is a {kind} ({architecture}). "
        f"Fine-tune it with a recipe for its data: zoo train RECIPE.yaml --init-from {name} "
        "(relaxation re-enabled by default)"
    )


def _is_path(source: Any) -> bool:
    return isinstance(source, str | os.PathLike)


def _rows(source: Any, energy_key: str, forces_key: str) -> list[dict[str, Any]]:
    from zoo.data.labelled import frames_to_rows, read_labelled

    if _is_path(source):
        return read_labelled(source, energy_key, forces_key)
    return frames_to_rows(list(source), energy_key, forces_key)


def _known_elements(model_or_name: Any, config: dict[str, Any]) -> Any:
    if hasattr(model_or_name, "elements"):
        return model_or_name.elements
    references = (config.get("model_args") or {}).get("atomic_energies")
    return sorted(int(z) for z in references) if references else None


def _preset_and_args(architecture: str, model_args: dict[str, Any]) -> tuple[str, dict]:
    """The preset closest to ``model_args`` and the arguments that differ from it (the fitted
    normalisation aside: the fine-tuned model starts from the parent's)."""
    from zoo._registry import get_architecture

    entry = get_architecture(architecture)
    defaults = {
        k: p.default for k, p in inspect.signature(entry.cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    best = None
    for name in sorted(entry.presets, key=lambda n: n != entry.default_preset):
        full = {**defaults, **entry.presets[name]}
        differing = {k: v for k, v in model_args.items()
                     if k not in _FITTED_ARGS and full.get(k) != v}
        if best is None or len(differing) < len(best[1]):
            best = (name, differing)
    return best


def _licence(parent: dict[str, Any]) -> str:
    from zoo.hub.pretrained import get_pretrained, is_registered

    if parent.get("repo_id") and is_registered(parent["name"]):
        return get_pretrained(parent["name"]).licence
    return "unknown"


def _write_rows(rows: list[dict[str, Any]], path: Path, energy_key: str, forces_key: str) -> None:
    """Frames given as objects, written as extended XYZ with their labels under the given keys
    (the run reads them back from there, as it would the user's own file)."""
    from ase import Atoms
    from ase.io import write

    frames = []
    for row in rows:
        atoms = Atoms(numbers=row["z"], positions=row["pos"])
        atoms.info[energy_key] = row["energy"]
        atoms.new_array(forces_key, row["forces"])
        frames.append(atoms)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, frames, format="extxyz")


def _move_export(export: Path, output: Path) -> None:
    """Move the exported model folder's files up into ``output`` (``config.json`` last: until
    it is in place, a half-moved folder fails verification)."""
    files = sorted(export.iterdir(), key=lambda p: p.name == "config.json")
    stale = output / "config.json"
    if stale.exists():
        stale.unlink()  # an earlier export's config must not vouch for new weights
    for path in files:
        os.replace(path, output / path.name)
    shutil.rmtree(export)


def _result(folder: Path) -> FinetuneResult:
    from zoo.hub.load import load

    model = load(folder)
    config = model.zoo_info["config"]
    metrics = {
        **config["metrics"],
        "n_frames": config["test_frames"],
        "split": config.get("metrics_split", "test"),
        "before_projection": config.get("metrics_before_projection"),
        "validation": config.get("validation"),
        "equivariance_error": config["equivariance_error"],
        "wall_time_s": config["training"].get("wall_time_s"),
        "cpu_hours": config["training"].get("cpu_hours"),
    }
    return FinetuneResult(model, metrics, folder)
