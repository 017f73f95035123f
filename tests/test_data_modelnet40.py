"""Tests of zoo.data.modelnet40: splits, sampling, rotations, the loaders and the downloader."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo.data as zd
from zoo.data import modelnet40 as mn
from zoo.data.fetch import DownloadError

N_TRAIN_FILE, N_TEST = 9843, 2468


def _real_root() -> Path:
    root = zd.data_root()
    if not (root / "modelnet40" / "train.npz").is_file():
        pytest.skip(
            f"ModelNet40 npz files not found under {root / 'modelnet40'}; point $ZOO_DATA_DIR "
            "at the shared data folder (the one holding modelnet40/) to run this test"
        )
    return root


def _synthetic_root(tmp_path: Path, per_class: int = 6, n_points: int = 40) -> Path:
    """A data root with tiny train/test files in the shared layout (no shared data needed)."""
    rng = np.random.default_rng(0)
    classes = np.array([f"class{i}" for i in range(4)])
    folder = tmp_path / "modelnet40"
    folder.mkdir(parents=True)
    for split, n in (("train", per_class), ("test", 2)):
        labels = np.repeat(np.arange(4), n).astype(np.int8)
        points = rng.normal(size=(len(labels), n_points, 3)).astype(np.float16)
        names = np.array([f"{classes[c]}_{i:04d}" for i, c in enumerate(labels)])
        np.savez(folder / f"{split}.npz", points=points, labels=labels, names=names,
                 classes=classes)
    return tmp_path


# --------------------------------------------------------------------------- synthetic


def test_split_indices_partition_and_stratification():
    labels = np.repeat(np.arange(5), [40, 20, 3, 1, 100])
    val = mn.split_indices("val", labels, 0.05, seed=3)
    train = mn.split_indices("train", labels, 0.05, seed=3)
    assert np.intersect1d(val, train).size == 0
    assert np.union1d(val, train).tolist() == list(range(len(labels)))
    counts = np.bincount(labels[val], minlength=5)
    assert counts.tolist() == [2, 1, 1, 0, 5]  # round(5 %), at least one, never a whole class
    assert np.array_equal(val, mn.split_indices("val", labels, 0.05, seed=3))
    assert not np.array_equal(val, mn.split_indices("val", labels, 0.05, seed=4))
    assert mn.split_indices("trainval", labels).tolist() == list(range(len(labels)))
    with pytest.raises(ValueError, match="unknown split"):
        mn.split_indices("validation", labels)


def test_sample_points_first_random_and_normalized():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(5, 50, 3, generator=gen) * 3 + 1
    first = mn.sample_points(points, 20, normalize=False)
    assert torch.equal(first, points[:, :20])
    normed = mn.sample_points(points, 20)
    assert normed.mean(1).abs().max() < 1e-5
    assert torch.allclose(normed.norm(dim=-1).amax(1), torch.ones(5))
    a = mn.sample_points(points, 20, torch.Generator().manual_seed(7), normalize=False)
    b = mn.sample_points(points, 20, torch.Generator().manual_seed(7), normalize=False)
    c = mn.sample_points(points, 20, torch.Generator().manual_seed(8), normalize=False)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for s in range(5):  # a subset of each shape's own points, without repeats
        rows = {tuple(p.tolist()) for p in points[s]}
        drawn = [tuple(p.tolist()) for p in a[s]]
        assert set(drawn) <= rows and len(set(drawn)) == 20
    with pytest.raises(ValueError, match="n_points"):
        mn.sample_points(points, 51)


def test_random_rotations_are_rotations_and_seeded():
    rot = mn.random_rotations(500, torch.Generator().manual_seed(0), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(rot @ rot.transpose(-1, -2), eye.expand(500, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(500, dtype=torch.float64))
    again = mn.random_rotations(500, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(rot, again)
    assert not torch.equal(rot, mn.random_rotations(500, torch.Generator().manual_seed(1),
                                                    dtype=torch.float64))
    # Haar: the rotated first axis is uniform on the sphere (mean ~ 0, second moment I/3).
    axis = rot[:, :, 0]
    assert axis.mean(0).abs().max() < 0.1
    assert torch.allclose(axis.T @ axis / 500, eye / 3, atol=0.05)
    points = torch.randn(500, 7, 3, dtype=torch.float64)
    rotated = mn.rotate_points(points, rot)
    assert torch.allclose(rotated.norm(dim=-1), points.norm(dim=-1))
    assert torch.allclose(rotated[3], points[3] @ rot[3].T)


def test_loaders_on_synthetic_root(tmp_path):
    root = _synthetic_root(tmp_path)
    points, labels = zd.modelnet40_tensors("val", 10, root=root, val_fraction=0.2)
    assert points.shape == (4, 10, 3) and points.dtype == torch.float32
    assert labels.dtype == torch.int64 and sorted(labels.tolist()) == [0, 1, 2, 3]
    train, _ = zd.modelnet40_tensors("train", None, root=root, val_fraction=0.2)
    assert train.shape == (20, 40, 3)
    ds = zd.load_modelnet40("test", root=root, n_points=8)
    assert len(ds) == 8 and ds.features["label"].names == [f"class{i}" for i in range(4)]
    row = ds.with_format("numpy")[0]
    assert row["points"].shape == (8, 3) and row["name"] == "class0_0000"
    assert zd.modelnet40_classes(root) == [f"class{i}" for i in range(4)]
    rotated, _ = zd.modelnet40_tensors("test", 8, root=root, rotation_seed=5)
    plain, _ = zd.modelnet40_tensors("test", 8, root=root)
    assert not torch.allclose(rotated, plain)
    assert torch.allclose(rotated.norm(dim=-1), plain.norm(dim=-1), atol=1e-6)


def test_missing_data_message(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        zd.modelnet40_tensors("test")
    message = str(err.value)
    assert "ZOO_DATA_DIR" in message and "download_modelnet40" in message
    assert str(tmp_path.resolve() / "modelnet40" / "test.npz") in message


# --------------------------------------------------------------------------- shared data


@pytest.mark.data
def test_real_counts_classes_and_dtypes():
    root = _real_root()
    classes = zd.modelnet40_classes()
    assert tuple(classes) == zd.MODELNET40_CLASSES
    sizes = {}
    for split in ("train", "val", "test", "trainval"):
        points, labels = zd.modelnet40_tensors(split, root=root)
        assert points.dtype == torch.float32 and points.shape[1:] == (300, 3)
        assert labels.dtype == torch.int64 and len(labels) == len(points)
        assert torch.isfinite(points).all()
        sizes[split] = len(labels)
        if split != "val":
            assert torch.bincount(labels, minlength=40).min() > 0
    assert sizes["train"] + sizes["val"] == sizes["trainval"] == N_TRAIN_FILE
    assert sizes["test"] == N_TEST
    assert 450 <= sizes["val"] <= 530  # ~5 %
    _, val_labels = zd.modelnet40_tensors("val", root=root)
    assert torch.unique(val_labels).numel() == 40  # stratified: every class held out


@pytest.mark.data
def test_real_first_points_normalized_and_rotated_test_set_reproducible():
    root = _real_root()
    points, _ = zd.modelnet40_tensors("test", 300, root=root)
    assert points.mean(1).abs().max() < 1e-5
    assert torch.allclose(points.norm(dim=-1).amax(1), torch.ones(len(points)), atol=1e-5)
    full, _ = zd.modelnet40_tensors("test", None, root=root)
    assert full.shape[1] == 1024
    first = full[:, :300] - full[:, :300].mean(1, keepdim=True)
    first = first / first.norm(dim=-1).amax(1)[:, None, None]
    assert torch.allclose(points, first, atol=1e-6)  # the first 300 stored points
    a, _ = zd.modelnet40_tensors("test", 300, root=root, rotation_seed=0)
    b, _ = zd.modelnet40_tensors("test", 300, root=root, rotation_seed=0)
    c, _ = zd.modelnet40_tensors("test", 300, root=root, rotation_seed=1)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # a rotation per shape: norms kept, and each rotated cloud is a rigid motion of its own
    assert torch.allclose(a.norm(dim=-1), points.norm(dim=-1), atol=1e-5)
    rot = torch.linalg.lstsq(points[7].double(), a[7].double()).solution.T
    assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-5)
    assert torch.linalg.det(rot) > 0


@pytest.mark.data
def test_real_dataset_columns():
    _real_root()
    ds = zd.load_modelnet40("val")
    assert set(ds.column_names) == {"points", "label", "name", "index"}
    assert len(ds.features["label"].names) == 40
    row = ds.with_format("numpy")[0]
    assert row["points"].shape == (300, 3) and row["points"].dtype == np.float32
    assert ds.features["label"].int2str(int(row["label"])) == row["name"].rsplit("_", 1)[0]


# --------------------------------------------------------------------------- download


class _Server:
    """A local HTTP server: ``routes[path] = body``."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path not in routes:
                    self.send_error(404)
                    return
                body = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch) -> Iterator[_Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    srv = _Server()
    yield srv
    srv.close()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _h5_archive(h5py, tmp_path: Path) -> tuple[bytes, dict[str, str], dict]:
    """A miniature ``modelnet40_ply_hdf5_2048.zip`` and the md5 of its hdf5 files."""
    rng = np.random.default_rng(0)
    members, md5s, truth = {}, {}, {}
    for split, parts in (("train", 2), ("test", 1)):
        for i in range(parts):
            data = rng.normal(size=(3, 2048, 3)).astype(np.float32)
            label = rng.integers(0, 40, size=(3, 1)).astype(np.uint8)
            path = tmp_path / f"ply_data_{split}{i}.h5"
            with h5py.File(path, "w") as h5:
                h5["data"], h5["label"] = data, label
            blob = path.read_bytes()
            members[f"modelnet40_ply_hdf5_2048/{path.name}"] = blob
            md5s[path.name] = hashlib.md5(blob).hexdigest()
            ids = [f"{mn.MODELNET40_CLASSES[c]}/{mn.MODELNET40_CLASSES[c]}_{i}{j:03d}.ply"
                   for j, c in enumerate(label[:, 0])]
            members[f"modelnet40_ply_hdf5_2048/ply_data_{split}_{i}_id2file.json"] = (
                str(ids).replace("'", '"').encode()
            )
            truth.setdefault(split, []).append((data, label))
    members["modelnet40_ply_hdf5_2048/shape_names.txt"] = "\n".join(mn.MODELNET40_CLASSES).encode()
    return _zip(members), md5s, truth


def test_download_converts_hdf5(server, tmp_path, monkeypatch):
    h5py = pytest.importorskip(
        "h5py", reason="h5py is not installed: the hdf5 -> npz conversion cannot be tested"
    )
    blob, md5s, truth = _h5_archive(h5py, tmp_path)
    monkeypatch.setattr(mn, "MODELNET40_H5_MD5", md5s)
    server.routes["/m.zip"] = blob
    out = zd.download_modelnet40(tmp_path / "root", url=f"{server.url}/m.zip",
                                 expected_md5=hashlib.md5(blob).hexdigest(), progress=False)
    with np.load(out / "train.npz") as npz:
        assert npz["points"].shape == (6, 1024, 3) and npz["points"].dtype == np.float16
        expected = np.concatenate([d[:, :1024] for d, _ in truth["train"]])
        assert np.allclose(npz["points"], expected, atol=2e-3)
        labels = np.concatenate([lab[:, 0] for _, lab in truth["train"]])
        assert npz["labels"].tolist() == labels.tolist()
        assert npz["names"][0].startswith(mn.MODELNET40_CLASSES[labels[0]] + "_")
    points, labels = zd.modelnet40_tensors("test", 300, root=tmp_path / "root")
    assert points.shape == (3, 300, 3)


def test_download_needs_h5py_or_rejects_bad_archives(server, tmp_path, monkeypatch):
    """Without h5py: a clear ImportError before any download. With it: md5 and unsafe member
    checks (the conversion itself is tested by test_download_converts_hdf5)."""
    try:
        import h5py  # noqa: F401
    except ImportError:
        server.routes["/m.zip"] = b"never fetched"
        with pytest.raises(ImportError, match="pip install h5py"):
            zd.download_modelnet40(tmp_path, url=f"{server.url}/m.zip", progress=False)
        assert not (tmp_path / "modelnet40" / "modelnet40_ply_hdf5_2048.zip").exists()
        return
    blob = _zip({"modelnet40_ply_hdf5_2048/ply_data_train0.h5": b"x"})
    server.routes["/m.zip"] = blob
    with pytest.raises(DownloadError, match="md5 mismatch"):
        zd.download_modelnet40(tmp_path, url=f"{server.url}/m.zip", expected_md5="0" * 32,
                               progress=False)
    evil = _zip({"../evil.h5": b"x"})
    server.routes["/evil.zip"] = evil
    with pytest.raises(DownloadError, match="unsafe path"):
        zd.download_modelnet40(tmp_path, url=f"{server.url}/evil.zip",
                               expected_md5=hashlib.md5(evil).hexdigest(), progress=False)
    assert not (tmp_path.parent / "evil.h5").exists()


def test_unsafe_zip_members_refused(tmp_path):
    """Member names are checked before anything is written (no h5py needed)."""
    for name in ("../evil.h5", "/abs/evil.h5", "a/../../evil.h5", "c:evil.h5"):
        archive = tmp_path / "a.zip"
        archive.write_bytes(_zip({name: b"x"}))
        with pytest.raises(DownloadError, match="unsafe path"):
            mn._extract_h5(archive, tmp_path / "out")
    archive.write_bytes(_zip({"modelnet40_ply_hdf5_2048/ply_data_train0.h5": b"x"}))
    with pytest.raises(DownloadError, match="no member|md5 mismatch"):
        mn._extract_h5(archive, tmp_path / "out")


def test_published_checksums_are_well_formed():
    assert len(mn.MODELNET40_MD5) == 32 and int(mn.MODELNET40_MD5, 16) >= 0
    assert len(mn.MODELNET40_H5_MD5) == 7
    assert all(len(v) == 32 for v in mn.MODELNET40_H5_MD5.values())
    assert len(mn.MODELNET40_CLASSES) == 40
