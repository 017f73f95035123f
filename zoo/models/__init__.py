"""The zoo's architectures: one file per family, each registering its presets on import.

The base classes are imported here; the architecture files are not. The registry
(:mod:`zoo._registry`) imports an architecture's file by name the first time that architecture is
asked for, so loading one model does not import every other family (and their libraries).
``zoo.models.egnn`` and the like still work as attributes: they are imported on first access.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from zoo.models.base import GroupElement, RelaxationSite, SymmetryGroup, ZooModel

__all__ = ["GroupElement", "RelaxationSite", "SymmetryGroup", "ZooModel"]


def __getattr__(name: str) -> ModuleType:
    # A submodule not imported yet (``zoo.models.egnn`` after a bare ``import zoo.models``).
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
