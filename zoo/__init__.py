"""zoo: pretrained equivariant networks, trained relaxed and projected back to exact equivariance.

Quick start::

    import zoo
    model = zoo.load("equiformer-md17-aspirin")          # projected, exactly equivariant
    out = zoo.predict(model, frames)                     # frames: list of ase.Atoms

The public API is re-exported here from small private modules; attributes are imported lazily so
that ``import zoo`` stays fast and light (no Lightning, datasets or Hub client until used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module defining it. Names equal to their module ("relax", "testing", "data")
# are the modules themselves; every other name is an attribute of its module.
_MODULES = {"relax", "testing", "data"}
_EXPORTS = {
    "create_model": "zoo._registry",
    "list_architectures": "zoo._registry",
    "list_presets": "zoo._registry",
    "register_architecture": "zoo._registry",
    "load": "zoo.hub.load",
    "save_pretrained": "zoo.hub.checkpoint",
    "publish": "zoo.hub.publish",
    "list_models": "zoo.hub.pretrained",
    "info": "zoo.hub.pretrained",
    "predict": "zoo.inference",
    "finetune": "zoo.finetuning",
    "refit_reference_energies": "zoo.tasks.rmd17.references",
    "relax": "zoo.relax",
    "testing": "zoo.testing",
    "data": "zoo.data",
    "ZooError": "zoo.errors",
}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS) + ["__version__"]
