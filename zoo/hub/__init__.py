"""Checkpoints, the registry of published models, and the Hugging Face Hub.

- :mod:`zoo.hub.pretrained`: the registry (``list_models``, ``info``, ``register_pretrained``),
  read from the bundled ``model_cards/index.json``;
- :mod:`zoo.hub.index`: writing that index (``record_model``, used by ``zoo publish`` and the
  training scripts);
- :mod:`zoo.hub.checkpoint`: the checkpoint folder (``save_pretrained``, reading, verifying);
- :mod:`zoo.hub.download`: finding a folder (local, bundled, cache, Hub) and ``download``;
- :mod:`zoo.hub.load`: ``load`` (public as ``zoo.load``);
- :mod:`zoo.hub.publish`: ``publish`` (public as ``zoo.publish``);
- :mod:`zoo.hub.errors`: the errors, all subclasses of ``ZooError``.

Attributes are imported lazily, like ``zoo`` itself, so that importing the registry does not
import torch or huggingface_hub. ``load``, ``download`` and ``publish`` are not re-exported here:
they share their names with the submodules that define them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PretrainedEntry": "zoo.hub.pretrained",
    "register_pretrained": "zoo.hub.pretrained",
    "unregister_pretrained": "zoo.hub.pretrained",
    "registered": "zoo.hub.pretrained",
    "get_pretrained": "zoo.hub.pretrained",
    "list_models": "zoo.hub.pretrained",
    "info": "zoo.hub.pretrained",
    "read_index": "zoo.hub.pretrained",
    "index_path": "zoo.hub.pretrained",
    "save_pretrained": "zoo.hub.checkpoint",
    "read_checkpoint": "zoo.hub.checkpoint",
    "verify_folder": "zoo.hub.checkpoint",
    "ZooError": "zoo.hub.errors",
    "UnknownModelError": "zoo.hub.errors",
    "InvalidNameError": "zoo.hub.errors",
    "CheckpointError": "zoo.hub.errors",
    "CorruptFileError": "zoo.hub.errors",
    "IncompatibleVersionError": "zoo.hub.errors",
    "OfflineError": "zoo.hub.errors",
    "DownloadError": "zoo.hub.errors",
}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'zoo.hub' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
