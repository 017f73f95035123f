"""Tests of zoo.data: paths, rMD17 reading/validation/splits, conversions and the downloader."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import kcal, mol

import zoo.data as zd
from zoo.data import paths as zpaths

HEADER = 'Properties=species:S:1:pos:R:3:forces:R:3 energy={e} pbc="F F F"'


# --------------------------------------------------------------------------- helpers


def _xyz_frame(symbols: list[str], pos, forces, energy: float | str) -> str:
    lines = [str(len(symbols)), HEADER.format(e=energy)]
    for s, p, f in zip(symbols, pos, forces, strict=True):
        lines.append(f"{s} " + " ".join(str(v) for v in (*p, *f)))
    return "\n".join(lines) + "\n"


def _good_frame(energy: float | str = -1.5, shift: float = 0.0) -> str:
    pos = [[0.0 + shift, 0.0, 0.0], [0.0, 0.0, 0.74]]
    return _xyz_frame(["H", "H"], pos, [[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]], energy)


def _write(tmp_path: Path, text: str, name: str = "frames.xyz") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _synthetic_root(tmp_path: Path, n_train: int = 40, n_test: int = 7) -> Path:
    """A data root with a tiny ethanol-named molecule, to test splits without shared data."""
    folder = tmp_path / "data" / "rmd17" / "ethanol"
    folder.mkdir(parents=True)
    for name, n in (("train.xyz", n_train), ("test.xyz", n_test)):
        text = "".join(_good_frame(energy=-float(i), shift=0.01 * i) for i in range(n))
        (folder / name).write_text(text)
    return tmp_path / "data"


def _col(dataset, name: str) -> list:
    # datasets >= 4 returns a lazy Column for dataset[name]; compare plain lists.
    return list(dataset[name])


def _real(relpath: str) -> Path:
    path = zd.data_root() / relpath
    if not path.exists():
        pytest.skip(f"rMD17 data {relpath} not found at {path}; set ZOO_DATA_DIR")
    return path


# --------------------------------------------------------------------------- paths


def test_data_root_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    project_root = Path(zd.__file__).resolve().parents[2]
    assert zd.data_root() == (project_root.parent / "shared" / "data").resolve()
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    assert zd.data_root() == tmp_path.resolve()
    monkeypatch.setenv("ZOO_DATA_DIR", "")  # empty means unset, not the current folder
    assert zd.data_root() == zpaths.default_data_root()


def test_require_data_messages(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    (tmp_path / "here.txt").write_text("x")
    assert zd.require_data("here.txt") == tmp_path.resolve() / "here.txt"
    with pytest.raises(FileNotFoundError) as err:
        zd.require_data("rmd17/aspirin/train.xyz")
    msg = str(err.value)
    assert str(tmp_path.resolve() / "rmd17" / "aspirin" / "train.xyz") in msg
    assert "ZOO_DATA_DIR" in msg and "download_rmd17" in msg


# --------------------------------------------------------------------------- reading


def test_read_frames_good(tmp_path):
    path = _write(tmp_path, _good_frame(-1.0) + _good_frame(-2.0))
    frames = zd.read_frames(path)
    assert len(frames) == 2
    assert frames[1].get_potential_energy() == pytest.approx(-2.0)
    assert frames[0].get_forces().shape == (2, 3)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_xyz_frame(["Xx"], [[0, 0, 0]], [[0, 0, 0]], -1.0), "unknown element symbol 'Xx'"),
        (_xyz_frame(["X"], [[0, 0, 0]], [[0, 0, 0]], -1.0), "atomic number 0"),
        ('1\nProperties=Z:I:1:pos:R:3 pbc="F F F"\n200 0 0 0\n', "atomic number 200"),
        (_xyz_frame(["H"], [["nan", 0, 0]], [[0, 0, 0]], -1.0), "non-finite coordinates"),
        (_xyz_frame(["H"], [["inf", 0, 0]], [[0, 0, 0]], -1.0), "non-finite coordinates"),
        (_xyz_frame(["H"], [[0, 0, 0]], [[0, 0, 0]], "nan"), "non-finite energy"),
        (_xyz_frame(["H"], [[0, 0, 0]], [[0, "-inf", 0]], -1.0), "non-finite forces"),
        (f"0\n{HEADER.format(e=-1.0)}\n", "no atoms"),
        (f"2\n{HEADER.format(e=-1.0)}\nH 0 0 0 0 0 0\n", "could not parse"),  # truncated
        (f"1\n{HEADER.format(e=-1.0)}\nH 0 0 0 0 0\n", "could not parse"),  # missing column
    ],
    ids=["symbol", "Z0", "Z200", "nan-pos", "inf-pos", "nan-E", "inf-F", "empty", "trunc", "cols"],
)
def test_read_frames_rejects_bad_frame(tmp_path, text, needle):
    # The bad frame comes second so the message must carry the right index.
    path = _write(tmp_path, _good_frame() + text, name="bad_input.xyz")
    with pytest.raises(zd.InvalidFrameError) as err:
        zd.read_frames(path)
    msg = str(err.value)
    assert str(path) in msg and "frame 1" in msg and needle in msg
    assert isinstance(err.value, ValueError)


def test_read_frames_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        zd.read_frames(tmp_path / "missing.xyz")
    empty = _write(tmp_path, "", name="empty.xyz")
    with pytest.raises(zd.InvalidFrameError, match="empty.xyz: file holds no frames"):
        zd.read_frames(empty)


def test_read_frames_require_labels(tmp_path):
    path = _write(tmp_path, '1\nProperties=species:S:1:pos:R:3 pbc="F F F"\nH 0 0 0\n')
    assert len(zd.read_frames(path)) == 1  # prediction-style input without labels is fine
    with pytest.raises(zd.InvalidFrameError, match="missing energy"):
        zd.read_frames(path, labels="require")


def test_validate_frame_forces_count_mismatch():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((3, 3)))
    with pytest.raises(zd.InvalidFrameError, match=r"src.xyz: frame 4: forces have shape \(3, 3\)"):
        zd.validate_frame(atoms, 4, source="src.xyz")
    zd.validate_frame(atoms, labels="ignore")  # prediction does not look at labels
    with pytest.raises(ValueError, match="labels must be one of"):
        zd.validate_frame(atoms, labels="sometimes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- conversions


def test_atoms_to_data_and_rows(tmp_path):
    frames = zd.read_frames(_write(tmp_path, _good_frame(-3.25)))
    data = zd.atoms_to_data(frames[0], dtype=torch.float64)
    assert data.z.dtype == torch.long and data.z.tolist() == [1, 1]
    assert data.pos.dtype == torch.float64 and data.pos.shape == (2, 3)
    assert data.energy.shape == (1,) and data.energy.item() == pytest.approx(-3.25)
    assert data.forces.shape == (2, 3) and data.forces.dtype == torch.float64
    bare = zd.atoms_to_data(Atoms("H", positions=[[0, 0, 0]]))
    assert bare.pos.dtype == torch.float32 and "energy" not in bare and "forces" not in bare
    with pytest.raises(TypeError):
        zd.atoms_to_data(frames[0], dtype=torch.int64)

    row = {"z": [8, 1], "pos": [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "energy": -2.0}
    row["forces"] = [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]
    data = zd.row_to_data(row)
    assert data.z.tolist() == [8, 1] and data.pos.dtype == torch.float32
    assert data.energy.shape == (1,) and data.forces.shape == (2, 3)


def test_frames_to_batch_prediction_input():
    frames = [
        Atoms("H2O", positions=np.random.default_rng(0).normal(size=(3, 3))) for _ in range(2)
    ]
    # A stale calculator with broken forces must not block prediction.
    frames[1].calc = SinglePointCalculator(frames[1], forces=np.full((5, 3), np.nan))
    batch = zd.frames_to_batch(frames, dtype=torch.float64)
    assert batch.num_graphs == 2 and batch.pos.dtype == torch.float64
    assert batch.batch.tolist() == [0, 0, 0, 1, 1, 1]
    assert "energy" not in batch and "forces" not in batch
    assert zd.frames_to_batch(frames[0], device="cpu").num_graphs == 1

    bad_pos = Atoms("H2", positions=[[0, 0, 0], [np.inf, 0, 0]])
    with pytest.raises(zd.InvalidFrameError, match="frame 1: non-finite coordinates at atom 1"):
        zd.frames_to_batch([frames[0], bad_pos])
    with pytest.raises(zd.InvalidFrameError, match="frame 0: unknown element"):
        zd.frames_to_batch([Atoms(numbers=[0], positions=[[0, 0, 0]])])
    with pytest.raises(zd.InvalidFrameError, match="frame 0: frame has no atoms"):
        zd.frames_to_batch([Atoms()])
    with pytest.raises(ValueError, match="at least one frame"):
        zd.frames_to_batch([])


# --------------------------------------------------------------------------- splits


def test_load_rmd17_splits_synthetic(tmp_path):
    root = _synthetic_root(tmp_path)
    kw = {"root": root, "n_train": 25, "n_val": 10}
    train = zd.load_rmd17("ethanol", "train", **kw)
    val = zd.load_rmd17("ethanol", "val", **kw)
    test = zd.load_rmd17("ethanol", "test", **kw)
    assert (len(train), len(val), len(test)) == (25, 10, 7)
    assert set(_col(train, "frame_index")).isdisjoint(_col(val, "frame_index"))
    again = zd.load_rmd17("ethanol", "train", **kw)
    other_seed = zd.load_rmd17("ethanol", "train", seed=1, **kw)
    assert _col(train, "frame_index") == _col(again, "frame_index")
    assert _col(train, "frame_index") != _col(other_seed, "frame_index")
    expected = np.random.default_rng(0).permutation(40)[:25].tolist()
    assert _col(train, "frame_index") == expected
    # Each row carries its own frame's labels (energy -i for frame i in the synthetic file).
    assert _col(train, "energy") == [-float(i) for i in _col(train, "frame_index")]
    assert _col(test, "frame_index") == list(range(7))
    assert len(zd.load_rmd17("ethanol", "test", root=root, max_frames=3)) == 3
    assert train.features == zd.FEATURES
    assert train.features["pos"].feature.feature.dtype == "float64"

    graphs = zd.to_data_list(val, dtype=torch.float64)
    assert len(graphs) == 10 and graphs[0].pos.dtype == torch.float64

    with pytest.raises(ValueError, match="unknown split"):
        zd.load_rmd17("ethanol", "validation", root=root)
    with pytest.raises(ValueError, match="unknown rMD17 molecule"):
        zd.load_rmd17("water", "train", root=root)
    with pytest.raises(ValueError, match="exceeds"):
        zd.load_rmd17("ethanol", "train", root=root)  # 950 + 50 > 40
    with pytest.raises(FileNotFoundError, match="download_rmd17"):
        zd.load_rmd17("aspirin", "train", root=root)


def test_molecules():
    assert len(zd.MOLECULES) == 10 and len(set(zd.MOLECULES)) == 10
    assert {"aspirin", "ethanol", "salicylic", "azobenzene"} <= set(zd.MOLECULES)


# --------------------------------------------------------------------------- real data


@pytest.mark.data
def test_real_aspirin_splits():
    _real("rmd17/aspirin/train.xyz")
    _real("rmd17/aspirin/test.xyz")
    train = zd.load_rmd17("aspirin", "train")
    val = zd.load_rmd17("aspirin", "val")
    test = zd.load_rmd17("aspirin", "test")
    assert (len(train), len(val), len(test)) == (950, 50, 1800)
    assert set(_col(train, "frame_index")).isdisjoint(_col(val, "frame_index"))
    assert max(_col(train, "frame_index") + _col(val, "frame_index")) < 1200
    assert _col(zd.load_rmd17("aspirin", "val"), "frame_index") == _col(val, "frame_index")
    for ds in (train, val, test):
        arrays = ds.with_format("numpy")
        z = np.stack(_col(arrays, "z"))
        assert z.shape[1] == 21 and set(np.unique(z)) == {1, 6, 8}
        assert np.isfinite(_col(arrays, "energy")).all()
        forces = np.stack([np.stack(f) for f in _col(ds, "forces")[:50]])
        assert forces.shape == (50, 21, 3) and np.isfinite(forces).all()
    # Energies of a 21-atom organic molecule at PBE level, in eV (not kcal/mol or Hartree).
    assert -17700 < min(_col(test, "energy")) < max(_col(test, "energy")) < -17500


@pytest.mark.data
def test_real_aspirin_batch_and_speed():
    import time

    path = _real("rmd17/aspirin/train.xyz")
    start = time.perf_counter()
    frames = zd.read_frames(path, labels="require")
    assert time.perf_counter() - start < 10.0  # a couple of seconds normally; slack for CI
    assert len(frames) == 1200 and all(len(a) == 21 for a in frames)
    batch = zd.frames_to_batch(frames[:3])
    assert batch.num_graphs == 3 and batch.num_nodes == 63
    assert batch.batch.shape == (63,) and batch.batch.bincount().tolist() == [21, 21, 21]
    assert batch.pos.dtype == torch.float32


@pytest.mark.data
def test_real_ethanol_small():
    _real("rmd17/ethanol/test.xyz")
    test = zd.load_rmd17("ethanol", "test", max_frames=5)
    assert len(test) == 5 and all(len(z) == 9 for z in _col(test, "z"))
    data = zd.row_to_data(test[0])
    assert data.pos.shape == (9, 3) and data.forces.shape == (9, 3)


# --------------------------------------------------------------------------- download


class _Server:
    """A local HTTP server: ``routes[path] = (body, announced length or None)``."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int | None]] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, announced = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(announced or len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch) -> Iterator[_Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # 127.0.0.1 must not go through a proxy
    srv = _Server()
    yield srv
    srv.close()


def _npz_bytes(n_frames: int = 3) -> tuple[bytes, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    arrays = {
        "nuclear_charges": np.array([6, 6, 8, 1, 1, 1, 1, 1, 1], dtype=np.int64),
        "coords": rng.normal(size=(n_frames, 9, 3)),
        "energies": -97000.0 + rng.normal(size=n_frames),
        "forces": rng.normal(size=(n_frames, 9, 3)) * 10,
        "old_indices": np.arange(n_frames) * 7,
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), arrays


def _tar_bz2(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _checks(blob: bytes) -> dict[str, object]:
    return {
        "expected_sha256": hashlib.sha256(blob).hexdigest(),
        "expected_md5": hashlib.md5(blob).hexdigest(),
        "expected_size": len(blob),
        "progress": False,
        "timeout": 10.0,
    }


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part"))


def test_download_rmd17_roundtrip(server, tmp_path):
    npz, arrays = _npz_bytes(4)
    blob = _tar_bz2(
        {"rmd17/npz_data/rmd17_ethanol.npz": npz, "rmd17/splits/index_train_01.csv": b"0\n1\n"}
    )
    server.routes["/rmd17.tar.bz2"] = (blob, None)
    out = zd.download_rmd17(
        tmp_path, ["ethanol"], url=server.url + "/rmd17.tar.bz2", **_checks(blob)
    )
    assert out == tmp_path / "rmd17"
    assert (out / "rmd17.tar.bz2").read_bytes() == blob
    assert (out / "splits" / "index_train_01.csv").exists()
    assert _leftovers(tmp_path) == []

    frames = zd.read_frames(out / "ethanol" / "all.xyz", labels="require")
    assert len(frames) == 4 and frames[0].get_chemical_formula() == "C2H6O"
    ev = kcal / mol
    assert ev == pytest.approx(0.0433641043, rel=1e-8)
    np.testing.assert_allclose(frames[2].positions, arrays["coords"][2], atol=1e-9)
    assert frames[2].get_potential_energy() == pytest.approx(arrays["energies"][2] * ev, abs=1e-9)
    np.testing.assert_allclose(frames[2].get_forces(), arrays["forces"][2] * ev, atol=1e-9)
    assert frames[3].info["old_index"] == 21

    # load_rmd17 falls back to all.xyz when no curated train/test files exist.
    kw = {"root": tmp_path, "n_train": 2, "n_val": 1}
    train = zd.load_rmd17("ethanol", "train", **kw)
    val = zd.load_rmd17("ethanol", "val", **kw)
    test = zd.load_rmd17("ethanol", "test", **kw)
    indices = _col(train, "frame_index") + _col(val, "frame_index") + _col(test, "frame_index")
    assert sorted(indices) == [0, 1, 2, 3]

    # Outputs exist: a second call must not touch the network.
    server.routes.clear()
    assert zd.download_rmd17(tmp_path, ["ethanol"], url=server.url + "/gone") == out


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncated", "server announces"),
        ("truncated-no-size-check", "sha256 mismatch"),
        ("corrupted", "sha256 mismatch"),
        ("short-body", "truncated download"),
    ],
)
def test_download_rmd17_rejects_bad_archive(server, tmp_path, damage, reason):
    blob = _tar_bz2({"rmd17/npz_data/rmd17_ethanol.npz": _npz_bytes()[0]})
    half = len(blob) // 2
    checks = _checks(blob)
    if damage.startswith("truncated"):
        served, announced = blob[:half], None
        if damage == "truncated-no-size-check":
            checks["expected_size"] = None
    elif damage == "corrupted":  # same size, one byte flipped
        served, announced = blob[:half] + bytes([blob[half] ^ 0xFF]) + blob[half + 1 :], None
    else:  # the server promises the full length but the connection ends early
        served, announced = blob[:half], len(blob)
    server.routes["/a.tar.bz2"] = (served, announced)
    with pytest.raises(zd.DownloadError, match=reason):
        zd.download_rmd17(tmp_path, ["ethanol"], url=server.url + "/a.tar.bz2", **checks)
    folder = tmp_path / "rmd17"
    assert not (folder / "rmd17.tar.bz2").exists()
    assert not (folder / "ethanol" / "all.xyz").exists()
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in folder.iterdir()) == []


def test_download_rmd17_mirror_fallback_and_stale_archive(server, tmp_path):
    blob = _tar_bz2({"rmd17/npz_data/rmd17_ethanol.npz": _npz_bytes()[0]})
    server.routes["/mirror.tar.bz2"] = (blob, None)
    folder = tmp_path / "rmd17"
    folder.mkdir()
    (folder / "rmd17.tar.bz2").write_bytes(b"not the archive")  # stale leftover
    urls = [server.url + "/missing", server.url + "/mirror.tar.bz2"]
    zd.download_rmd17(tmp_path, "ethanol", url=urls, **_checks(blob))
    assert (folder / "rmd17.tar.bz2").read_bytes() == blob
    assert len(zd.read_frames(folder / "ethanol" / "all.xyz")) == 3

    server.routes.clear()
    with pytest.raises(zd.DownloadError, match="404"):
        zd.download_rmd17(tmp_path / "other", "ethanol", url=urls, **_checks(blob))
    with pytest.raises(ValueError, match="unknown rMD17 molecule"):
        zd.download_rmd17(tmp_path, ["water"], url=urls)


@pytest.mark.parametrize(
    "name", ["../evil.npz", "/tmp/zoo_evil_abs.npz", "rmd17/../../evil.npz"], ids=str
)
def test_download_rmd17_refuses_unsafe_members(server, tmp_path, name):
    blob = _tar_bz2({name: b"evil", "rmd17/npz_data/rmd17_ethanol.npz": _npz_bytes()[0]})
    server.routes["/x.tar.bz2"] = (blob, None)
    root = tmp_path / "root"
    with pytest.raises(zd.DownloadError, match="refusing archive member"):
        zd.download_rmd17(root, ["ethanol"], url=server.url + "/x.tar.bz2", **_checks(blob))
    assert not (tmp_path / "evil.npz").exists() and not Path("/tmp/zoo_evil_abs.npz").exists()
    assert not (root / "rmd17" / "ethanol" / "all.xyz").exists()


def test_download_rmd17_refuses_links(server, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        link = tarfile.TarInfo("rmd17/npz_data/rmd17_ethanol.npz")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    blob = buf.getvalue()
    server.routes["/l.tar.bz2"] = (blob, None)
    with pytest.raises(zd.DownloadError, match="not a plain file"):
        zd.download_rmd17(tmp_path, ["ethanol"], url=server.url + "/l.tar.bz2", **_checks(blob))


def test_published_checksum_constants():
    assert zd.RMD17_URL == "https://figshare.com/ndownloader/files/23950376"
    assert len(zd.RMD17_SHA256) == 64 and zd.RMD17_SHA256.startswith("cddeea2ec2c4")
    assert len(zd.RMD17_MD5) == 32 and zd.RMD17_SIZE == 1_066_301_513
