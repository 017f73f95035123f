"""The charged N-body dataset of EGNN and SEGNN: simulator, cached splits and PyG conversion.

Five particles with charges ±1 move under Coulomb forces (like charges repel), as in the
``ChargedParticlesSim`` of Kipf et al. (2018, ``ethanfetaya/NRI``) extended to 3D by Satorras et
al. (2021, ``vgsatorras/egnn``, ``n_body_system/dataset/synthetic_sim.py``) and used again by
Brandstetter et al. (2021, SEGNN). The task: from positions, velocities and charges at frame 30,
predict the positions at frame 40, 1000 integration steps later.

The splits are regenerated locally (in well under a minute) rather than downloaded, and cached
as a Hugging Face ``DatasetDict`` under :func:`nbody_cache_dir`. Typical use::

    from zoo.data import load_nbody, nbody_to_data_list

    train = load_nbody("train")              # datasets.Dataset, 3000 trajectories
    graphs = nbody_to_data_list(train)       # list of torch_geometric Data

or, from a shell, ``python -m zoo.data.nbody [--root DIR] [--overwrite]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch_geometric.data import Data

from zoo.data.cache import (
    CACHE_ENV_VAR,
    MANIFEST_NAME,
    atomic_folder,
    cache_dir,
    read_manifest,
    write_manifest,
)

__all__ = [
    "NBODY_FEATURES",
    "NBODY_NAME",
    "NBODY_SHA256",
    "NBODY_SIZES",
    "NBODY_SPLITS",
    "NBODY_SPLIT_SEEDS",
    "coulomb_forces",
    "energy",
    "generate_nbody",
    "load_nbody",
    "momentum",
    "nbody_cache_dir",
    "nbody_to_data_list",
    "simulate_charged",
]

NBODY_NAME = "nbody-charged-v1"
"""Name of the cache folder; a new dataset version gets a new name, never a changed one."""

NBODY_SPLITS: tuple[str, ...] = ("train", "val", "test")
NBODY_SIZES: dict[str, int] = {"train": 3000, "val": 2000, "test": 2000}
NBODY_SPLIT_SEEDS: dict[str, int] = {"train": 1, "val": 2, "test": 3}
"""Seed of each split's ``numpy.random.SeedSequence``; the splits are independent draws."""

NBODY_SHA256: dict[str, str] = {
    "train": "2f60c199749d2643410af75780d04c8c547787bc1b502c09e197ea1247aee058",
    "val": "f3fd5e1560065ae0cc3b482e33fac57b87b48cc35275294b75501eee729efdda",
    "test": "ea51f89cd28dea1a6e4484d6c915d125897b8c30ead2004104065ae8de26b3ce",
}
"""sha256 of each generated split, see :func:`_digest` (float64 bytes, fixed order)."""

INPUT_FRAME = 30
TARGET_FRAME = 40
SAMPLE_EVERY = 100
N_STEPS = (TARGET_FRAME + 1) * SAMPLE_EVERY  # frame k is the state after (k + 1) * 100 steps
N_PARTICLES = 5

_FORMAT = 1

_VEC3 = datasets.List(datasets.Value("float64"), length=3)
NBODY_FEATURES = datasets.Features(
    {
        "pos": datasets.List(_VEC3, length=N_PARTICLES),
        "vel": datasets.List(_VEC3, length=N_PARTICLES),
        "charge": datasets.List(
            datasets.List(datasets.Value("float64"), length=1), length=N_PARTICLES
        ),
        "target": datasets.List(_VEC3, length=N_PARTICLES),
        "index": datasets.Value("int64"),
    }
)
"""Schema of :func:`load_nbody` datasets: float64 arrays and the trajectory index."""

_ARRAYS = ("pos", "vel", "charge", "target")  # hashed in this order


# --------------------------------------------------------------------------- physics


def _pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def _forces_particles_first(
    pos: np.ndarray, qq: np.ndarray, strength: float, pairs: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Coulomb forces on ``pos`` laid out (n, 3, ...); ``qq`` holds q_i q_j per pair (P, ...).

    Only correctly rounded elementwise operations (no BLAS, no reduction ufuncs, no ``pow``):
    given the same random draws, the trajectories, and hence the stored checksums, come out
    bit for bit the same on any machine.
    """
    i_idx, j_idx = pairs
    d = pos[i_idx] - pos[j_idx]  # (P, 3, ...): x_i - x_j
    r2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]
    f = (strength * qq / (r2 * np.sqrt(r2)))[:, None] * d  # force of j on i
    forces = np.zeros_like(pos)
    # Newton's third law by construction: j receives exactly -f, so momentum is conserved up to
    # the rounding of the per-particle sums.
    for p, (i, j) in enumerate(zip(i_idx.tolist(), j_idx.tolist(), strict=True)):
        forces[i] += f[p]
        forces[j] -= f[p]
    return forces


def _charges_2d(charges: np.ndarray, n: int) -> np.ndarray:
    q = np.asarray(charges, dtype=np.float64)
    if q.shape[-1] == 1 and q.ndim >= 2 and q.shape[-2] == n:
        q = q[..., 0]
    if q.shape[-1] != n:
        raise ValueError(f"charges must have shape (..., {n}) or (..., {n}, 1), got {q.shape}")
    return q


def coulomb_forces(
    pos: np.ndarray, charges: np.ndarray, interaction_strength: float = 1.0
) -> np.ndarray:
    """Unclipped Coulomb forces ``k sum_j q_i q_j (x_i - x_j) / |x_i - x_j|^3``.

    Parameters
    ----------
    pos
        Positions, shape ``(..., n, 3)``.
    charges
        Charges, shape ``(..., n)`` or ``(..., n, 1)``.
    interaction_strength
        The constant ``k``.

    Returns
    -------
    numpy.ndarray
        Forces (= accelerations, unit masses), shape ``(..., n, 3)``, float64. The simulator
        clips these elementwise; compare with ``max_force`` to see whether the clip is active.
    """
    pos = np.asarray(pos, dtype=np.float64)
    n = pos.shape[-2]
    q = np.moveaxis(_charges_2d(charges, n), -1, 0)  # (n, ...)
    pairs = _pair_indices(n)
    moved = np.moveaxis(pos, (-2, -1), (0, 1))
    forces = _forces_particles_first(moved, q[pairs[0]] * q[pairs[1]], interaction_strength, pairs)
    return np.moveaxis(forces, (0, 1), (-2, -1))


def energy(
    pos: np.ndarray, vel: np.ndarray, charges: np.ndarray, interaction_strength: float = 1.0
) -> np.ndarray:
    """Total energy: kinetic ``sum_i v_i^2 / 2`` plus Coulomb ``sum_{i<j} k q_i q_j / r_ij``.

    Masses are 1. The velocities that :func:`simulate_charged` stores lag half a step behind
    the positions (see there); for an energy accurate to O(dt^2) pass the synchronised
    ``vel + 0.5 * dt * clip(coulomb_forces(pos, charges))``.

    Parameters
    ----------
    pos, vel
        Positions and velocities, shape ``(..., n, 3)``.
    charges
        Charges, shape ``(..., n)`` or ``(..., n, 1)``.
    interaction_strength
        The constant ``k``.

    Returns
    -------
    numpy.ndarray
        Energy per system, shape ``(...)``, float64.
    """
    pos = np.asarray(pos, dtype=np.float64)
    vel = np.asarray(vel, dtype=np.float64)
    n = pos.shape[-2]
    q = _charges_2d(charges, n)
    kinetic = 0.5 * (vel * vel).sum(axis=(-2, -1))
    i_idx, j_idx = _pair_indices(n)
    d = pos[..., i_idx, :] - pos[..., j_idx, :]
    r = np.sqrt((d * d).sum(axis=-1))
    potential = (interaction_strength * q[..., i_idx] * q[..., j_idx] / r).sum(axis=-1)
    return kinetic + potential


def momentum(vel: np.ndarray) -> np.ndarray:
    """Total momentum ``sum_i v_i`` (unit masses): shape ``(..., 3)`` for ``vel`` ``(..., n, 3)``.

    Pairwise forces cancel, so it is conserved (to rounding) while the force clip is inactive.
    """
    return np.asarray(vel, dtype=np.float64).sum(axis=-2)


def simulate_charged(
    n_trajectories: int,
    seed: int,
    *,
    n_steps: int = N_STEPS,
    sample_every: int = SAMPLE_EVERY,
    n_particles: int = N_PARTICLES,
    loc_std: float = 1.0,
    vel_norm: float = 0.5,
    interaction_strength: float = 1.0,
    dt: float = 0.001,
    max_force: float | None = None,
) -> dict[str, np.ndarray]:
    """Simulate charged-particle trajectories, vectorised over trajectories, in float64.

    Initial state (per trajectory, as in the reference): charges -1 or +1 with probability 1/2;
    positions ``N(0, 1) * loc_std * (n_particles / 5) ** (1/3)`` (EGNN's density scaling, a
    no-op for 5 particles); velocities of random direction and norm ``vel_norm``. No walls
    (the reference's box clamp is disabled in EGNN's 3D version), no noise.

    Integrator, reproducing the reference's loop exactly: one kick ``v += dt * F(x_0)`` (the
    reference calls it a half step, but it is a full ``dt``), then for steps ``i = 1, 2, ...``:
    drift ``x += dt * v``, record the frame when ``i`` is a multiple of ``sample_every``, kick
    ``v += dt * F(x)``. This is leapfrog (kick-drift form) with the initial velocity taken as
    ``v_{-1/2}``: symplectic, second order in positions, and each recorded velocity is the one
    of the last drift, ``v_{i-1/2} = (x_i - x_{i-1}) / dt``. Forces are clipped elementwise to
    ``[-max_force, max_force]`` (the reference's ``0.1 / dt``), which tames close encounters
    but breaks energy and momentum conservation while active; see ``clipped``.

    Frame ``k`` is the state after ``(k + 1) * sample_every`` steps: the reference overwrites
    its initial state with the first sampled frame, so its "frame 30" is step 3100.

    Parameters
    ----------
    n_trajectories
        Number of independent trajectories.
    seed
        Seed of a private ``numpy.random.SeedSequence``. Trajectory ``t`` depends only on the
        seed and ``t``, so a smaller ``n_trajectories`` gives a prefix of a larger one.
    n_steps
        Number of drift steps; must be a multiple of ``sample_every``. The default reaches
        frame 40, the dataset's target.
    sample_every
        Steps between recorded frames.
    n_particles, loc_std, vel_norm, interaction_strength, dt
        System settings, defaults as in EGNN's charged 5-body data.
    max_force
        Elementwise force clip; ``None``: ``0.1 / dt`` as in the reference; ``math.inf``: none.

    Returns
    -------
    dict of numpy.ndarray
        ``pos``, ``vel``: ``(n_trajectories, n_frames, n_particles, 3)``, frames every
        ``sample_every`` steps; ``charge``: ``(n_trajectories, n_particles, 1)``;
        ``initial_pos``, ``initial_vel``: ``(n_trajectories, n_particles, 3)``, the state at step
        0; ``step``: ``(n_frames,)`` step of each frame; ``clipped``: ``(n_trajectories,
        n_frames)`` bool, whether the clip was active in a force evaluation at steps
        ``[k * sample_every, (k + 1) * sample_every)``, i.e. on the way to frame ``k``.
    """
    if n_trajectories < 0:
        raise ValueError(f"n_trajectories must be >= 0, got {n_trajectories}")
    if sample_every < 1 or n_steps < sample_every or n_steps % sample_every:
        raise ValueError(
            f"n_steps ({n_steps}) must be a positive multiple of sample_every ({sample_every})"
        )
    if n_particles < 2:
        raise ValueError(f"n_particles must be >= 2, got {n_particles}")
    clip = 0.1 / dt if max_force is None else float(max_force)
    n, count = n_particles, n_trajectories

    # Two independent streams, each filled in trajectory-major order: prefix-stable in count.
    charge_rng, state_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    charge = np.where(charge_rng.random((count, n)) < 0.5, -1.0, 1.0)
    state = state_rng.standard_normal((count, 2, n, 3))
    initial_pos = state[:, 0] * (loc_std * (n / 5.0) ** (1.0 / 3.0))
    direction = state[:, 1]
    norm = np.sqrt(direction[..., 0] ** 2 + direction[..., 1] ** 2 + direction[..., 2] ** 2)
    initial_vel = direction * (vel_norm / norm)[..., None]

    # Particles first, trajectories last: every operation runs over contiguous trajectories.
    pos = np.ascontiguousarray(np.moveaxis(initial_pos, 0, -1))  # (n, 3, T)
    vel = np.ascontiguousarray(np.moveaxis(initial_vel, 0, -1))
    pairs = _pair_indices(n)
    qq = charge.T[pairs[0]] * charge.T[pairs[1]]  # (P, T)

    n_frames = n_steps // sample_every
    frames_pos = np.empty((n_frames, n, 3, count))
    frames_vel = np.empty((n_frames, n, 3, count))
    clipped = np.zeros((n_frames, count), dtype=bool)

    def kick(frame: int) -> None:
        forces = _forces_particles_first(pos, qq, interaction_strength, pairs)
        clipped[frame] |= (np.abs(forces) > clip).any(axis=(0, 1))
        np.clip(forces, -clip, clip, out=forces)
        vel[...] += dt * forces

    kick(0)
    for step in range(1, n_steps + 1):
        pos += dt * vel
        if step % sample_every == 0:
            frame = step // sample_every - 1
            frames_pos[frame] = pos
            frames_vel[frame] = vel
        if step < n_steps:  # the kick after the last frame would not be recorded
            kick(step // sample_every)

    return {
        "pos": np.ascontiguousarray(frames_pos.transpose(3, 0, 1, 2)),
        "vel": np.ascontiguousarray(frames_vel.transpose(3, 0, 1, 2)),
        "charge": charge[..., None],
        "initial_pos": initial_pos,
        "initial_vel": initial_vel,
        "step": (np.arange(n_frames) + 1) * sample_every,
        "clipped": np.ascontiguousarray(clipped.T),
    }


# --------------------------------------------------------------------------- dataset


def _split_arrays(split: str) -> dict[str, np.ndarray]:
    """Simulate one split and keep what the task uses: frame 30 as input, frame 40 as target."""
    sim = simulate_charged(NBODY_SIZES[split], NBODY_SPLIT_SEEDS[split])
    return {
        "pos": sim["pos"][:, INPUT_FRAME],
        "vel": sim["vel"][:, INPUT_FRAME],
        "charge": sim["charge"],
        "target": sim["pos"][:, TARGET_FRAME],
        "index": np.arange(NBODY_SIZES[split], dtype=np.int64),
    }


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of a split: for each column in a fixed order, its name, shape and raw bytes.

    Float columns are hashed as little-endian float64 and ``index`` as little-endian int64, so
    the digest depends on the values only, not on the machine or on how they were stored.
    """
    h = hashlib.sha256()
    for name in (*_ARRAYS, "index"):
        dtype = "<i8" if name == "index" else "<f8"
        a = np.ascontiguousarray(arrays[name], dtype=dtype)
        h.update(f"{name}{list(a.shape)}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _columns(dataset: datasets.Dataset) -> dict[str, np.ndarray]:
    """The columns of an N-body dataset as exact numpy arrays, e.g. ``pos`` (rows, 5, 3).

    Read through Arrow: ``with_format("numpy")`` would cast float64 to float32.
    """
    table = dataset.with_format("arrow")[:]
    out = {}
    for name in (*_ARRAYS, "index"):
        column = table[name].combine_chunks()
        shape = [len(column)]
        while pa.types.is_fixed_size_list(column.type):
            shape.append(column.type.list_size)
            column = column.flatten()
        out[name] = column.to_numpy(zero_copy_only=False).reshape(shape)
    return out


def nbody_cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder that holds (or will hold) the cached N-body splits.

    Parameters
    ----------
    root
        Cache root; ``None``: ``$ZOO_CACHE_DIR`` when set and not empty, else ``~/.cache/zoo``.

    Returns
    -------
    pathlib.Path
        ``<root>/nbody-charged-v1`` (see :data:`NBODY_NAME`). It need not exist.
    """
    return cache_dir(NBODY_NAME, root)


def _cache_problem(folder: Path, splits: Sequence[str] = NBODY_SPLITS) -> str | None:
    """Why ``folder`` is not a complete, verified cache for ``splits``; ``None`` if it is."""
    if not folder.is_dir():
        return "it does not exist"
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        return f"its {MANIFEST_NAME} cannot be read ({type(exc).__name__}: {exc})"
    expected = {"name": NBODY_NAME, "format": _FORMAT, "sha256": NBODY_SHA256}
    for key, value in expected.items():
        if not isinstance(manifest, dict) or manifest.get(key) != value:
            return f"its {MANIFEST_NAME} does not match this version of zoo ({key!r} differs)"
    try:
        dataset_dict = datasets.load_from_disk(str(folder))
        for split in splits:
            columns = _columns(dataset_dict[split])
            if len(columns["index"]) != NBODY_SIZES[split]:
                return f"split {split!r} has {len(columns['index'])} rows"
            if _digest(columns) != NBODY_SHA256[split]:
                return f"split {split!r} does not match its checksum"
    except Exception as exc:  # datasets and pyarrow raise many types on damaged files
        return f"it cannot be loaded ({type(exc).__name__}: {exc})"
    return None


def _write_atomically(
    folder: Path, splits: Mapping[str, Mapping[str, np.ndarray]], manifest: dict
) -> None:
    """Save into a temporary sibling, then rename it into place: never a half-written cache.

    If another process finished first, its cache is kept when it is sound.
    """

    def sound(existing: Path) -> bool:
        return _cache_problem(existing) is None

    with atomic_folder(folder, accept_existing=sound) as tmp:
        dataset_dict = datasets.DatasetDict(
            {
                s: datasets.Dataset.from_dict(dict(a), features=NBODY_FEATURES)
                for s, a in splits.items()
            }
        )
        dataset_dict.save_to_disk(str(tmp))
        write_manifest(tmp, manifest)


def generate_nbody(root: str | os.PathLike[str] | None = None, overwrite: bool = False) -> Path:
    """Generate the train, val and test splits and cache them, unless a sound cache exists.

    Each split is simulated by :func:`simulate_charged` from its own seed
    (:data:`NBODY_SPLIT_SEEDS`: train 1, val 2, test 3; sizes 3000, 2000, 2000), checked
    against :data:`NBODY_SHA256`, and saved with ``datasets.DatasetDict.save_to_disk`` next to
    a ``manifest.json`` (settings, seeds, sizes, checksums, numpy version). The folder is
    written under a temporary name and renamed into place, so an interrupted run leaves no
    partial cache.

    Parameters
    ----------
    root
        Cache root, see :func:`nbody_cache_dir`.
    overwrite
        Regenerate even when the cache is present and verifies.

    Returns
    -------
    pathlib.Path
        The cache folder, ``<root>/nbody-charged-v1``.

    Raises
    ------
    RuntimeError
        When the simulated data differs from the stored checksums (e.g. a numpy release whose
        random streams or arithmetic differ), since it would not be the data the published
        models were trained and evaluated on.
    """
    folder = nbody_cache_dir(root)
    if not overwrite and _cache_problem(folder) is None:
        return folder
    start = time.perf_counter()
    splits = {split: _split_arrays(split) for split in NBODY_SPLITS}
    digests = {split: _digest(arrays) for split, arrays in splits.items()}
    wrong = [split for split in NBODY_SPLITS if digests[split] != NBODY_SHA256[split]]
    if wrong:
        raise RuntimeError(
            f"the simulated N-body splits {wrong} differ from the stored checksums "
            f"(got {', '.join(digests[s] for s in wrong)}; expected "
            f"{', '.join(NBODY_SHA256[s] for s in wrong)}). The simulator is deterministic, so "
            f"this points at the environment: numpy {np.__version__} may draw different random "
            "numbers or round differently from the numpy the checksums were made with. Nothing "
            f"was written to {folder}; please report this with your numpy version and platform."
        )
    manifest = {
        "name": NBODY_NAME,
        "format": _FORMAT,
        "sha256": digests,
        "sizes": {split: NBODY_SIZES[split] for split in NBODY_SPLITS},
        "seeds": NBODY_SPLIT_SEEDS,
        "input_frame": INPUT_FRAME,
        "target_frame": TARGET_FRAME,
        "simulator": {
            "n_particles": N_PARTICLES,
            "loc_std": 1.0,
            "vel_norm": 0.5,
            "interaction_strength": 1.0,
            "dt": 0.001,
            "max_force": 100.0,
            "sample_every": SAMPLE_EVERY,
            "n_steps": N_STEPS,
        },
        "numpy": np.__version__,
        "generation_seconds": round(time.perf_counter() - start, 2),
    }
    _write_atomically(folder, splits, manifest)
    return folder


def load_nbody(
    split: str,
    root: str | os.PathLike[str] | None = None,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """Load one split of the charged N-body dataset, generating the cache on first use.

    The split is verified against :data:`NBODY_SHA256` on every load (milliseconds); a missing,
    incomplete or corrupt cache is regenerated, with a warning when one was there.

    Parameters
    ----------
    split
        ``"train"`` (3000 trajectories), ``"val"`` (2000) or ``"test"`` (2000).
    root
        Cache root, see :func:`nbody_cache_dir`.
    max_samples
        Keep only the first ``max_samples`` rows (``None``: all).

    Returns
    -------
    datasets.Dataset
        Columns (see :data:`NBODY_FEATURES`, all float64): ``pos`` and ``vel`` (5 x 3) at frame
        30, ``charge`` (5 x 1, ±1), ``target`` (5 x 3) the positions at frame 40, and ``index``,
        the trajectory's index in its split. Raw coordinates: nothing is centred.

    Raises
    ------
    ValueError
        Unknown split or negative ``max_samples``.
    """
    if split not in NBODY_SPLITS:
        hint = " (use 'val')" if split in ("valid", "validation") else ""
        raise ValueError(f"unknown N-body split {split!r}{hint}; expected one of {NBODY_SPLITS}")
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples must be >= 0 or None, got {max_samples}")
    folder = nbody_cache_dir(root)
    problem = _cache_problem(folder, (split,))
    if problem is not None:
        if folder.exists():
            warnings.warn(
                f"N-body cache at {folder} is unusable ({problem}); regenerating it",
                stacklevel=2,
            )
        generate_nbody(root, overwrite=True)
    dataset = datasets.load_from_disk(str(folder))[split]
    if max_samples is not None and max_samples < len(dataset):
        dataset = dataset.select(range(max_samples))
    return dataset


def nbody_to_data_list(dataset: datasets.Dataset, dtype: torch.dtype = torch.float32) -> list[Data]:
    """Convert a :func:`load_nbody` dataset to one graph per trajectory.

    Parameters
    ----------
    dataset
        The dataset (or a selection of it).
    dtype
        Floating dtype of the float tensors.

    Returns
    -------
    list of torch_geometric.data.Data
        ``pos``, ``vel``, ``target`` ([5, 3]), ``charge`` ([5, 1]) and ``sample`` (long, [1], the
        trajectory index, e.g. to seed per-sample augmentation), in dataset order; no edges
        (the models build their own) and no centring.
    """
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch dtype, got {dtype}")
    columns = _columns(dataset)
    return [
        Data(
            pos=torch.tensor(columns["pos"][row], dtype=dtype),
            vel=torch.tensor(columns["vel"][row], dtype=dtype),
            charge=torch.tensor(columns["charge"][row], dtype=dtype),
            target=torch.tensor(columns["target"][row], dtype=dtype),
            sample=torch.tensor([columns["index"][row]], dtype=torch.long),
        )
        for row in range(len(columns["index"]))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m zoo.data.nbody [--root DIR] [--overwrite]``."""
    parser = argparse.ArgumentParser(
        prog="python -m zoo.data.nbody", description="Generate the charged N-body dataset."
    )
    parser.add_argument("--root", help=f"cache root (default: ${CACHE_ENV_VAR} or ~/.cache/zoo)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if cached")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    folder = generate_nbody(args.root, overwrite=args.overwrite)
    print(f"N-body dataset at {folder} ({time.perf_counter() - start:.1f} s)")
    for split in NBODY_SPLITS:
        print(f"  {split:5s} {NBODY_SIZES[split]:5d} trajectories  sha256 {NBODY_SHA256[split]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
