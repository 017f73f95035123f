"""A user's own labelled frames: energies and forces under the keys their file uses.

Structure files name their labels differently: ``energy``/``forces`` (what ASE writes), MACE's
``REF_energy``/``REF_forces``, ``dft_energy``... :func:`read_labelled` reads any file
``ase.io.read`` reads (through :func:`zoo.data.read_frames`) and takes each frame's energy (eV)
and forces (eV/Å) from the keys it is told, as MACE's ``energy_key``/``forces_key`` do. The
result has the rows of :func:`zoo.data.load_rmd17` (``z``, ``pos``, ``energy``, ``forces``), so
training treats a user's file and an rMD17 split alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from zoo.data.rmd17 import InvalidFrameError, read_frames, validate_frame

__all__ = ["frame_labels", "frames_to_rows", "read_labelled"]


def _stored_results(atoms: Atoms) -> dict[str, Any]:
    # Only stored results: calling get_potential_energy() could run a live calculator.
    return dict(getattr(atoms.calc, "results", None) or {})


def frame_labels(
    atoms: Atoms,
    energy_key: str = "energy",
    forces_key: str | None = "forces",
    *,
    where: str = "frame",
) -> tuple[float, np.ndarray | None]:
    """The energy (eV) and forces (eV/Å, ``[n_atoms, 3]``) stored under the given keys.

    ASE's extended XYZ reader moves the standard names (``energy``, ``forces``) into a
    single-point calculator and keeps other keys in ``atoms.info`` (per frame) and
    ``atoms.arrays`` (per atom): both places are looked at.

    Parameters
    ----------
    atoms
        The frame.
    energy_key, forces_key
        Where the frame keeps its energy and its forces (``forces_key=None``: the energy only,
        forces returned as ``None``).
    where
        How the error messages name the frame (``"train.xyz: frame 3"``).

    Raises
    ------
    InvalidFrameError
        A label that is missing (the message lists the keys the frame has), not finite, of the
        wrong shape, or a periodic frame (the models treat every frame as an isolated molecule).
    """
    if atoms.pbc.any():
        raise InvalidFrameError(
            f"{where}: periodic frame (pbc={atoms.pbc.tolist()}): the zoo's models treat every "
            "frame as an isolated molecule; give non-periodic frames"
        )
    results = _stored_results(atoms)
    energy = atoms.info.get(energy_key, results.get(energy_key))
    if energy is None:
        keys = sorted({*atoms.info, *(k for k, v in results.items() if np.size(v) == 1)})
        raise InvalidFrameError(
            f"{where}: no energy under key {energy_key!r} (its per-frame keys: {keys}); name the "
            "key that holds the energy in eV (--energy-key, energy_key=)"
        )
    try:
        energy = float(np.asarray(energy, dtype=float).reshape(()))
    except (TypeError, ValueError):
        raise InvalidFrameError(
            f"{where}: the energy under {energy_key!r} is not one number: {energy!r}"
        ) from None
    if not np.isfinite(energy):
        raise InvalidFrameError(f"{where}: non-finite energy {energy}")
    if forces_key is None:
        return energy, None
    forces = atoms.arrays.get(forces_key, results.get(forces_key))
    if forces is None:
        keys = sorted({*(k for k in atoms.arrays if k not in ("numbers", "positions")),
                       *(k for k, v in results.items() if np.shape(v) == (len(atoms), 3))})
        raise InvalidFrameError(
            f"{where}: no forces under key {forces_key!r} (its per-atom keys: {keys}); name the "
            "key that holds the forces in eV/Å (--forces-key, forces_key=)"
        )
    forces = np.asarray(forces, dtype=np.float64)
    if forces.shape != (len(atoms), 3):
        raise InvalidFrameError(
            f"{where}: the forces under {forces_key!r} have shape {forces.shape}, expected "
            f"({len(atoms)}, 3)"
        )
    if not np.isfinite(forces).all():
        raise InvalidFrameError(f"{where}: non-finite forces under {forces_key!r}")
    return energy, forces


def frames_to_rows(
    frames: Sequence[Atoms],
    energy_key: str = "energy",
    forces_key: str = "forces",
    *,
    source: str | os.PathLike[str] = "frames",
) -> list[dict[str, Any]]:
    """Rows ``{"z", "pos", "energy", "forces", "frame_index"}`` (float64) of labelled frames.

    Parameters
    ----------
    frames
        ``ase.Atoms`` frames with an energy and forces under ``energy_key`` and ``forces_key``.
    source
        How error messages name the frames (a file name).
    """
    rows = []
    for i, atoms in enumerate(frames):
        validate_frame(atoms, i, source=source, labels="ignore")
        energy, forces = frame_labels(atoms, energy_key, forces_key, where=f"{source}: frame {i}")
        rows.append({
            "z": atoms.numbers.astype(np.int64),
            "pos": np.asarray(atoms.positions, dtype=np.float64),
            "energy": energy,
            "forces": forces,
            "frame_index": i,
        })
    if not rows:
        raise InvalidFrameError(f"{source}: no frames")
    return rows


def read_labelled(
    path: str | os.PathLike[str],
    energy_key: str = "energy",
    forces_key: str = "forces",
    *,
    format: str | None = None,
) -> list[dict[str, Any]]:
    """Read every frame of a structure file with its energy and forces (see
    :func:`frames_to_rows`); ``format`` is an ``ase.io`` format name, guessed when ``None``."""
    path = Path(path)
    frames = read_frames(path, labels="ignore", format=format)
    return frames_to_rows(frames, energy_key, forces_key, source=path)
