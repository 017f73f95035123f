"""Training: recipes, the Lightning run, export with a card, fine-tuning from a published model.

::

    from zoo.train import export_checkpoint, load_recipe, train
    run = train("equiformer-md17-aspirin.cr", "runs/aspirin-cr", epochs=3)   # run folder
    run = train("smoke.yaml", "runs/ft", init_from="equiformer-md17-aspirin")  # fine-tune
    folder = export_checkpoint("runs/aspirin-cr")   # a model folder from a run's checkpoint

:func:`zoo.finetune` fine-tunes on the user's own frames. Names are imported on first use, so
``import zoo.train`` does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "zoo.train.run",
    "export_checkpoint": "zoo.train.snapshot",
    "ScheduleWarning": "zoo.train.run",
    "load_recipe": "zoo.train.recipe",
    "recipe_defaults": "zoo.train.recipe",
    "validate": "zoo.train.recipe",
    "Recipe": "zoo.train.recipe_schema",
    "RecipeError": "zoo.train.recipe_schema",
    "refit_reference_energies": "zoo.tasks.rmd17.references",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
