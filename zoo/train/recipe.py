"""Training recipes: one YAML file per published model, with command-line overrides.

A recipe names the data and split, the architecture and preset, the relaxation (method and
hyperparameters from METHODS.md), loss weights, optimiser and schedule, epochs, seed and the
registry entry it produces. Missing keys take the shared defaults below, completed by the
dataset's task (e.g. the Equiformer MD17 protocol for ``rmd17``, :mod:`zoo.tasks`).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from zoo.resources import recipes_dir
from zoo.tasks import get_task, list_datasets
from zoo.train.recipe_schema import (
    ExportSection,
    OptimizerSection,
    Recipe,
    RecipeError,
    RelaxationSection,
    ScheduleSection,
    TrainingSection,
)

RECIPES_DIR = recipes_dir()

# Sections whose defaults are shared by every dataset (their fields and defaults are the typed
# sections of :mod:`zoo.train.recipe_schema`); ``data`` and ``loss`` come from the dataset's
# task, which may also override any other default (:attr:`zoo.tasks.base.Task.defaults`).
_SHARED_SECTIONS = {
    "relaxation": RelaxationSection, "optimizer": OptimizerSection,
    "schedule": ScheduleSection, "training": TrainingSection, "export": ExportSection,
}


def recipe_defaults(dataset: str) -> dict[str, Any]:
    """The full defaults of a recipe on ``dataset``: shared sections plus the task's."""
    task = get_task(dataset)
    defaults: dict[str, Any] = {"name": None, "seed": 0}
    defaults.update({k: model().model_dump() for k, model in _SHARED_SECTIONS.items()})
    defaults["data"] = task.data_model().model_dump()
    defaults["loss"] = task.loss_model().model_dump()
    return _merge(_merge(defaults, task.defaults), {"data": {"dataset": dataset}})


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if (isinstance(value, dict) and isinstance(out.get(key), dict)
                and key != "args"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(recipe: dict[str, Any] | Recipe) -> Recipe:
    """A typed :class:`Recipe` from a complete mapping; :class:`RecipeError` names bad keys."""
    if isinstance(recipe, Recipe):
        recipe = recipe.to_dict()
    if not isinstance(recipe, dict):
        raise RecipeError(f"a recipe must be a mapping of sections, got {type(recipe).__name__}")
    data = recipe.get("data")
    dataset = data.get("dataset", "rmd17") if isinstance(data, dict) else "rmd17"
    task = _task(dataset)
    return Recipe.from_dict(recipe, task.data_model, task.loss_model)


def _task(dataset: Any):
    if not isinstance(dataset, str) or dataset not in list_datasets():
        raise RecipeError(f"data.dataset: must be one of {list_datasets()} (got {dataset!r})")
    return get_task(dataset)


def differing_keys(a: dict[str, Any] | Recipe, b: dict[str, Any] | Recipe,
                   prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two recipes (for refusing a bad ``--resume``)."""
    a = a.to_dict() if isinstance(a, Recipe) else a
    b = b.to_dict() if isinstance(b, Recipe) else b
    keys = []
    for key in sorted(set(a) | set(b), key=str):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict) and key not in ("args",):
            keys += differing_keys(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(f"{prefix}{key}")
    return keys


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file from a path, or a published model's name (``training/recipes/NAME.yaml``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"recipe file {path} does not exist")
        return path
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(name_or_path)):
        raise ValueError(f"{name_or_path!r} is neither a .yaml file nor a model name")
    candidate = RECIPES_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no recipe named {name_or_path!r}; known recipes: {known}")
    return candidate


def load_recipe(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe (file or model name), fill defaults, apply overrides, validate.

    Parameters
    ----------
    name_or_path
        A ``.yaml`` file, or a published model's name (``training/recipes/NAME.yaml``).
    overrides
        Values over the file's, nested like the recipe, e.g. ``{"training": {"epochs": 3}}``;
        strings are coerced to the declared types (``"1e-3"`` -> 0.001).

    Returns
    -------
    Recipe
        The typed recipe.

    Raises
    ------
    RecipeError
        Invalid YAML, or a value of the wrong type, out of range or under an unknown key
        (every problem named by its dotted key).
    """
    path = resolve_recipe_path(name_or_path)
    try:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise RecipeError(
            f"recipe {path} is not valid YAML{line}: {getattr(error, 'problem', error)}; "
            "fix the file (sections are mappings such as `training: {epochs: 10}`)"
        ) from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {path} must be a mapping of sections, not {type(raw).__name__}")
    for section, value in raw.items():
        if isinstance(value, dict) or section not in Recipe.model_fields or section in (
                "name", "seed"):
            continue  # unknown keys are named by the validation below
        raise RecipeError(f"recipe {path}: section {section!r} must be a mapping, got {value!r}")
    dataset = ((overrides or {}).get("data") or {}).get("dataset") or (
        (raw.get("data") or {}).get("dataset", "rmd17")
    )
    _task(dataset)
    recipe = _merge(recipe_defaults(dataset), raw)
    if overrides:
        recipe = _merge(recipe, overrides)
    if not recipe["name"]:
        recipe["name"] = path.stem
    return validate(recipe)
