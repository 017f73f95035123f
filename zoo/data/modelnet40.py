"""ModelNet40 point clouds: splits, point sampling, rotations, and the public archive.

Layout under the data root (see :mod:`zoo.data.paths`)::

    modelnet40/train.npz   # official train split, 9,843 shapes (the shared data)
    modelnet40/test.npz    # official test split, 2,468 shapes

Keys: ``points`` float16 ``(S, 1024, 3)`` (centred, unit sphere, z up; cast to float32 on
reading), ``labels`` int8 ``(S,)``, ``names`` ``(S,)`` (e.g. ``airplane_0627``), ``classes``
``(40,)`` in the standard alphabetical label order.

Splits. The official protocol has only train and test. Model selection needs a third set that
is not the test set, so ``"val"`` is a seeded hold-out of the train file, stratified by class
(``round(0.05 * count)`` shapes of each class, at least one: 489 shapes with the defaults),
``"train"`` is the rest of the train file (9,354 shapes), ``"trainval"`` the whole train file
and ``"test"`` the test file. Select models on ``"val"``; report ``"test"`` once.

Points. The protocol of the Vector Neurons paper (and of the relaxation papers that reuse it):
300 points per shape, the first 300 of the stored (already shuffled) order for evaluation, as
the reference loader's ``pointcloud[:num_points]``, then re-centred and scaled to the unit
sphere as its ``pc_normalize``; training may draw a fresh random subset per epoch
(:func:`sample_points` with a generator). Rotations: a Haar-random SO(3) rotation per shape in
training (:func:`random_rotations`), and a fixed seeded rotation per shape for evaluation
(:func:`rotate_points` with ``random_rotations(n, torch.Generator().manual_seed(seed))``, or
``modelnet40_tensors(..., rotation_seed=seed)``) so the test metric is reproducible.
"""

from __future__ import annotations

import functools
import json
import os
import zipfile
from pathlib import Path, PurePosixPath

import datasets
import numpy as np
import torch

from zoo.data.cache import atomic_writer
from zoo.data.fetch import (
    DownloadError,
    copy_atomically,
    fetch_first,
    file_digests,
    verify_digests,
)
from zoo.data.paths import ENV_VAR, data_root
from zoo.symmetry import random_rotations

__all__ = [
    "MODELNET40_CLASSES",
    "MODELNET40_H5_MD5",
    "MODELNET40_MD5",
    "MODELNET40_SPLITS",
    "MODELNET40_URL",
    "MODELNET40_URLS",
    "convert_h5_files",
    "download_modelnet40",
    "load_modelnet40",
    "modelnet40_classes",
    "modelnet40_tensors",
    "random_rotations",
    "rotate_points",
    "sample_points",
    "split_indices",
]

MODELNET40_CLASSES: tuple[str, ...] = tuple(
    "airplane bathtub bed bench bookshelf bottle bowl car chair cone cup curtain desk door "
    "dresser flower_pot glass_box guitar keyboard lamp laptop mantel monitor night_stand person "
    "piano plant radio range_hood sink sofa stairs stool table tent toilet tv_stand vase "
    "wardrobe xbox".split()
)
"""The 40 class names in the standard (alphabetical) label order, as stored in the files."""

MODELNET40_SPLITS: tuple[str, ...] = ("train", "val", "test", "trainval")
_FILES = {"train": "train", "val": "train", "trainval": "train", "test": "test"}

MODELNET40_URL = "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip"
MODELNET40_URLS: tuple[str, ...] = (
    MODELNET40_URL,
    # A third-party mirror of the same file, tried when the Stanford host fails; the md5 check
    # guarantees the same bytes.
    "https://huggingface.co/datasets/Msun/modelnet40/resolve/main/modelnet40_ply_hdf5_2048.zip",
)
MODELNET40_MD5 = "c9ab8e6dfb16f67afdab25e155c79e59"
"""md5 of ``modelnet40_ply_hdf5_2048.zip`` (about 415 MB) as pinned by several public loaders
that verify it after download; not verified from here (no network), and no sha256 or exact
size is published, so only the md5 is checked."""
MODELNET40_H5_MD5: dict[str, str] = {
    "ply_data_train0.h5": "3176385ffc31a7b6b5af22191fd920d1",
    "ply_data_train1.h5": "e3f613fb500559403b34925112754dc4",
    "ply_data_train2.h5": "0c56e233a090ff87c3049d4ce08e7d8b",
    "ply_data_train3.h5": "9d2af465adfa33a3285c369f3ca66c45",
    "ply_data_train4.h5": "dff38de489b2c41bfaeded86c2208984",
    "ply_data_test0.h5": "e9732e6d83b09e79e9a7617df058adee",
    "ply_data_test1.h5": "aba4b12a67c34391cc3c015a6f08ed4b",
}
"""md5 of each hdf5 file inside the archive, as pinned by three independent public loaders
(torchvision-style ``ModelNet40`` datasets); checked after extraction."""


# --------------------------------------------------------------------------- reading


def _npz_path(file: str, root: str | os.PathLike[str] | None) -> Path:
    base = Path(root).expanduser() if root is not None else data_root()
    path = base / "modelnet40" / f"{file}.npz"
    if not path.is_file():
        source = "the root argument" if root is not None else f"${ENV_VAR} or the default"
        raise FileNotFoundError(
            f"ModelNet40 file not found at {path} (data root {base}, from {source}). Point the "
            f"environment variable {ENV_VAR} at the folder that holds 'modelnet40/', e.g. "
            f"`export {ENV_VAR}=/path/to/shared/data`, or download and convert the public "
            f"archive with `python -c 'import zoo.data; zoo.data.download_modelnet40()'`."
        )
    return path


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime: float) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in ("points", "labels", "names", "classes")}
    points = arrays["points"]
    if points.ndim != 3 or points.shape[-1] != 3 or len(points) != len(arrays["labels"]):
        raise ValueError(f"{path}: expected points (S, P, 3) and S labels")
    arrays["points"].setflags(write=False)
    return arrays


def _arrays(file: str, root: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    path = _npz_path(file, root)
    return _read(str(path), path.stat().st_mtime)


def modelnet40_classes(root: str | os.PathLike[str] | None = None) -> list[str]:
    """The 40 class names in label order (``airplane`` ... ``xbox``)."""
    return [str(c) for c in _arrays("train", root)["classes"]]


def split_indices(
    split: str, labels: np.ndarray, val_fraction: float = 0.05, seed: int = 0
) -> np.ndarray:
    """Sorted row indices of ``split`` in its file (see the module docstring).

    ``"val"``: per class, ``max(1, round(val_fraction * count))`` shapes drawn with
    ``numpy.random.default_rng(seed)``; ``"train"``: the other rows of the train file;
    ``"trainval"`` and ``"test"``: every row.
    """
    if split not in MODELNET40_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {MODELNET40_SPLITS}")
    labels = np.asarray(labels)
    if split in ("trainval", "test"):
        return np.arange(len(labels))
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_val = min(len(members) - 1, max(1, round(val_fraction * len(members))))
        held_out.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(held_out))
    return val if split == "val" else np.setdiff1d(np.arange(len(labels)), val)


# --------------------------------------------------------------------------- points


def sample_points(
    points: torch.Tensor,
    n_points: int | None,
    generator: torch.Generator | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """``n_points`` points of each shape ``[S, P, 3]`` -> ``[S, n_points, 3]``.

    Without ``generator``: the first ``n_points`` (deterministic, the reference's protocol);
    with one: an independent uniformly random subset per shape (training, one draw per epoch).
    ``normalize``: re-centre each subset and scale it into the unit sphere (the reference's
    ``pc_normalize``); the networks are not translation invariant, so centring matters.
    ``n_points=None`` keeps every point.
    """
    if n_points is not None:
        if not 0 < n_points <= points.shape[1]:
            raise ValueError(f"n_points must be in 1..{points.shape[1]}, got {n_points}")
        if generator is None:
            points = points[:, :n_points]
        else:
            keys = torch.rand(points.shape[:2], generator=generator, device=points.device)
            order = keys.argsort(dim=1)[:, :n_points]
            points = points.gather(1, order.unsqueeze(-1).expand(-1, -1, 3))
    if normalize:
        points = points - points.mean(dim=1, keepdim=True)
        points = points / points.norm(dim=-1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return points


def rotate_points(points: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``points[s] @ rotations[s].T`` for ``points`` ``[S, P, 3]`` and ``rotations``
    ``[S, 3, 3]`` (or one ``[3, 3]`` for all)."""
    rotations = rotations.to(points.dtype)
    return points @ rotations.transpose(-1, -2)


# --------------------------------------------------------------------------- public API


def modelnet40_tensors(
    split: str,
    n_points: int | None = 300,
    *,
    root: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    normalize: bool = True,
    rotation_seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain tensors of a split: ``(points float32 [S, n_points, 3], labels long [S])``.

    Parameters
    ----------
    split
        ``"train"``, ``"val"``, ``"test"`` or ``"trainval"``.
    n_points
        The first ``n_points`` of every shape (``None``: all 1024; for a random subset per epoch
        take ``None`` here and :func:`sample_points` with a generator in the training loop).
    root
        Data root holding ``modelnet40/``; defaults to :func:`zoo.data.data_root`.
    val_fraction, seed
        Of the stratified train/val split (:func:`split_indices`).
    normalize
        Re-centre and rescale the kept points (see :func:`sample_points`).
    rotation_seed
        Rotate every shape by its own Haar-random rotation drawn from
        ``torch.Generator().manual_seed(rotation_seed)`` (the reproducible rotated test set);
        ``None``: no rotation.
    """
    arrays = _arrays(_FILES.get(split, split), root)
    rows = split_indices(split, arrays["labels"], val_fraction, seed)
    points = torch.from_numpy(arrays["points"][rows].astype(np.float32))
    points = sample_points(points, n_points, normalize=normalize and n_points is not None)
    if rotation_seed is not None:
        generator = torch.Generator().manual_seed(rotation_seed)
        points = rotate_points(points, random_rotations(len(points), generator))
    labels = torch.from_numpy(arrays["labels"][rows].astype(np.int64))
    return points.contiguous(), labels


def load_modelnet40(
    split: str,
    root: str | os.PathLike[str] | None = None,
    n_points: int | None = 300,
    *,
    val_fraction: float = 0.05,
    seed: int = 0,
    normalize: bool = True,
    rotation_seed: int | None = None,
) -> datasets.Dataset:
    """One split as a Hugging Face dataset (arguments as :func:`modelnet40_tensors`).

    Returns
    -------
    datasets.Dataset
        Columns ``points`` (``Array2D(n_points, 3)`` float32), ``label`` (``ClassLabel`` with
        the 40 class names), ``name`` (e.g. ``airplane_0627``) and ``index`` (row in its npz
        file). ``dataset.features["label"].names`` lists the classes.
    """
    points, labels = modelnet40_tensors(
        split, n_points, root=root, val_fraction=val_fraction, seed=seed, normalize=normalize,
        rotation_seed=rotation_seed,
    )
    arrays = _arrays(_FILES.get(split, split), root)
    rows = split_indices(split, arrays["labels"], val_fraction, seed)
    features = datasets.Features({
        "points": datasets.Array2D((points.shape[1], 3), "float32"),
        "label": datasets.ClassLabel(names=[str(c) for c in arrays["classes"]]),
        "name": datasets.Value("string"),
        "index": datasets.Value("int64"),
    })
    columns = {
        "points": points.numpy(),
        "label": labels.numpy(),
        "name": [str(n) for n in arrays["names"][rows]],
        "index": rows.astype(np.int64),
    }
    return datasets.Dataset.from_dict(columns, features=features)


# --------------------------------------------------------------------------- download


def _safe_zip_name(name: str) -> PurePosixPath:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name or ":" in name:
        raise DownloadError(f"refusing archive member with an unsafe path: {name!r}")
    return pure


def _extract_h5(archive: Path, folder: Path) -> dict[str, Path]:
    """Extract the hdf5 files and their ``*_id2file.json`` name lists (flat, by base name),
    checking every member name and each hdf5 file's published md5."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            pure = _safe_zip_name(info.filename)
            if info.is_dir() or not pure.name.endswith((".h5", "_id2file.json", "shape_names.txt")):
                continue
            dest = folder / pure.name
            with zf.open(info) as src:
                copy_atomically(src, dest)
            out[pure.name] = dest
    for name, md5 in MODELNET40_H5_MD5.items():
        if name not in out:
            raise DownloadError(f"the archive {archive} has no member {name}")
        got = file_digests(out[name])[1]
        if got != md5:
            raise DownloadError(f"md5 mismatch for {name}: got {got}, expected {md5}")
    return out


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # an optional dependency: only the converter needs it
        raise ImportError(
            "converting the ModelNet40 hdf5 archive needs h5py: `pip install h5py`"
        ) from exc
    return h5py


def convert_h5_files(
    files: dict[str, Path], dest: Path, classes: list[str], n_points: int = 1024
) -> dict[str, Path]:
    """Write ``dest/{train,test}.npz`` (the shared layout) from the archive's hdf5 files.

    ``files`` maps base names to paths: ``ply_data_{split}{i}.h5`` (``data`` float32
    ``(n, 2048, 3)``, ``label`` ``(n, 1)``) and optionally ``ply_data_{split}_{i}_id2file.json``
    (``"class/class_0001.ply"`` per shape) for the names. The first ``n_points`` points of each
    shape are kept (the stored order is already random), as float16.
    """
    h5py = _h5py()
    dest.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "test"):
        parts = sorted(
            (n for n in files if n.startswith(f"ply_data_{split}") and n.endswith(".h5")),
            key=lambda n: int(n.removeprefix(f"ply_data_{split}").removesuffix(".h5")),
        )
        points, labels, names = [], [], []
        for part in parts:
            with h5py.File(files[part], "r") as h5:
                data = np.asarray(h5["data"][:, :n_points], dtype=np.float32)
                label = np.asarray(h5["label"]).reshape(-1).astype(np.int64)
            index = part.removeprefix(f"ply_data_{split}").removesuffix(".h5")
            id2file = files.get(f"ply_data_{split}_{index}_id2file.json")
            if id2file is not None:
                stems = [PurePosixPath(p).stem for p in json.loads(id2file.read_text())]
            else:
                stems = [f"{classes[c]}_{split}{index}_{i:04d}" for i, c in enumerate(label)]
            if len(stems) != len(label) or len(data) != len(label):
                raise ValueError(f"{part}: {len(data)} shapes, {len(label)} labels")
            points.append(data)
            labels.append(label)
            names += stems
        labels_all = np.concatenate(labels)
        if labels_all.min() < 0 or labels_all.max() >= len(classes):
            raise ValueError(f"labels outside 0..{len(classes) - 1} in the {split} files")
        path = dest / f"{split}.npz"
        with atomic_writer(path) as tmp:
            np.savez(
                tmp, points=np.concatenate(points).astype(np.float16),
                labels=labels_all.astype(np.int8), names=np.asarray(names),
                classes=np.asarray(classes),
            )
        written[split] = path
    return written


def download_modelnet40(
    root: str | os.PathLike[str] | None = None,
    *,
    url: str | list[str] | tuple[str, ...] = MODELNET40_URLS,
    expected_md5: str | None = MODELNET40_MD5,
    expected_size: int | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``modelnet40_ply_hdf5_2048.zip`` and write ``<root>/modelnet40/{train,test}.npz``.

    The archive (PointNet's preprocessed release, about 415 MB: 2,048 points per shape sampled
    from the meshes, unit sphere) is streamed to a temporary file, verified (md5, see
    :data:`MODELNET40_MD5`; size only if given) and then renamed; its hdf5 files are checked
    against :data:`MODELNET40_H5_MD5` and converted with :func:`convert_h5_files` (needs
    ``h5py``). Note that this release holds 9,840 train shapes (three fewer than the official
    split and the shared data) and different point samples, so results on it are close to, not
    identical with, results on the shared data.

    Returns
    -------
    pathlib.Path
        ``<root>/modelnet40``. Existing ``train.npz`` and ``test.npz`` are kept unless ``force``.
    """
    base = Path(root).expanduser() if root is not None else data_root()
    dest = base / "modelnet40"
    if not force and all((dest / f"{s}.npz").is_file() for s in ("train", "test")):
        return dest
    _h5py()  # fail before a 415 MB download, not after
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "modelnet40_ply_hdf5_2048.zip"
    checks = {"expected_sha256": None, "expected_md5": expected_md5, "expected_size": expected_size}
    if archive.exists() and not force:
        try:
            verify_digests(*file_digests(archive), **checks)
        except DownloadError:
            archive.unlink()
    if force or not archive.exists():
        urls = [url] if isinstance(url, str) else list(url)
        fetch_first(urls, archive, what="ModelNet40", progress=progress, timeout=timeout,
                    **checks)
    files = _extract_h5(archive, dest / "hdf5")
    names_file = files.get("shape_names.txt")
    classes = names_file.read_text().split() if names_file else list(MODELNET40_CLASSES)
    convert_h5_files(files, dest, classes)
    return dest

