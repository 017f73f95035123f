"""The smoke-plume data of Wang, Walters & Yu (ICML 2022), Rotation set, simulated with PhiFlow.

A buoyant smoke plume rises from a circular inflow in a closed 64 x 64 box; the task is to
predict the velocity field's next frames from the previous 10. The 36 simulations of the
*Rotation* set put the inflow at the middle of one of the four walls (direction ``j``), with
the buoyancy pointing away from it, so the family of tasks is approximately C4-symmetric: task
``j + 1`` is task ``j`` turned by 90 degrees, except that direction ``j = 2`` has a 10% stronger
buoyancy (the planted symmetry breaking).

This is our own implementation of the procedure of the authors' ``data_gen.ipynb`` and
``run_model.py`` (``Rose-STL-Lab/Approximately-Equivariant-Nets``) as written down in
``shared/docs/SMOKE.md``, for PhiFlow 3.4 in 64-bit precision (the authors used PhiFlow 2.0.1,
which needs numpy < 1.24; 3.4 reproduces their simulations statistically, not bit for bit).

Typical use::

    from zoo.data.smoke import load_smoke

    train = load_smoke("train")   # Dataset of (input [20, 64, 64], target [6, 2, 64, 64], index)

or, from a shell (3 to 4 minutes per simulation on one core; the cache is 365 MB)::

    python -m zoo.data.smoke [--root DIR] [--workers N] [--only K]

Layout of a frame: ``[2, 64, 64]``, channels the velocity's ``(x, y)`` components, array axes
``(y, x)`` (row index = y, growing in the direction of the buoyancy of ``j = 0``). A rotation
by 90 degrees counter-clockwise in the ``(x, y)`` plane maps task ``j`` to task ``j + 1``. The
simulator itself is exactly C4-symmetric, but the stored staggered components are not: after a
quarter turn of the array (:meth:`~zoo.relax.representations.C4FieldRep.rotate`) the x
component sits one cell off (it lives on the cells' left faces, the y component on their lower
faces), as in the authors' data, which their models also treat as cell-centred.

Not implemented: the *Scale* set of SMOKE.md (38 simulations at up to 300 x 300, downsampled):
:func:`simulate_smoke` takes its parameters, but there is no scale-equivariant model, cache
version or task for it yet.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoo.data.cache import (
    MANIFEST_NAME,
    atomic_folder,
    atomic_writer,
    cache_dir,
    read_manifest,
    write_manifest,
)

__all__ = [
    "CHECKSUM_SHA256",
    "CHECKSUM_TASK",
    "DOMAIN_TASKS",
    "SMOKE_NAME",
    "SMOKE_SPLITS",
    "SmokeTask",
    "SmokeWindows",
    "SplitSpec",
    "TRAIN_TASKS",
    "frames_digest",
    "generate_smoke",
    "load_frames",
    "load_smoke",
    "rotation_task",
    "rotation_tasks",
    "simulate_smoke",
    "simulate_task",
    "smoke_cache_dir",
    "window",
    "write_cache",
]

SMOKE_NAME = "smoke-rotation-v1"
"""Name of the cache folder; a new dataset version gets a new name, never a changed one."""

RESOLUTION = 64
N_STEPS = 310
N_FRAMES = N_STEPS - 1
"""Frames kept per simulation: the state after every step but the first (as the authors)."""
INFLOW_RADIUS = 5.0
VELOCITY_DT = 1.0
PRESSURE_TOLERANCE = 1e-5
N_TASKS = 36

# Per direction j: inflow centre (x, y) and the unit direction of the buoyancy.
INFLOWS: dict[int, tuple[float, float]] = {0: (32, 5), 1: (59, 32), 2: (32, 59), 3: (5, 32)}
BUOYANCY_DIRECTIONS: dict[int, tuple[float, float]] = {0: (0, 1), 1: (-1, 0), 2: (0, -1),
                                                       3: (1, 0)}
BUOYANCY_PER_K = 0.01
SYMMETRY_BREAKING: dict[int, float] = {2: 1.1}
"""Buoyancy factor per direction beyond ``0.01 k``: direction 2 is 10% stronger."""

# The authors' split (run_model.py): 25 training tasks, 10 held-out "Domain" tasks, one unused.
TRAIN_TASKS: tuple[tuple[int, int], ...] = (
    (27, 2), (33, 0), (3, 2), (28, 3), (9, 0), (12, 3), (22, 1), (8, 3), (30, 1), (25, 0),
    (16, 3), (11, 2), (23, 2), (29, 0), (36, 3), (26, 1), (1, 0), (35, 2), (19, 2), (34, 1),
    (4, 3), (2, 1), (7, 2), (31, 2), (17, 0),
)
DOMAIN_TASKS: tuple[tuple[int, int], ...] = (
    (6, 1), (14, 1), (15, 2), (10, 1), (18, 1), (20, 3), (24, 3), (13, 0), (21, 0), (5, 0),
)
UNUSED_TASKS: tuple[tuple[int, int], ...] = ((32, 3),)

INPUT_FRAMES = 10
INPUT_OFFSET = 2
"""A sample starting at ``s`` reads frames ``[s + 2, s + 12)`` and predicts the next ones."""

CHECKSUM_TASK = 1
CHECKSUM_SHA256 = "61df528040d42cc6a411978c399bd87f2b0db06213b0884c66dde9af37a8e165"
"""sha256 (:func:`frames_digest`) of simulation ``k = 1`` with PhiFlow 3.4.0, phiml 1.16.1,
numpy 2.4, scipy 1.17 (x86-64): checked whenever generation simulates it."""

_FORMAT = 1


@dataclass(frozen=True)
class SmokeTask:
    """One simulation of the Rotation set.

    Attributes
    ----------
    k
        Task number, 1..36 (scales the buoyancy).
    j
        Inflow direction, ``(k - 1) mod 4``.
    inflow
        Centre ``(x, y)`` of the inflow sphere.
    buoyancy
        Buoyancy vector ``(x, y)`` per unit of smoke density.
    """

    k: int
    j: int
    inflow: tuple[float, float]
    buoyancy: tuple[float, float]


def rotation_task(k: int) -> SmokeTask:
    """The settings of Rotation simulation ``k`` (1..36), from SMOKE.md's table."""
    if not 1 <= k <= N_TASKS:
        raise ValueError(f"Rotation tasks are numbered 1..{N_TASKS}, got {k}")
    j = (k - 1) % 4
    strength = BUOYANCY_PER_K * k * SYMMETRY_BREAKING.get(j, 1.0)
    dx, dy = BUOYANCY_DIRECTIONS[j]
    # `+ 0.0` turns -0.0 into 0.0 (the same field; a tidier manifest).
    return SmokeTask(k, j, INFLOWS[j], (dx * strength + 0.0, dy * strength + 0.0))


def rotation_tasks() -> list[SmokeTask]:
    """All 36 Rotation simulations, ``k = 1..36``."""
    return [rotation_task(k) for k in range(1, N_TASKS + 1)]


# --------------------------------------------------------------------------- simulation


def simulate_smoke(
    inflow: tuple[float, float],
    buoyancy: tuple[float, float],
    *,
    resolution: int = RESOLUTION,
    n_steps: int = N_STEPS,
    radius: float = INFLOW_RADIUS,
    velocity_dt: float = VELOCITY_DT,
    tolerance: float = PRESSURE_TOLERANCE,
) -> np.ndarray:
    """Simulate one smoke plume with PhiFlow (numpy backend, 64-bit) and return its velocities.

    A ``resolution``-square grid on a box of the same size. Smoke: centred grid, boundary
    extrapolation; velocity: staggered grid, zero extrapolation (closed walls); inflow: a hard
    sphere mask of ``radius`` at ``inflow``. Each step, as the authors: advect the smoke
    (MacCormack, dt 1) and add the inflow; buoyancy = smoke x ``buoyancy``, resampled to the
    velocity grid; advect the velocity (semi-Lagrangian, ``velocity_dt``) and add the buoyancy;
    make it incompressible (pressure solve to relative tolerance ``tolerance``).

    Parameters
    ----------
    inflow
        Centre ``(x, y)`` of the inflow, in cells.
    buoyancy
        Force ``(x, y)`` per unit smoke density.
    resolution, n_steps, radius, velocity_dt, tolerance
        Grid size, number of steps, inflow radius, velocity advection step, solver tolerance.

    Returns
    -------
    numpy.ndarray
        ``[n_steps, 2, resolution, resolution]`` float32: after every step, the staggered
        velocity components ``(x, y)`` on axes ``(y, x)``, cropped to the grid (the x component
        at the left face of each cell, the y component at its lower face).

    Notes
    -----
    Deterministic (a direct sparse solve, no random numbers). Needs PhiFlow (``pip install
    zoo[smoke]``). PhiFlow's precision is set with its own context manager; no global numpy or
    torch state is changed.
    """
    res = int(resolution)
    with warnings.catch_warnings():
        # The closed box's Poisson problem is singular (pressure up to a constant) and scipy's
        # direct solver converts the matrix: both only warn, on every step; PhiFlow's own
        # deprecations are not ours to act on.
        warnings.filterwarnings("ignore", message="Rank deficiency")
        warnings.filterwarnings("ignore", message="spsolve requires")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"phi(ml)?\.")
        try:
            from phi import flow
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the smoke simulator needs PhiFlow 3.4: pip install 'zoo[smoke]' "
                "(or pip install phiflow==3.4.0)"
            ) from err
        return _simulate(flow, res, inflow, buoyancy, n_steps, radius, velocity_dt, tolerance)


def _simulate(flow, res, inflow, buoyancy, n_steps, radius, velocity_dt, tolerance):
    with flow.math.precision(64):
        bounds = flow.Box(x=res, y=res)
        smoke = flow.CenteredGrid(0, flow.extrapolation.BOUNDARY, x=res, y=res, bounds=bounds)
        velocity = flow.StaggeredGrid(0, flow.extrapolation.ZERO, x=res, y=res, bounds=bounds)
        source = flow.Sphere(center=flow.vec(x=float(inflow[0]), y=float(inflow[1])),
                             radius=float(radius))
        inflow_grid = flow.CenteredGrid(source, flow.extrapolation.BOUNDARY, x=res, y=res,
                                        bounds=bounds)
        force = flow.vec(x=float(buoyancy[0]), y=float(buoyancy[1]))
        solve = flow.Solve("auto", tolerance, 0, x0=None)
        frames = np.empty((n_steps, 2, res, res), dtype=np.float32)
        for step in range(n_steps):
            smoke = flow.advect.mac_cormack(smoke, velocity, dt=1) + inflow_grid
            lift = flow.resample(smoke * force, to=velocity)
            velocity = flow.advect.semi_lagrangian(velocity, velocity, dt=velocity_dt) + lift
            velocity, _ = flow.fluid.make_incompressible(velocity, (), solve)
            staggered = velocity.staggered_tensor().numpy("vector,y,x")
            frames[step] = staggered[:, :res, :res]
    return frames


def simulate_task(k: int, n_steps: int = N_STEPS) -> np.ndarray:
    """Rotation simulation ``k`` as stored: ``[n_steps - 1, 2, 64, 64]`` float32 (frame 0,
    the state after the first step, is dropped as in the authors' data)."""
    task = rotation_task(k)
    return simulate_smoke(task.inflow, task.buoyancy, n_steps=n_steps)[1:]


def frames_digest(frames: np.ndarray) -> str:
    """sha256 of a simulation: its shape, then its values as little-endian float32 bytes."""
    a = np.ascontiguousarray(frames, dtype="<f4")
    h = hashlib.sha256()
    h.update(f"frames{list(a.shape)}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class SplitSpec:
    """Which simulations and sample starts a split uses, and how many frames it predicts."""

    tasks: tuple[tuple[int, int], ...]
    starts: range
    n_targets: int

    @property
    def n_samples(self) -> int:
        return len(self.tasks) * len(self.starts)


SMOKE_SPLITS: dict[str, SplitSpec] = {
    "train": SplitSpec(TRAIN_TASKS, range(0, 160), 6),
    "val": SplitSpec(TRAIN_TASKS, range(160, 200), 6),
    "future": SplitSpec(TRAIN_TASKS, range(200, 250), 20),
    "domain": SplitSpec(DOMAIN_TASKS, range(0, 100), 20),
}
"""The authors' splits: validation and the "Future" test are later windows of the training
simulations, the "Domain" test the first windows of 10 held-out simulations."""


def window(start: int, n_targets: int, input_frames: int = INPUT_FRAMES) -> tuple[slice, slice]:
    """Frame slices of the sample starting at ``start``: ``[s + 2, s + 12)`` as input, the
    ``n_targets`` frames after them as targets (the authors' ``mid = input_length + 2``)."""
    first = start + INPUT_OFFSET
    middle = first + input_frames
    return slice(first, middle), slice(middle, middle + n_targets)


class SmokeWindows(torch.utils.data.Dataset):
    """Samples of a split, cut on access from the per-simulation frames (nothing is copied).

    Parameters
    ----------
    frames
        Simulation number ``k`` -> ``[n_frames, 2, H, W]`` tensor.
    spec
        The split (:data:`SMOKE_SPLITS`).
    input_frames
        Frames per input (10).

    Items are ``(inputs, targets, index)``: ``inputs`` ``[2 * input_frames, H, W]`` (frames
    stacked frame-major, channel ``2 t + c``, as the authors' models read them), ``targets``
    ``[n_targets, 2, H, W]`` and ``index`` the sample's position in the split. Sample ``i``
    is simulation ``spec.tasks[i // len(spec.starts)]`` at start ``spec.starts[i % ...]``.
    """

    def __init__(self, frames: Mapping[int, torch.Tensor], spec: SplitSpec,
                 input_frames: int = INPUT_FRAMES) -> None:
        self.spec, self.input_frames = spec, input_frames
        self.frames = {k: frames[k] for k, _ in spec.tasks}
        last = window(spec.starts[-1], spec.n_targets, input_frames)[1].stop
        for k, tensor in self.frames.items():
            if tensor.shape[0] < last:
                raise ValueError(f"simulation {k} has {tensor.shape[0]} frames; the split needs "
                                 f"{last}")

    def __len__(self) -> int:
        return self.spec.n_samples

    def locate(self, index: int) -> tuple[int, int]:
        """``(k, start)`` of sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        per_task = len(self.spec.starts)
        return self.spec.tasks[index // per_task][0], self.spec.starts[index % per_task]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        k, start = self.locate(int(index))
        inputs, targets = window(start, self.spec.n_targets, self.input_frames)
        frames = self.frames[k]
        x = frames[inputs]
        return x.reshape(-1, *x.shape[2:]), frames[targets], int(index)


# --------------------------------------------------------------------------- cache


def smoke_cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding (or to hold) the cached Rotation set: ``<root>/smoke-rotation-v1``.

    ``root`` defaults to ``$ZOO_CACHE_DIR`` when set and not empty, else ``~/.cache/zoo``.
    """
    return cache_dir(SMOKE_NAME, root)


def _staging_dir(folder: Path) -> Path:
    # Finished simulations wait here until all 36 exist: an interrupted generation resumes.
    return folder.parent / f".{folder.name}.partial"


def _staged_path(folder: Path, k: int) -> Path:
    return _staging_dir(folder) / f"k{k:02d}.npy"


def _save_staged(folder: Path, k: int, frames: np.ndarray) -> None:
    path = _staged_path(folder, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        np.save(f, frames)


def _load_staged(folder: Path, k: int) -> np.ndarray | None:
    path = _staged_path(folder, k)
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def _cache_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete cache of this version; ``None`` if it is one.

    Checks the manifest and the rows; the frames' checksums are checked as they are loaded.
    """
    import datasets

    if not folder.is_dir():
        return "it does not exist"
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        return f"its {MANIFEST_NAME} cannot be read ({type(exc).__name__}: {exc})"
    if manifest.get("name") != SMOKE_NAME or manifest.get("format") != _FORMAT:
        return f"its {MANIFEST_NAME} does not match this version of zoo"
    try:
        table = datasets.load_from_disk(str(folder))
        if sorted(table["k"]) != sorted(int(t["k"]) for t in manifest["tasks"]):
            return "its rows do not match its manifest"
    except Exception as exc:  # datasets and pyarrow raise many types on damaged files
        return f"it cannot be loaded ({type(exc).__name__}: {exc})"
    return None


def _features(shape: Sequence[int]):
    import datasets

    return datasets.Features({
        "k": datasets.Value("int32"),
        "j": datasets.Value("int32"),
        "inflow": datasets.List(datasets.Value("float64"), length=2),
        "buoyancy": datasets.List(datasets.Value("float64"), length=2),
        "frames": datasets.Array4D(shape=tuple(int(s) for s in shape), dtype="float32"),
    })


def write_cache(folder: Path, simulations: Mapping[int, np.ndarray], manifest: dict) -> None:
    """Save simulations (``k -> frames``) as a ``datasets`` dataset, one row per simulation,
    with ``manifest.json`` (plus each simulation's sha256), under a temporary name renamed
    into place: never a half-written cache."""
    import datasets

    ks = sorted(simulations)
    shape = simulations[ks[0]].shape
    tasks = [rotation_task(k) for k in ks]
    manifest = {**manifest, "name": SMOKE_NAME, "format": _FORMAT, "frame_shape": list(shape),
                "tasks": [{"k": t.k, "j": t.j, "inflow": list(t.inflow),
                           "buoyancy": list(t.buoyancy),
                           "sha256": frames_digest(simulations[t.k])} for t in tasks]}
    with atomic_folder(folder) as tmp:
        table = datasets.Dataset.from_dict(
            {"k": [t.k for t in tasks], "j": [t.j for t in tasks],
             "inflow": [list(t.inflow) for t in tasks],
             "buoyancy": [list(t.buoyancy) for t in tasks],
             "frames": [np.asarray(simulations[k], dtype=np.float32) for k in ks]},
            features=_features(shape),
        )
        table.save_to_disk(str(tmp))
        write_manifest(tmp, manifest)


def load_frames(tasks: Iterable[int], root: str | os.PathLike[str] | None = None,
                dtype: torch.dtype = torch.float32) -> dict[int, torch.Tensor]:
    """The frames of simulations ``tasks`` from the cache, each checked against the manifest.

    Returns ``k -> [n_frames, 2, 64, 64]`` tensors. Raises ``FileNotFoundError`` (saying how
    to generate it) when the cache is missing, ``RuntimeError`` when it is damaged.
    """
    import datasets

    folder = smoke_cache_dir(root)
    problem = _cache_problem(folder)
    if problem is not None:
        raise FileNotFoundError(
            f"no usable smoke-plume cache at {folder} ({problem}). Generate it (36 simulations, "
            f"about 2.5 CPU core-hours, 365 MB) with `python -m zoo.data.smoke --root "
            f"{folder.parent} --workers 2`; it needs PhiFlow (pip install 'zoo[smoke]')."
        )
    expected = {int(t["k"]): t["sha256"] for t in read_manifest(folder)["tasks"]}
    table = datasets.load_from_disk(str(folder)).with_format("numpy")
    rows = {int(k): i for i, k in enumerate(table["k"])}
    out = {}
    for k in tasks:
        if k not in rows:
            raise KeyError(f"simulation {k} is not in the cache at {folder}")
        frames = np.ascontiguousarray(table[rows[k]]["frames"], dtype=np.float32)
        if frames_digest(frames) != expected[k]:
            raise RuntimeError(f"simulation {k} in {folder} does not match its checksum; "
                               "regenerate the cache (python -m zoo.data.smoke --overwrite)")
        out[k] = torch.from_numpy(frames).to(dtype)
    return out


def load_smoke(split: str, root: str | os.PathLike[str] | None = None,
               dtype: torch.dtype = torch.float32,
               frames: Mapping[int, torch.Tensor] | None = None) -> SmokeWindows:
    """One split of the Rotation set as a lazily windowed dataset.

    Parameters
    ----------
    split
        ``"train"`` (25 simulations x 160 starts = 4000 samples, 6 target frames), ``"val"``
        (1000, 6), ``"future"`` (1250, 20) or ``"domain"`` (10 held-out simulations, 1000, 20).
    root
        Cache root, see :func:`smoke_cache_dir`. The cache is not generated here (hours).
    dtype
        Floating dtype of the returned tensors.
    frames
        Already loaded simulations to reuse (``k -> frames``); missing ones are loaded.

    Returns
    -------
    SmokeWindows
        ``(inputs [20, 64, 64], targets [n_targets, 2, 64, 64], index)`` samples.
    """
    if split not in SMOKE_SPLITS:
        raise ValueError(f"unknown smoke split {split!r}; expected one of {sorted(SMOKE_SPLITS)}")
    spec = SMOKE_SPLITS[split]
    have = dict(frames or {})
    missing = [k for k, _ in spec.tasks if k not in have]
    if missing:
        have.update(load_frames(missing, root, dtype))
    return SmokeWindows({k: have[k].to(dtype) for k, _ in spec.tasks}, spec)


# --------------------------------------------------------------------------- generation


def _simulate_and_stage(args: tuple[str, int]) -> tuple[int, str, float]:
    folder, k = args
    start = time.perf_counter()
    frames = simulate_task(k)
    _save_staged(Path(folder), k, frames)
    return k, frames_digest(frames), time.perf_counter() - start


def _check_reference(k: int, digest: str) -> None:
    if k == CHECKSUM_TASK and digest != CHECKSUM_SHA256:
        raise RuntimeError(
            f"simulation {k} has sha256 {digest}, not the stored {CHECKSUM_SHA256}. The "
            "simulation is deterministic, so this points at the environment (a PhiFlow, phiml, "
            "numpy or scipy release that rounds differently): the data would not be the data "
            "the published models used. Pass verify=False (--no-verify) to keep it anyway."
        )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("phiflow", "phiml", "numpy", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def generate_smoke(
    root: str | os.PathLike[str] | None = None,
    *,
    workers: int = 1,
    only: int | None = None,
    overwrite: bool = False,
    verify: bool = True,
    log=print,
) -> Path:
    """Simulate the Rotation set and cache it (or one simulation of it).

    Finished simulations are kept in a staging folder beside the cache until all 36 exist, so
    an interrupted run resumes where it stopped; then the ``datasets`` dataset and its manifest
    are written under a temporary name and renamed into place.

    Parameters
    ----------
    root
        Cache root, see :func:`smoke_cache_dir`.
    workers
        Simulations run in parallel (processes; each uses about one core).
    only
        Simulate only task ``k`` into the staging folder and return its staged file (for a
        check, or to spread the work over several machines).
    overwrite
        Simulate again even what is cached or staged.
    verify
        Check simulation :data:`CHECKSUM_TASK` against :data:`CHECKSUM_SHA256`.
    log
        Called with one progress line per simulation.

    Returns
    -------
    pathlib.Path
        The cache folder (or, with ``only``, the staged ``.npy`` file).
    """
    folder = smoke_cache_dir(root)
    if only is None and not overwrite and _cache_problem(folder) is None:
        return folder
    wanted = [only] if only is not None else list(range(1, N_TASKS + 1))
    for k in wanted:
        rotation_task(k)  # validates k
    todo = [k for k in wanted if overwrite or _load_staged(folder, k) is None]
    started = time.perf_counter()
    jobs = [(str(folder), k) for k in todo]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = pool.map(_simulate_and_stage, jobs)
            for k, digest, seconds in results:
                log(f"simulation {k:2d}: {seconds:6.1f} s, sha256 {digest}")
                if verify:
                    _check_reference(k, digest)
    else:
        for job in jobs:
            k, digest, seconds = _simulate_and_stage(job)
            log(f"simulation {k:2d}: {seconds:6.1f} s, sha256 {digest}")
            if verify:
                _check_reference(k, digest)
    if only is not None:
        return _staged_path(folder, only)
    simulations = {}
    for k in wanted:
        frames = _load_staged(folder, k)
        if frames is None:
            raise RuntimeError(f"simulation {k} is missing from {_staging_dir(folder)}")
        simulations[k] = frames
    if verify:
        _check_reference(CHECKSUM_TASK, frames_digest(simulations[CHECKSUM_TASK]))
    manifest = {
        "checksum_task": CHECKSUM_TASK,
        "checksum_sha256": CHECKSUM_SHA256,
        "verified": verify,
        "simulation": {"resolution": RESOLUTION, "n_steps": N_STEPS, "frames_kept": "1..",
                       "inflow_radius": INFLOW_RADIUS, "velocity_dt": VELOCITY_DT,
                       "pressure_tolerance": PRESSURE_TOLERANCE, "precision": 64,
                       "smoke_advection": "mac_cormack", "velocity_advection": "semi_lagrangian"},
        "splits": {name: {"tasks": [list(t) for t in s.tasks],
                          "starts": [s.starts.start, s.starts.stop], "n_targets": s.n_targets,
                          "n_samples": s.n_samples} for name, s in SMOKE_SPLITS.items()},
        "versions": _versions(),
        "generation_seconds_this_run": round(time.perf_counter() - started, 1),
    }
    write_cache(folder, simulations, manifest)
    shutil.rmtree(_staging_dir(folder), ignore_errors=True)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoo.data.smoke",
        description="Simulate the smoke-plume Rotation set (36 simulations) and cache it.",
    )
    parser.add_argument("--root", help="cache root (default $ZOO_CACHE_DIR or ~/.cache/zoo)")
    parser.add_argument("--workers", type=int, default=1, help="simulations in parallel")
    parser.add_argument("--only", type=int, metavar="K",
                        help="simulate only task K (1..36) into the staging folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="simulate again what is already cached or staged")
    parser.add_argument("--no-verify", action="store_true",
                        help=f"do not check simulation {CHECKSUM_TASK} against its stored sha256")
    args = parser.parse_args(argv)
    path = generate_smoke(args.root, workers=args.workers, only=args.only,
                          overwrite=args.overwrite, verify=not args.no_verify,
                          log=lambda line: print(line, flush=True))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
