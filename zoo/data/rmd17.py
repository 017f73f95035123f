"""Revised MD17 (rMD17): reading, validating, splitting and converting frames.

rMD17 (Christensen & von Lilienfeld, Mach. Learn.: Sci. Technol. 1, 045018, 2020) recomputes
100k frames of each MD17 trajectory with tight convergence. Frames are stored as extended XYZ
with the energy (eV) in the comment line and forces (eV/Å) as per-atom columns.

Layout under the data root (see :mod:`zoo.data.paths`)::

    rmd17/<molecule>/train.xyz   # curated subsets shipped with the project's shared data
    rmd17/<molecule>/test.xyz
    rmd17/<molecule>/all.xyz     # the full trajectory, written by zoo.data.download_rmd17
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import ase.io
import datasets
import numpy as np
import torch
from ase import Atoms
from torch_geometric.data import Batch, Data

from zoo.data.paths import data_root, require_data
from zoo.errors import ZooError

__all__ = [
    "FEATURES",
    "InvalidFrameError",
    "LabelPolicy",
    "MOLECULES",
    "MOLECULE_FORMULAS",
    "SPLITS",
    "atoms_to_data",
    "frames_to_batch",
    "load_rmd17",
    "read_frames",
    "row_to_data",
    "to_data_list",
    "validate_frame",
]

MOLECULES: tuple[str, ...] = (
    "aspirin",
    "azobenzene",
    "benzene",
    "ethanol",
    "malonaldehyde",
    "naphthalene",
    "paracetamol",
    "salicylic",
    "toluene",
    "uracil",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Chemical formula of every rMD17 molecule (each trajectory is one molecule).
MOLECULE_FORMULAS: dict[str, str] = {
    "aspirin": "C9H8O4",
    "azobenzene": "C12H10N2",
    "benzene": "C6H6",
    "ethanol": "C2H6O",
    "malonaldehyde": "C3H4O2",
    "naphthalene": "C10H8",
    "paracetamol": "C8H9NO2",
    "salicylic": "C7H6O3",
    "toluene": "C7H8",
    "uracil": "C4H4N2O2",
}

_MAX_Z = 118

LabelPolicy = Literal["ignore", "check", "require"]
_LABEL_POLICIES = ("ignore", "check", "require")

# ``datasets.List`` replaced ``Sequence`` for lists in datasets 4; keep older releases working.
_List: Any = getattr(datasets, "List", None) or datasets.Sequence
_VEC3 = _List(datasets.Value("float64"), length=3)

FEATURES = datasets.Features(
    {
        "z": _List(datasets.Value("int64")),
        "pos": _List(_VEC3),
        "energy": datasets.Value("float64"),
        "forces": _List(_VEC3),
        "frame_index": datasets.Value("int64"),
    }
)
"""Schema of the datasets returned by :func:`load_rmd17` (float64, eV and eV/Å)."""


class InvalidFrameError(ZooError, ValueError):
    """A frame (or a whole file) that cannot be used: bad elements, non-finite values, etc."""


def _where(source: str | os.PathLike[str] | None, index: int | None) -> str:
    parts = [str(source)] if source is not None else []
    if index is not None:
        parts.append(f"frame {index}")
    return ": ".join(parts) if parts else "frame"


def _labels(atoms: Atoms) -> tuple[Any, Any]:
    """Return the stored (energy, forces) of a frame, each ``None`` where absent.

    Only stored results are read: calling ``get_potential_energy`` on a frame with a live
    calculator would run it, which is never what a data loader should do.
    """
    results = getattr(atoms.calc, "results", None) or {}
    energy = results.get("energy")
    forces = results.get("forces")
    # Some writers (and ase's extxyz with non-standard keys) keep labels in info/arrays instead.
    if energy is None:
        energy = atoms.info.get("energy")
    if forces is None:
        forces = atoms.arrays.get("forces")
    return energy, forces


def validate_frame(
    atoms: Atoms,
    index: int = 0,
    *,
    source: str | os.PathLike[str] | None = None,
    labels: LabelPolicy = "check",
) -> None:
    """Check that a frame is usable, raising :class:`InvalidFrameError` otherwise.

    Checks: at least one atom; atomic numbers in 1..118; finite positions; and, depending on
    ``labels``, a finite scalar energy and finite forces with one row per atom.

    Parameters
    ----------
    atoms
        The frame.
    index
        Index of the frame in its file or list, used in the error message.
    source
        File name (or other description) used in the error message.
    labels
        ``"check"``: check energy and forces where present; ``"require"``: they must be
        present too (training data); ``"ignore"``: do not look at them (prediction input,
        where stale labels do not matter).

    Raises
    ------
    InvalidFrameError
        With a message naming the source, the frame index and the problem.
    """
    if labels not in _LABEL_POLICIES:
        raise ValueError(f"labels must be one of {_LABEL_POLICIES}, got {labels!r}")

    def fail(problem: str) -> InvalidFrameError:
        return InvalidFrameError(f"{_where(source, index)}: {problem}")

    if not isinstance(atoms, Atoms):
        raise fail(f"expected an ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    if n == 0:
        raise fail("frame has no atoms")
    numbers = atoms.numbers
    bad = np.flatnonzero((numbers < 1) | (numbers > _MAX_Z))
    if bad.size:
        i = int(bad[0])
        raise fail(
            f"unknown element: atomic number {int(numbers[i])} at atom {i} (expected 1..{_MAX_Z})"
        )
    positions = atoms.positions
    if not np.isfinite(positions).all():
        i = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
        raise fail(f"non-finite coordinates at atom {i}: {positions[i].tolist()}")

    if labels == "ignore":
        return
    energy, forces = _labels(atoms)
    if energy is None and labels == "require":
        raise fail("missing energy")
    if energy is not None:
        try:
            e = np.asarray(energy, dtype=float)
        except (TypeError, ValueError):
            raise fail(f"energy is not a number: {energy!r}") from None
        if e.size != 1:
            raise fail(f"energy must be a scalar, got shape {e.shape}")
        if not np.isfinite(e).all():
            raise fail(f"non-finite energy: {float(e.reshape(()))}")
    if forces is None and labels == "require":
        raise fail("missing forces")
    if forces is not None:
        try:
            f = np.asarray(forces, dtype=float)
        except (TypeError, ValueError):
            raise fail("forces are not numeric") from None
        if f.shape != (n, 3):
            raise fail(f"forces have shape {f.shape}, expected ({n}, 3) to match the positions")
        if not np.isfinite(f).all():
            i = int(np.flatnonzero(~np.isfinite(f).all(axis=1))[0])
            raise fail(f"non-finite forces at atom {i}: {f[i].tolist()}")


def _parse_problem(exc: Exception) -> str:
    # ase reports an unknown symbol as a bare KeyError('Xx'); say what it means.
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        key = exc.args[0]
        if key.isalpha() and len(key) <= 3:
            return f"unknown element symbol {key!r}"
    return f"could not parse extended XYZ ({type(exc).__name__}: {exc})"


def _guess_format(path: Path) -> str:
    from ase.io.formats import UnknownFileTypeError, filetype, ioformats

    if path.suffix.lower() in (".xyz", ".extxyz"):
        return "extxyz"  # also reads plain XYZ; and an empty file is "no frames", not unknown
    try:
        fmt = filetype(str(path), read=True)
    except (UnknownFileTypeError, OSError, ValueError):
        fmt = None
    if fmt is None or fmt not in ioformats or not ioformats[fmt].can_read:
        raise InvalidFrameError(
            f"{path}: ase cannot tell which format this is from its name or content; name it "
            "after its format (.xyz / .extxyz, .pdb, .traj, .cif, .sdf, ...) or pass format="
        )
    return fmt


def read_frames(
    path: str | os.PathLike[str],
    *,
    labels: LabelPolicy = "check",
    format: str | None = None,
) -> list[Atoms]:
    """Read every frame of a structure file and validate each with :func:`validate_frame`.

    Parameters
    ----------
    path
        Any file ``ase.io.read`` reads: extended XYZ (``.xyz``, ``.extxyz``), ``.pdb``, ASE
        trajectories (``.traj``: ASE's own JSON-based format; the old pickled trajectories are
        refused, never unpickled), ``.cif``, ``.sdf`` and the other formats of ``ase.io``.
    labels
        How to validate energies and forces, see :func:`validate_frame`.
    format
        An ``ase.io`` format name; ``None`` guesses it from the file name and content.

    Returns
    -------
    list of ase.Atoms
        The frames, in file order.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    InvalidFrameError
        When the file holds no frame, cannot be parsed, or a frame fails validation; the
        message names the file and the frame index.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    fmt = format or _guess_format(path)
    frames: list[Atoms] = []
    if fmt != "extxyz":
        try:
            read = ase.io.read(path, index=":", format=fmt)
        except Exception as exc:  # each ase reader raises its own types
            reason = str(exc).splitlines()[0] if str(exc) else ""
            raise InvalidFrameError(
                f"{path}: could not read it as {fmt} ({type(exc).__name__}: {reason})"
            ) from exc
        for atoms in [read] if isinstance(read, Atoms) else read:
            validate_frame(atoms, len(frames), source=path, labels=labels)
            frames.append(atoms)
    else:
        # iread (not read) so that a parse error can be pinned to the frame where it happened.
        reader = ase.io.iread(path, index=":", format="extxyz")
        while True:
            try:
                atoms = next(reader)
            except StopIteration:
                break
            except Exception as exc:  # ase raises many types (KeyError, ValueError, XYZError...)
                problem = _parse_problem(exc)
                raise InvalidFrameError(f"{path}: frame {len(frames)}: {problem}") from exc
            validate_frame(atoms, len(frames), source=path, labels=labels)
            frames.append(atoms)
    if not frames:
        raise InvalidFrameError(f"{path}: file holds no frames")
    return frames


def _molecule_dir(molecule: str, root: str | os.PathLike[str] | None) -> Path:
    if molecule not in MOLECULES:
        raise ValueError(f"unknown rMD17 molecule {molecule!r}; expected one of {MOLECULES}")
    return (Path(root) if root is not None else data_root()) / "rmd17" / molecule


def _require(path: Path, root: str | os.PathLike[str] | None) -> Path:
    if root is None:
        return require_data(path.relative_to(data_root()))
    if not path.exists():
        raise FileNotFoundError(
            f"rMD17 file not found at {path} (root={root!s}); download the full archive with "
            f"zoo.data.download_rmd17(root={str(root)!r})"
        )
    return path


def _frames_to_columns(frames: Sequence[Atoms], indices: Iterable[int]) -> dict[str, list]:
    columns: dict[str, list] = {name: [] for name in FEATURES}
    for i in indices:
        atoms = frames[i]
        energy, forces = _labels(atoms)
        columns["z"].append(atoms.numbers.astype(np.int64).tolist())
        columns["pos"].append(np.asarray(atoms.positions, dtype=np.float64).tolist())
        columns["energy"].append(float(np.asarray(energy, dtype=np.float64).reshape(())))
        columns["forces"].append(np.asarray(forces, dtype=np.float64).tolist())
        columns["frame_index"].append(int(i))
    return columns


def load_rmd17(
    molecule: str,
    split: str,
    *,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    n_train: int = 950,
    n_val: int = 50,
    max_frames: int | None = None,
) -> datasets.Dataset:
    """Load one split of one rMD17 molecule as a Hugging Face dataset.

    With ``rmd17/<molecule>/train.xyz`` present (the shared data): ``train`` and ``val`` are the
    first ``n_train`` and the next ``n_val`` frames of a seeded random permutation
    (``numpy.random.default_rng(seed)``) of ``train.xyz``, so they are disjoint and
    deterministic for a seed; ``test`` is all of ``test.xyz``.

    With only ``rmd17/<molecule>/all.xyz`` present (the full trajectory written by
    :func:`zoo.data.download_rmd17`): ``train`` and ``val`` are drawn the same way from
    ``all.xyz`` and ``test`` is every remaining frame, in file order. Parsing the 100,000 frames
    of ``all.xyz`` takes tens of seconds.

    Parameters
    ----------
    molecule
        One of :data:`MOLECULES`.
    split
        ``"train"``, ``"val"`` or ``"test"``.
    root
        Data root holding ``rmd17/``; defaults to :func:`zoo.data.data_root`.
    seed
        Seed of the train/val permutation.
    n_train, n_val
        Sizes of the train and val splits.
    max_frames
        Keep only the first ``max_frames`` rows of the split (``None``: all).

    Returns
    -------
    datasets.Dataset
        Columns (see :data:`FEATURES`): ``z`` (list of int), ``pos`` (list of [x, y, z], Å),
        ``energy`` (eV), ``forces`` (list of [fx, fy, fz], eV/Å), all float64, and
        ``frame_index`` (index of the frame in its source file).

    Raises
    ------
    ValueError
        Unknown molecule or split, negative sizes, or more frames requested than the file has.
    FileNotFoundError
        When the data is missing (the message says how to point at it or download it).
    InvalidFrameError
        When a frame is invalid or lacks an energy or forces.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if n_train < 0 or n_val < 0:
        raise ValueError(f"n_train and n_val must be >= 0, got {n_train} and {n_val}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 or None, got {max_frames}")

    folder = _molecule_dir(molecule, root)
    full = folder / "all.xyz"
    use_full = not (folder / "train.xyz").exists() and full.exists()

    if split == "test" and not use_full:
        frames = read_frames(_require(folder / "test.xyz", root), labels="require")
        indices = np.arange(len(frames))
    else:
        source = full if use_full else _require(folder / "train.xyz", root)
        frames = read_frames(source, labels="require")
        if n_train + n_val > len(frames):
            raise ValueError(
                f"n_train + n_val = {n_train + n_val} exceeds the {len(frames)} frames of {source}"
            )
        train, val, rest = split_indices(len(frames), seed, n_train, n_val)
        indices = {"train": train, "val": val}.get(split, rest)
    if max_frames is not None:
        indices = indices[:max_frames]
    return datasets.Dataset.from_dict(_frames_to_columns(frames, indices), features=FEATURES)


def split_indices(
    n_frames: int, seed: int, n_train: int, n_val: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame indices of the train, val and remaining frames of a frame file.

    The first ``n_train`` and the next ``n_val`` frames of a seeded permutation
    (``numpy.random.default_rng(seed)``); the rest (sorted) is what neither split uses: the test
    split of a full archive, or frames to check a model on that its selection never saw.
    """
    perm = np.random.default_rng(seed).permutation(n_frames)
    return perm[:n_train], perm[n_train : n_train + n_val], np.sort(perm[n_train + n_val :])


def _check_dtype(dtype: torch.dtype) -> None:
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch dtype, got {dtype}")


def atoms_to_data(atoms: Atoms, dtype: torch.dtype = torch.float32, *, labels: bool = True) -> Data:
    """Convert a frame to a :class:`torch_geometric.data.Data` (validating it first).

    Parameters
    ----------
    atoms
        The frame; energy and forces are optional.
    dtype
        Floating dtype of ``pos``, ``energy`` and ``forces``.
    labels
        Attach ``energy`` and ``forces`` where the frame has them.

    Returns
    -------
    torch_geometric.data.Data
        ``z`` (long, [n]), ``pos`` ([n, 3]), and where available ``energy`` ([1]) and
        ``forces`` ([n, 3]).

    Raises
    ------
    InvalidFrameError
        When the frame fails :func:`validate_frame`.
    """
    _check_dtype(dtype)
    validate_frame(atoms, labels="check" if labels else "ignore")
    data = Data(
        z=torch.as_tensor(atoms.numbers, dtype=torch.long),
        pos=torch.as_tensor(atoms.positions, dtype=dtype),
    )
    if labels:
        energy, forces = _labels(atoms)
        if energy is not None:
            energy = np.asarray(energy, dtype=np.float64).reshape(1)
            data.energy = torch.as_tensor(energy, dtype=dtype)
        if forces is not None:
            data.forces = torch.as_tensor(np.asarray(forces, dtype=np.float64), dtype=dtype)
    return data


def row_to_data(row: Mapping[str, Any], dtype: torch.dtype = torch.float32) -> Data:
    """Convert a row of a :func:`load_rmd17` dataset to a :class:`torch_geometric.data.Data`.

    Parameters
    ----------
    row
        Mapping with ``z`` and ``pos``, and optionally ``energy`` and ``forces``.
    dtype
        Floating dtype of ``pos``, ``energy`` and ``forces``.

    Returns
    -------
    torch_geometric.data.Data
        ``z`` (long, [n]), ``pos`` ([n, 3]), ``energy`` ([1]) and ``forces`` ([n, 3]) where
        the row has them.
    """
    _check_dtype(dtype)
    data = Data(
        z=torch.as_tensor(row["z"], dtype=torch.long),
        pos=torch.as_tensor(row["pos"], dtype=dtype).reshape(-1, 3),
    )
    if row.get("energy") is not None:
        data.energy = torch.as_tensor(row["energy"], dtype=dtype).reshape(1)
    if row.get("forces") is not None:
        data.forces = torch.as_tensor(row["forces"], dtype=dtype).reshape(-1, 3)
    return data


def to_data_list(dataset: datasets.Dataset, dtype: torch.dtype = torch.float32) -> list[Data]:
    """Convert every row of a :func:`load_rmd17` dataset with :func:`row_to_data`.

    Parameters
    ----------
    dataset
        The dataset.
    dtype
        Floating dtype of the float tensors.

    Returns
    -------
    list of torch_geometric.data.Data
        One graph per row, in dataset order.
    """
    return [row_to_data(row, dtype) for row in dataset]


def frames_to_batch(
    frames: Sequence[Atoms] | Atoms,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Batch:
    """Turn frames to predict on into one :class:`torch_geometric.data.Batch`.

    Only species and positions are used: frames for prediction usually carry no energy or
    forces, and mixing frames with and without labels could not be batched anyway.

    Parameters
    ----------
    frames
        List of ``ase.Atoms`` (a single ``Atoms`` is treated as a list of one).
    dtype
        Floating dtype of ``pos``.
    device
        Where to put the batch (``None``: stay on the CPU).

    Returns
    -------
    torch_geometric.data.Batch
        ``z``, ``pos`` and the ``batch`` vector mapping each atom to its frame.

    Raises
    ------
    ValueError
        When ``frames`` is empty.
    InvalidFrameError
        When a frame is empty, has an unknown element or non-finite positions; the message
        names the frame index.
    """
    _check_dtype(dtype)
    if isinstance(frames, Atoms):
        frames = [frames]
    if len(frames) == 0:
        raise ValueError("frames_to_batch needs at least one frame")
    data_list = []
    for i, atoms in enumerate(frames):
        validate_frame(atoms, i, source="input frames", labels="ignore")
        data_list.append(
            Data(
                z=torch.as_tensor(atoms.numbers, dtype=torch.long),
                pos=torch.as_tensor(atoms.positions, dtype=dtype),
            )
        )
    batch = Batch.from_data_list(data_list)
    return batch.to(device) if device is not None else batch
