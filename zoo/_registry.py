"""Architecture registry, timm-style.

Each architecture file decorates its model class with :func:`register_architecture`, naming
its size presets. :func:`create_model` builds an untrained model from a name, a preset and
keyword overrides; the constructor arguments are captured by :class:`zoo.models.base.ZooModel`
so that ``create_model(**model.config())`` rebuilds the same architecture.

This module imports nothing from zoo at module level (the architecture files import it to
register themselves): the zoo's own architectures are imported by name, from
:data:`BUILTIN_ARCHITECTURES`, the first time one of them is asked for.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ArchitectureEntry:
    """What the registry knows about one architecture."""

    name: str
    cls: type[nn.Module]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_preset: str | None = None


_ARCHITECTURES: dict[str, ArchitectureEntry] = {}

#: The zoo's own architectures: name -> the module that defines and registers it. A test checks
#: that this table and the registrations agree.
BUILTIN_ARCHITECTURES: dict[str, str] = {
    "egnn": "zoo.models.egnn",
    "equiformer": "zoo.models.equiformer",
    "segnn": "zoo.models.segnn",
    "smoke-conv": "zoo.models.smoke_cnn",
    "smoke-equiv": "zoo.models.smoke_cnn",
    "smoke-rsteer": "zoo.models.smoke_cnn",
    "vn-dgcnn": "zoo.models.vn_dgcnn",
    "vn-pointnet": "zoo.models.vn_pointnet",
}


def register_architecture(
    name: str, presets: dict[str, dict[str, Any]], default_preset: str | None = None
):
    """Class decorator registering an architecture and its size presets.

    Parameters
    ----------
    name
        Registry name, e.g. ``"equiformer"``.
    presets
        Preset name to constructor keyword arguments. Every architecture has ``"tiny"``.
    default_preset
        Preset used when :func:`create_model` gets none.
    """
    if "tiny" not in presets:
        raise ValueError(f"architecture {name!r} must register a 'tiny' preset for tests")

    def decorator(cls):
        if name in _ARCHITECTURES and _ARCHITECTURES[name].cls is not cls:
            raise ValueError(f"architecture {name!r} is already registered")
        cls.architecture = name
        _ARCHITECTURES[name] = ArchitectureEntry(name, cls, dict(presets), default_preset)
        return cls

    return decorator


def _ensure_loaded(name: str | None = None) -> None:
    """Import the module of builtin architecture ``name`` (``None``: of every builtin one);
    importing an architecture file runs its registration."""
    modules = BUILTIN_ARCHITECTURES.values() if name is None else [BUILTIN_ARCHITECTURES[name]]
    for module in dict.fromkeys(modules):
        importlib.import_module(module)


def list_architectures(pattern: str = "*") -> list[str]:
    """Names of the registered architectures matching a shell-style ``pattern``."""
    _ensure_loaded()
    return sorted(n for n in _ARCHITECTURES if fnmatch.fnmatch(n, pattern))


def get_architecture(name: str) -> ArchitectureEntry:
    """The registry entry of ``name``; an unknown name suggests the closest ones."""
    if name not in _ARCHITECTURES:
        _ensure_loaded(name if name in BUILTIN_ARCHITECTURES else None)
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        from zoo.errors import UnknownArchitectureError

        close = difflib.get_close_matches(name, _ARCHITECTURES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}.{hint} Known: {', '.join(sorted(_ARCHITECTURES))}"
        ) from None


def list_presets(architecture: str) -> list[str]:
    """Preset names of an architecture."""
    return sorted(get_architecture(architecture).presets)


def create_model(
    architecture: str,
    preset: str | None = None,
    model_args: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build an untrained model.

    Parameters
    ----------
    architecture
        Registered architecture name (see :func:`list_architectures`).
    preset
        Size preset (see :func:`list_presets`); defaults to the architecture's default preset.
    model_args
        Full constructor arguments, as stored in a ``config.json`` (then ``preset`` is ignored).
    **kwargs
        Constructor arguments overriding the preset's.

    Returns
    -------
    torch.nn.Module
        The model, in float32, on the CPU, in training mode.
    """
    entry = get_architecture(architecture)
    if model_args is not None:
        args = dict(model_args)
    else:
        preset = preset or entry.default_preset or "tiny"
        if preset not in entry.presets:
            from zoo.errors import UnknownArchitectureError

            raise UnknownArchitectureError(
                f"architecture {architecture!r} has no preset {preset!r}; "
                f"choose one of {sorted(entry.presets)}"
            )
        args = dict(entry.presets[preset])
    args.update(kwargs)
    return entry.cls(**args)
