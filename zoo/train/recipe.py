"""Training recipes: one YAML file per published model, with command-line overrides.

A recipe names the data and split, the architecture and preset, the relaxation (method and
hyperparameters from METHODS.md), loss weights, optimiser and schedule, epochs, seed and the
registry entry it produces. Missing keys take the shared defaults below, completed by the
dataset's training family (e.g. the Equiformer MD17 protocol for ``rmd17``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

RECIPES_DIR = Path(__file__).resolve().parents[2] / "training" / "recipes"

# Sections shared by every dataset. ``data`` and ``loss`` are filled by the dataset's training
# family (:mod:`zoo.train.family`), which may also override any other default.
DEFAULTS: dict[str, Any] = {
    "name": None,
    "seed": 0,
    "data": {"dataset": "rmd17"},
    "model": {"architecture": "equiformer", "preset": "small", "args": {}},
    "relaxation": {
        "method": "none",  # none | cr | ace | recm
        "form": "mlp",
        "hidden_factor": 4,
        "lambda_reg": 0.01,
        "controller": {},
    },
    "loss": {},
    "optimizer": {"name": "adamw", "lr": 5.0e-4, "weight_decay": 1.0e-6, "momentum": 0.9},
    "schedule": {"name": "cosine", "warmup_epochs": 10, "min_lr_ratio": 0.01, "step_size": 20,
                 "gamma": 0.7},
    "training": {
        "epochs": 100,
        "batch_size": 8,
        "eval_batch_size": 32,
        "augment_rotations": True,
        "devices": 1,
        "dtype": "float32",
        # "last": export the weights of the last epoch; "best": of the epoch with the best
        # validation metric of the projected model (the N-body papers' protocol).
        "keep": "last",
    },
    "export": {"license": "mit", "variant_of": None},
}


def recipe_defaults(dataset: str) -> dict[str, Any]:
    """The full defaults of a recipe on ``dataset``: shared sections plus the family's."""
    from zoo.train.family import get_family

    family = get_family(dataset)
    return _merge(_merge(DEFAULTS, family.defaults), {"data": {"dataset": dataset}})


_METHODS = ("none", "cr", "ace", "recm")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "args":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check a merged recipe; raise ``ValueError`` naming the bad key."""
    defaults_all = recipe_defaults(recipe.get("data", {}).get("dataset", "rmd17"))
    unknown = set(recipe) - set(defaults_all)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(defaults_all)}")
    for section, defaults in defaults_all.items():
        if not isinstance(defaults, dict) or section not in recipe:
            continue
        if not isinstance(recipe[section], dict):
            raise ValueError(f"recipe section {section!r} must be a mapping: {recipe[section]!r}")
        # A typo such as `training: {epoch: 3}` must not silently train with the default.
        unknown = set(recipe[section]) - set(defaults)
        if unknown:
            raise ValueError(
                f"unknown recipe keys {sorted(f'{section}.{k}' for k in unknown)}; "
                f"known in {section}: {sorted(defaults)}"
            )
    method = recipe["relaxation"]["method"]
    if method not in _METHODS:
        raise ValueError(f"relaxation.method must be one of {_METHODS}, got {method!r}")
    if recipe["training"]["keep"] not in ("last", "best"):
        keep = recipe["training"]["keep"]
        raise ValueError(f"training.keep must be 'last' or 'best', got {keep!r}")
    if int(recipe["training"]["epochs"]) < 1:
        raise ValueError("training.epochs must be at least 1")
    return recipe


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


def load_recipe(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    """Read a recipe (file or model name), fill defaults, apply overrides, validate.

    ``overrides`` uses the recipe's nesting, e.g. ``{"training": {"epochs": 3}}``.
    """
    path = resolve_recipe_path(name_or_path)
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    dataset = ((overrides or {}).get("data") or {}).get("dataset") or (
        (raw.get("data") or {}).get("dataset", "rmd17")
    )
    recipe = _merge(recipe_defaults(dataset), raw)
    if overrides:
        recipe = _merge(recipe, overrides)
    if not recipe["name"]:
        recipe["name"] = path.stem
    return validate(recipe)
