"""Reference data for the zoo: revised MD17 frames, splits and conversions to PyG graphs.

The data lives outside the project, under :func:`data_root` (``<project root>/../shared/data``
or ``$ZOO_DATA_DIR``). Typical use::

    from zoo.data import load_rmd17, to_data_list

    train = load_rmd17("aspirin", "train")          # datasets.Dataset, 950 frames
    graphs = to_data_list(train)                    # list of torch_geometric Data

    points, labels = modelnet40_tensors("val")     # ModelNet40, 300 points per shape
"""

from __future__ import annotations

import importlib
from typing import Any

from zoo.data.download import (
    RMD17_MD5,
    RMD17_SHA256,
    RMD17_SIZE,
    RMD17_URL,
    DownloadError,
    download_rmd17,
)
from zoo.data.paths import data_root, default_data_root, require_data
from zoo.data.rmd17 import (
    FEATURES,
    MOLECULES,
    SPLITS,
    InvalidFrameError,
    atoms_to_data,
    frames_to_batch,
    load_rmd17,
    read_frames,
    row_to_data,
    to_data_list,
    validate_frame,
)

__all__ = [
    "FEATURES",
    "MOLECULES",
    "RMD17_MD5",
    "RMD17_SHA256",
    "RMD17_SIZE",
    "RMD17_URL",
    "SPLITS",
    "DownloadError",
    "InvalidFrameError",
    "atoms_to_data",
    "data_root",
    "default_data_root",
    "download_rmd17",
    "frames_to_batch",
    "load_rmd17",
    "read_frames",
    "require_data",
    "row_to_data",
    "to_data_list",
    "validate_frame",
]

# Lazy, so that `python -m zoo.data.nbody` (or smoke) does not find its module already imported
# (runpy warns about that) and plain rMD17 users do not pay for them.
_LAZY_MODULES = {
    "zoo.data.modelnet40": (
        "MODELNET40_CLASSES", "MODELNET40_MD5", "MODELNET40_SPLITS", "MODELNET40_URL",
        "download_modelnet40", "load_modelnet40", "modelnet40_classes", "modelnet40_tensors",
        "random_rotations", "rotate_points", "sample_points",
    ),
    "zoo.data.nbody": (
        "NBODY_SHA256", "NBODY_SPLITS", "NBODY_SPLIT_SEEDS", "generate_nbody", "load_nbody",
        "nbody_to_data_list", "simulate_charged",
    ),
    "zoo.data.smoke": ("SMOKE_SPLITS", "generate_smoke", "load_smoke", "simulate_smoke"),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}
__all__ += sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
