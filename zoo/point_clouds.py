"""Class probabilities of point clouds with a zoo classifier, and reading clouds from files.

::

    import zoo
    from zoo.point_clouds import predict_point_cloud, read_point_cloud

    model = zoo.load("vn-pointnet-modelnet40")
    out = predict_point_cloud(model, read_point_cloud("chair.ply"))
    out["probabilities"]   # numpy [n_clouds, 40]
    out["labels"]          # predicted class names
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["normalize_cloud", "predict_point_cloud", "read_point_cloud"]

_PLY_TYPES = {
    "char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
    "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
    "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8",
}


def _read_ply(path: Path) -> np.ndarray:
    """Vertex x, y, z of an ASCII or binary PLY file (other elements are ignored)."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a PLY file (no 'ply' magic line)")
        fmt, elements, current = None, [], None
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: PLY header has no end_header line")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                current = {"name": words[1], "count": int(words[2]), "props": []}
                elements.append(current)
            elif words[0] == "property":
                if current is None:
                    raise ValueError(f"{path}: PLY property before any element")
                if words[1] == "list":
                    current["props"].append((words[-1], None))
                else:
                    current["props"].append((words[2], _PLY_TYPES[words[1]]))
            elif words[0] == "end_header":
                break
        if not elements or elements[0]["name"] != "vertex":
            raise ValueError(f"{path}: the first PLY element must be 'vertex'")
        vertex = elements[0]
        names = [n for n, _ in vertex["props"]]
        if any(t is None for _, t in vertex["props"]) or not {"x", "y", "z"} <= set(names):
            raise ValueError(f"{path}: PLY vertices need scalar x, y, z properties")
        if fmt == "ascii":
            rows = [f.readline().split() for _ in range(vertex["count"])]
            table = np.asarray(rows, dtype=np.float64)
            return table[:, [names.index(a) for a in "xyz"]]
        if fmt not in ("binary_little_endian", "binary_big_endian"):
            raise ValueError(f"{path}: unsupported PLY format {fmt!r}")
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(n, order + t) for n, t in vertex["props"]])
        data = np.frombuffer(f.read(dtype.itemsize * vertex["count"]), dtype=dtype)
        if data.shape[0] != vertex["count"]:
            raise ValueError(f"{path}: PLY file is truncated")
        return np.stack([data[a].astype(np.float64) for a in "xyz"], axis=-1)


def read_point_cloud(path: str | Path) -> np.ndarray:
    """Read a cloud ``[n, 3]`` (or a stack ``[b, n, 3]``) from ``.npy``, ``.ply`` or text.

    ``.npy`` files are read without pickle; text files (``.txt``, ``.xyz``, ``.csv``) need the
    coordinates in the first three columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point cloud file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        points = np.load(path, allow_pickle=False)
    elif suffix == ".ply":
        points = _read_ply(path)
    elif suffix in (".txt", ".xyz", ".csv"):
        points = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)[:, :3]
    else:
        raise ValueError(f"unsupported point cloud file {path.name!r}: use .npy, .ply, .txt or "
                         ".xyz (x y z per line)")
    return np.asarray(points, dtype=np.float64)


def normalize_cloud(points: torch.Tensor) -> torch.Tensor:
    """Centre every cloud on its centroid and scale it into the unit sphere (as ModelNet40)."""
    centred = points - points.mean(dim=-2, keepdim=True)
    radius = centred.norm(dim=-1).amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return centred / radius.unsqueeze(-1)


def trained_n_points(model: torch.nn.Module) -> int | None:
    """Points per cloud the model was trained on, from its config (``None`` if unrecorded)."""
    config = getattr(model, "zoo_info", {}).get("config", {})
    value = (config.get("data") or {}).get("n_points")
    return int(value) if value else None


def _points_to_use(model: torch.nn.Module, n_points: int | None | str) -> int | None:
    if n_points == "trained":
        return trained_n_points(model)
    if n_points is not None and (isinstance(n_points, (bool, str)) or int(n_points) < 2):
        raise ValueError(f"n_points must be 'trained', None (all points) or an integer >= 2, "
                         f"got {n_points!r}")
    return n_points


def predict_point_cloud(
    model: torch.nn.Module,
    points: Any,
    *,
    normalize: bool = True,
    n_points: int | None | str = "trained",
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Class probabilities of one cloud ``[n, 3]`` or a stack ``[b, n, 3]``.

    Parameters
    ----------
    model
        A zoo point-cloud classifier returning ``{"logits": [b, n_classes]}``.
    points
        Array-like of coordinates.
    normalize
        Centre and scale into the unit sphere first (the models were trained that way; this is
        rotation-equivariant, so invariance is kept).
    n_points
        Use a random subset of this many points per cloud (fixed by ``seed``, the same indices
        for every cloud); ``None`` keeps all points. The default, ``"trained"``, takes the
        number of points the model was trained on (its config's ``data.n_points``; all points
        where the model does not record it): the published models saw 300-point clouds, and
        neighbourhoods of a denser cloud (VN-DGCNN's k nearest neighbours) cover a smaller
        region than in training, which costs accuracy and time.
    batch_size
        Clouds per forward pass.
    seed
        Seed of the subset (private generator; global state untouched).

    Returns
    -------
    dict
        ``"probabilities"`` ``[b, n_classes]``, ``"predicted"`` class indices ``[b]`` and, when
        the model's config names its classes, ``"labels"`` (class names).

    Raises
    ------
    zoo.errors.InputError
        When the model is a zoo model of another input (molecules, N-body systems, grids).
    """
    from zoo.inference import check_input_kind

    check_input_kind(model, "point_cloud")
    tensor = torch.as_tensor(np.asarray(points, dtype=np.float64))
    single = tensor.ndim == 2
    if single:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3 or tensor.shape[-1] != 3 or tensor.shape[1] < 2:
        raise ValueError(f"points must have shape [n, 3] or [b, n, 3] with n >= 2, got "
                         f"{tuple(np.shape(points))}")
    if not torch.isfinite(tensor).all():
        raise ValueError("points contain NaN or infinite coordinates")
    n_points = _points_to_use(model, n_points)
    if n_points is not None and tensor.shape[1] > n_points:
        chosen = torch.randperm(tensor.shape[1], generator=torch.Generator().manual_seed(seed))
        tensor = tensor[:, chosen[:n_points]]
    if normalize:
        tensor = normalize_cloud(tensor)
    parameter = next(model.parameters())
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            logits = torch.cat([
                model(tensor[i:i + batch_size].to(parameter))["logits"]
                for i in range(0, tensor.shape[0], batch_size)
            ])
    finally:
        for module, flag in flags:
            module.training = flag
    probabilities = torch.softmax(logits.double(), dim=-1).cpu().numpy()
    result: dict[str, Any] = {"probabilities": probabilities,
                              "predicted": probabilities.argmax(-1)}
    classes = getattr(model, "zoo_info", {}).get("config", {}).get("classes")
    if classes:
        result["labels"] = [classes[i] for i in result["predicted"]]
    return result
