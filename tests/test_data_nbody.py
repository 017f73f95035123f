"""Tests of zoo.data.nbody: the charged-particle simulator, the cached splits and conversions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from zoo.data import nbody

DT = 0.001
CLIP = 0.1 / DT


# --------------------------------------------------------------------------- helpers


def _reference_loop(pos0, vel0, charge, n_steps: int, sample_every: int):
    """One trajectory, written the way the reference writes it (particles in columns).

    Kick with F(x_0), then drift, record, kick; forces from the full q_i q_j / r^3 matrix with
    a zero diagonal, clipped elementwise. Only the distance formula differs from the reference
    (direct differences instead of |a|^2 + |b|^2 - 2ab, which just loses digits).
    """
    loc, vel = pos0.T.copy(), vel0.T.copy()  # (3, n)
    edges = charge @ charge.T

    def force():
        diff = loc[:, :, None] - loc[:, None, :]  # (3, n, n): x_i - x_j
        dist3 = np.sqrt((diff**2).sum(axis=0)) ** 3
        np.fill_diagonal(dist3, np.inf)
        return np.clip((edges / dist3 * diff).sum(axis=-1), -CLIP, CLIP)

    frames = []
    vel += DT * force()
    for i in range(1, n_steps + 1):
        loc += DT * vel
        if i % sample_every == 0:
            frames.append((loc.T.copy(), vel.T.copy()))
        vel += DT * force()
    return np.stack([p for p, _ in frames]), np.stack([v for _, v in frames])


def _synchronised(sim: dict, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Velocities at the time of the positions (the stored ones lag half a step), and whether
    the force there is below the clip."""
    forces = nbody.coulomb_forces(sim["pos"][:, frame], sim["charge"])
    below = np.abs(forces).max(axis=(1, 2)) <= CLIP
    return sim["vel"][:, frame] + 0.5 * DT * np.clip(forces, -CLIP, CLIP), below


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    """A root with the full generated dataset (about 5 s on one core)."""
    root = tmp_path_factory.mktemp("zoo-cache")
    nbody.generate_nbody(root)
    return root


# --------------------------------------------------------------------------- physics


def test_energy_and_forces_of_two_charges():
    pos = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    vel = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # kinetic 1, potential q1 q2 / r = -0.5
    assert nbody.energy(pos, vel, np.array([[1.0], [-1.0]])) == pytest.approx(0.5)
    assert nbody.energy(pos, vel, np.array([1.0, 1.0]), interaction_strength=2.0) == 2.0
    # like charges repel: particle 0 is pushed towards -x with 1 / r^2 = 0.25
    forces = nbody.coulomb_forces(pos, np.array([1.0, 1.0]))
    np.testing.assert_allclose(forces, [[-0.25, 0, 0], [0.25, 0, 0]])
    np.testing.assert_allclose(nbody.coulomb_forces(pos, np.array([1.0, -1.0])), -forces)
    np.testing.assert_array_equal(nbody.momentum(vel), [1.0, 1.0, 0.0])


def test_simulator_matches_the_reference_loop():
    sim = nbody.simulate_charged(6, seed=5, n_steps=300, sample_every=100)
    np.testing.assert_array_equal(sim["step"], [100, 200, 300])
    for t in range(6):
        pos, vel = _reference_loop(
            sim["initial_pos"][t], sim["initial_vel"][t], sim["charge"][t], 300, 100
        )
        # Same integrator, only the order of the force sums differs: rounding level.
        np.testing.assert_allclose(sim["pos"][t], pos, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(sim["vel"][t], vel, rtol=1e-10, atol=1e-10)


def test_initial_state_distribution():
    sim = nbody.simulate_charged(2000, seed=0, n_steps=1, sample_every=1)
    assert sim["pos"].shape == (2000, 1, 5, 3) and sim["charge"].shape == (2000, 5, 1)
    assert set(np.unique(sim["charge"])) == {-1.0, 1.0}
    assert abs(sim["charge"].mean()) < 0.03
    np.testing.assert_allclose(np.linalg.norm(sim["initial_vel"], axis=-1), 0.5, rtol=1e-12)
    assert abs(sim["initial_pos"].std() - 1.0) < 0.02 and abs(sim["initial_pos"].mean()) < 0.02


def test_energy_is_conserved_while_the_clip_is_inactive():
    """Energy drift over the dataset's window, frame 30 -> 40 (1000 steps).

    Measured (seeds 7, 11, 12; 400 trajectories each, ~80% unclipped in the window): median
    relative drift 2-4e-8, worst 5e-5..2e-4 (close encounters just below the clip); relative to
    K + |U| at frame 30, since E itself can be near 0. With the stored, half-step-lagged
    velocities the worst is ~1e-2, and where the clip acts the median drift is ~0.2: the
    tolerances below sit well between.
    """
    sim = nbody.simulate_charged(400, seed=7)
    v30, below30 = _synchronised(sim, 30)
    v40, below40 = _synchronised(sim, 40)
    unclipped = ~sim["clipped"][:, 31:].any(axis=1) & below30 & below40
    assert unclipped.sum() > 200
    e30 = nbody.energy(sim["pos"][:, 30], v30, sim["charge"])
    e40 = nbody.energy(sim["pos"][:, 40], v40, sim["charge"])
    kinetic = 0.5 * (v30**2).sum(axis=(1, 2))
    drift = np.abs(e40 - e30) / (kinetic + np.abs(e30 - kinetic))
    assert np.median(drift[unclipped]) < 1e-6
    assert drift[unclipped].max() < 1e-3
    assert np.median(drift[~unclipped]) > 1e-2  # the clip detection is what separates them


def test_momentum_is_conserved_while_the_clip_is_inactive():
    sim = nbody.simulate_charged(200, seed=7)
    never_clipped = ~sim["clipped"].any(axis=1)
    assert 50 < never_clipped.sum() < 200
    change = np.abs(nbody.momentum(sim["vel"][:, -1]) - nbody.momentum(sim["initial_vel"]))
    assert change.max(axis=1)[never_clipped].max() < 1e-12
    assert change.max(axis=1)[~never_clipped].max() > 1e-6


def test_simulation_is_deterministic_and_prefix_stable():
    a = nbody.simulate_charged(8, seed=1, n_steps=200)
    b = nbody.simulate_charged(8, seed=1, n_steps=200)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    small = nbody.simulate_charged(3, seed=1, n_steps=200)
    np.testing.assert_array_equal(small["pos"], a["pos"][:3])
    np.testing.assert_array_equal(small["charge"], a["charge"][:3])
    other = nbody.simulate_charged(8, seed=2, n_steps=200)
    assert not np.isclose(other["initial_pos"], a["initial_pos"]).any()


def test_simulator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multiple of sample_every"):
        nbody.simulate_charged(2, seed=0, n_steps=150, sample_every=100)
    with pytest.raises(ValueError, match="n_trajectories"):
        nbody.simulate_charged(-1, seed=0)


# --------------------------------------------------------------------------- dataset


def test_generated_splits_match_checksums_and_shapes(cache_root):
    folder = nbody.nbody_cache_dir(cache_root)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == nbody.NBODY_SHA256
    assert manifest["seeds"] == nbody.NBODY_SPLIT_SEEDS
    seen = {}
    for split, size in (("train", 3000), ("val", 2000), ("test", 2000)):
        ds = nbody.load_nbody(split, root=cache_root)
        assert len(ds) == size
        assert ds.features == nbody.NBODY_FEATURES
        columns = nbody._columns(ds)
        assert nbody._digest(columns) == nbody.NBODY_SHA256[split]
        assert columns["pos"].shape == columns["target"].shape == (size, 5, 3)
        assert columns["charge"].shape == (size, 5, 1)
        np.testing.assert_array_equal(columns["index"], np.arange(size))
        seen[split] = columns["pos"][:5]
    assert not np.isclose(seen["train"], seen["test"]).any()

    # The rows are frames 30 and 40 of simulate_charged with the split's seed.
    sim = nbody.simulate_charged(4, nbody.NBODY_SPLIT_SEEDS["val"])
    columns = nbody._columns(nbody.load_nbody("val", root=cache_root, max_samples=4))
    np.testing.assert_array_equal(columns["pos"], sim["pos"][:, 30])
    np.testing.assert_array_equal(columns["vel"], sim["vel"][:, 30])
    np.testing.assert_array_equal(columns["target"], sim["pos"][:, 40])
    np.testing.assert_array_equal(columns["charge"], sim["charge"])


def test_sound_cache_is_reused(cache_root, monkeypatch):
    def fail(split):
        raise AssertionError("regenerated a sound cache")

    monkeypatch.setattr(nbody, "_split_arrays", fail)
    assert nbody.generate_nbody(cache_root) == nbody.nbody_cache_dir(cache_root)
    assert len(nbody.load_nbody("test", root=cache_root, max_samples=3)) == 3


def test_damaged_caches_are_detected(cache_root, tmp_path):
    folder = nbody.nbody_cache_dir(tmp_path)
    shutil.copytree(nbody.nbody_cache_dir(cache_root), folder)
    assert nbody._cache_problem(folder) is None

    arrow = next((folder / "val").glob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[len(data) // 2] ^= 0x10  # a flipped bit in the middle of the float data
    arrow.write_bytes(bytes(data))
    assert "'val'" in nbody._cache_problem(folder)
    assert nbody._cache_problem(folder, ("test",)) is None  # splits are verified separately

    (folder / "manifest.json").write_text('{"name": "nbody-charged-v1"')
    assert "manifest.json cannot be read" in nbody._cache_problem(folder)


def test_incomplete_cache_is_regenerated(cache_root, tmp_path):
    folder = nbody.nbody_cache_dir(tmp_path)
    shutil.copytree(nbody.nbody_cache_dir(cache_root), folder)
    next((folder / "train").glob("*.arrow")).unlink()
    with pytest.warns(UserWarning, match="unusable.*regenerating"):
        ds = nbody.load_nbody("train", root=tmp_path, max_samples=2)
    assert len(ds) == 2
    assert nbody._cache_problem(folder) is None
    assert not [p.name for p in tmp_path.iterdir() if p.name != folder.name]  # no leftovers


def test_interrupted_write_leaves_old_cache_or_nothing(tmp_path, monkeypatch):
    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", crash)
    arrays = {"pos": np.zeros((1, 5, 3)), "vel": np.zeros((1, 5, 3))}
    arrays.update(charge=np.ones((1, 5, 1)), target=np.zeros((1, 5, 3)), index=np.zeros(1, int))
    folder = tmp_path / nbody.NBODY_NAME
    with pytest.raises(KeyboardInterrupt):
        nbody._write_atomically(folder, {"train": arrays}, {})
    assert list(tmp_path.iterdir()) == []

    folder.mkdir()
    (folder / "manifest.json").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        nbody._write_atomically(folder, {"train": arrays}, {})
    assert list(tmp_path.iterdir()) == [folder]
    assert (folder / "manifest.json").read_text() == "old"


def test_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    # Smaller splits stand in for a numpy that draws different numbers (and keep this fast).
    monkeypatch.setattr(nbody, "NBODY_SIZES", {"train": 2, "val": 3, "test": 2})
    with pytest.raises(RuntimeError, match=r"differ from the stored checksums.*numpy"):
        nbody.generate_nbody(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_split_and_arguments():
    with pytest.raises(ValueError, match=r"unknown N-body split 'valid' \(use 'val'\)"):
        nbody.load_nbody("valid")
    with pytest.raises(ValueError, match="expected one of"):
        nbody.load_nbody("training")
    with pytest.raises(ValueError, match="max_samples"):
        nbody.load_nbody("train", max_samples=-1)


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "env"))
    assert nbody.nbody_cache_dir() == tmp_path / "env" / "nbody-charged-v1"
    assert nbody.nbody_cache_dir(tmp_path / "arg") == tmp_path / "arg" / "nbody-charged-v1"
    monkeypatch.setenv("ZOO_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert nbody.nbody_cache_dir() == tmp_path / "home" / ".cache" / "zoo" / "nbody-charged-v1"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nbody_to_data_list(cache_root, dtype):
    ds = nbody.load_nbody("test", root=cache_root, max_samples=4)
    graphs = nbody.nbody_to_data_list(ds, dtype=dtype)
    assert len(graphs) == 4
    columns = nbody._columns(ds)
    for row, graph in enumerate(graphs):
        for name, shape in (
            ("pos", (5, 3)),
            ("vel", (5, 3)),
            ("charge", (5, 1)),
            ("target", (5, 3)),
        ):
            value = getattr(graph, name)
            assert value.shape == shape and value.dtype == dtype
            np.testing.assert_array_equal(
                value.numpy(), columns[name][row].astype(value.numpy().dtype)
            )
        assert graph.sample.dtype == torch.long and graph.sample.tolist() == [row]
    batch = Batch.from_data_list(graphs)
    assert batch.pos.shape == (20, 3) and batch.sample.tolist() == [0, 1, 2, 3]
    with pytest.raises(TypeError, match="floating-point"):
        nbody.nbody_to_data_list(ds, dtype=torch.int64)


def test_command_line(cache_root, capsys):
    assert nbody.main(["--root", str(cache_root)]) == 0
    out = capsys.readouterr().out
    assert str(nbody.nbody_cache_dir(cache_root)) in out
    assert nbody.NBODY_SHA256["test"] in out and "3000" in out
