"""Reference data for the zoo: revised MD17 frames, splits and conversions to PyG graphs.

The data lives outside the project, under :func:`data_root` (``<project root>/../shared/data``
or ``$ZOO_DATA_DIR``). Typical use::

    from zoo.data import load_rmd17, to_data_list

    train = load_rmd17("aspirin", "train")          # datasets.Dataset, 950 frames
    graphs = to_data_list(train)                    # list of torch_geometric Data
"""

from __future__ import annotations

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
