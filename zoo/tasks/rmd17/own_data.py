"""Energy/force training on the user's own labelled frames (``data.train_file``): the splits
and the record of the files (path and sha256) that goes into the config and card."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zoo.tasks.rmd17.task import RMD17Data

DEFAULT_VAL_FRACTION = 0.1


def load_file_splits(data: RMD17Data) -> dict[str, list[dict[str, Any]]]:
    """Train, validation and test rows of a ``data`` section with a ``train_file``.

    Validation: ``val_file``, or a seeded ``val_fraction`` (default 0.1, at least one frame) of
    the train file, the rest training. Test: ``test_file``, or else the validation frames.
    """
    from zoo.data.labelled import read_labelled
    from zoo.data.rmd17 import InvalidFrameError

    keys = (data.energy_key, data.forces_key)
    rows = read_labelled(data.train_file, *keys)
    if data.val_file:
        train, val = rows, read_labelled(data.val_file, *keys)
    else:
        fraction = data.val_fraction or DEFAULT_VAL_FRACTION
        n_val = max(1, round(fraction * len(rows)))
        if len(rows) - n_val < 1:
            raise InvalidFrameError(
                f"{data.train_file} holds {len(rows)} frame(s): too few to hold out {n_val} for "
                "validation and train on the rest; give more frames or a validation file"
            )
        perm = np.random.default_rng(data.split_seed).permutation(len(rows))
        val = [rows[i] for i in np.sort(perm[:n_val])]
        train = [rows[i] for i in np.sort(perm[n_val:])]
    test = read_labelled(data.test_file, *keys) if data.test_file else val
    if data.max_test_frames:
        test = test[: data.max_test_frames]
    return {"train": train, "val": val, "test": test}


def describe_data_files(data: RMD17Data) -> dict[str, dict[str, Any]]:
    """``{role: {"path", "sha256"}}`` of the files of a ``train_file`` data section."""
    from zoo.hub.checkpoint import sha256_file

    files = {}
    for role in ("train", "val", "test"):
        path = getattr(data, f"{role}_file")
        if path:
            files[role] = {"path": str(path), "sha256": sha256_file(path)}
    return files
