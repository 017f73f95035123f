"""Reference data for the zoo: revised MD17 frames, splits and conversions to PyG graphs.

The data lives outside the package, under :func:`data_root` (``$ZOO_DATA_DIR``, else
``<project root>/../shared/data`` in a checkout, see :mod:`zoo.data.paths`). Typical use::

    from zoo.data import load_rmd17, to_data_list

    train = load_rmd17("aspirin", "train")          # datasets.Dataset, 950 frames
    graphs = to_data_list(train)                    # list of torch_geometric Data

    points, labels = modelnet40_tensors("val")     # ModelNet40, 300 points per shape
"""

from __future__ import annotations

import importlib
from typing import Any

# Every name is imported on first use: ``import zoo.data.cache`` (used by the Hub code) stays
# light, `python -m zoo.data.nbody` (or smoke) does not find its module already imported (runpy
# warns about that), and plain rMD17 users do not pay for the other datasets.
_LAZY_MODULES = {
    "zoo.data.rmd17_download": (
        "RMD17_MD5", "RMD17_SHA256", "RMD17_SIZE", "RMD17_URL", "download_rmd17",
    ),
    "zoo.data.fetch": ("DownloadError",),
    "zoo.data.paths": ("data_root", "default_data_root", "require_data"),
    "zoo.data.rmd17": (
        "FEATURES", "MOLECULES", "SPLITS", "InvalidFrameError", "atoms_to_data",
        "frames_to_batch", "load_rmd17", "read_frames", "row_to_data", "to_data_list",
        "validate_frame",
    ),
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
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
