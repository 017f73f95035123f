"""Training recipes: one YAML file per published model, with command-line overrides.

A recipe names the data and split, the architecture and preset, the relaxation (method and
hyperparameters from METHODS.md), loss weights, optimiser and schedule, epochs, seed and the
registry entry it produces. Missing keys take the defaults below (the Equiformer MD17 protocol).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

RECIPES_DIR = Path(__file__).resolve().parents[2] / "training" / "recipes"

DEFAULTS: dict[str, Any] = {
    "name": None,
    "seed": 0,
    "data": {
        "dataset": "rmd17",
        "molecule": "aspirin",
        "n_train": 950,
        "n_val": 50,
        "split_seed": 0,
        "max_test_frames": None,
        "root": None,
    },
    "model": {"architecture": "equiformer", "preset": "small", "args": {}},
    "relaxation": {
        "method": "none",  # none | cr | ace | recm
        "form": "mlp",
        "hidden_factor": 4,
        "lambda_reg": 0.01,
        "controller": {},
    },
    "loss": {"kind": "l1", "energy_weight": 1.0, "forces_weight": 80.0},
    "optimizer": {"name": "adamw", "lr": 5.0e-4, "weight_decay": 1.0e-6},
    "schedule": {"name": "cosine", "warmup_epochs": 10, "min_lr_ratio": 0.01},
    "training": {
        "epochs": 100,
        "batch_size": 8,
        "eval_batch_size": 32,
        "augment_rotations": True,
        "devices": 1,
        "dtype": "float32",
    },
    "export": {"license": "mit", "variant_of": None},
}

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
    unknown = set(recipe) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    for section, defaults in DEFAULTS.items():
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
    if int(recipe["training"]["epochs"]) < 1:
        raise ValueError("training.epochs must be at least 1")
    if recipe["data"]["dataset"] != "rmd17":
        raise ValueError(f"data.dataset {recipe['data']['dataset']!r} is not supported yet")
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
    recipe = _merge(DEFAULTS, raw)
    if overrides:
        recipe = _merge(recipe, overrides)
    if not recipe["name"]:
        recipe["name"] = path.stem
    return validate(recipe)
