"""Shared test set-up."""

from __future__ import annotations

import pytest
import torch
from ase import Atoms

from zoo.data import data_root, read_frames

ASPIRIN = ("rmd17", "aspirin", "test.xyz")


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread and no TorchScript re-optimisation, restored after each module.

    The tensors are tiny and CI's CPU is shared: extra threads only add synchronisation (about
    10x slower on a loaded 2-core machine), and e3nn's scripted helpers would recompile fused
    kernels for every new input shape. Neither changes a result; tests that compare runs across
    processes also need the children's thread count (OMP_NUM_THREADS=1) here.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.jit.optimized_execution(False):
            yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def aspirin() -> list[Atoms]:
    """The first 8 real rMD17 aspirin test frames (skips where the shared data is missing)."""
    path = data_root().joinpath(*ASPIRIN)
    if not path.is_file():
        pytest.skip(
            f"real rMD17 aspirin frames not found at {path}; point $ZOO_DATA_DIR at the shared "
            "data folder (the one holding rmd17/) to run this test"
        )
    return read_frames(path)[:8]
