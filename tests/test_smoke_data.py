"""Tests of zoo.data.smoke: the PhiFlow simulator, the task table, the splits' windows and the
cache (written from small synthetic simulations: the real set takes hours to simulate)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from zoo.data import smoke
from zoo.relax.representations import C4FieldRep

needs_phiflow = pytest.mark.skipif(
    importlib.util.find_spec("phi") is None,
    reason="PhiFlow is not installed (pip install 'zoo[smoke]'); the simulator cannot run",
)


# --- simulator ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_runs() -> dict[str, np.ndarray]:
    """Two 6-step 32 x 32 plumes: inflow at the bottom wall, and the same turned a quarter."""
    if importlib.util.find_spec("phi") is None:
        pytest.skip("PhiFlow is not installed (pip install 'zoo[smoke]')")
    settings = dict(resolution=32, n_steps=6, radius=3)
    return {
        "up": smoke.simulate_smoke((16, 3), (0, 0.05), **settings),
        "up_again": smoke.simulate_smoke((16, 3), (0, 0.05), **settings),
        "left": smoke.simulate_smoke((29, 16), (-0.05, 0), **settings),
    }


@needs_phiflow
def test_short_simulation_is_deterministic(short_runs) -> None:
    """Same settings, bit-identical frames; finite, moving, float32, [steps, 2, n, n]."""
    up = short_runs["up"]
    assert up.shape == (6, 2, 32, 32) and up.dtype == np.float32
    assert np.isfinite(up).all() and np.abs(up).max() > 0
    assert np.array_equal(up, short_runs["up_again"])
    assert smoke.frames_digest(up) == smoke.frames_digest(short_runs["up_again"])
    # Buoyancy (0, +): the plume rises, in +y (the row index) above the inflow.
    assert up[-1, 1, 5:12, 14:18].mean() > 0


@needs_phiflow
def test_quarter_turn_of_the_setup_turns_the_flow(short_runs) -> None:
    """Turning inflow and buoyancy by 90 degrees turns the simulated field, exactly, as
    ``C4FieldRep("vector").rotate`` turns arrays, once the stored x component (on the cells'
    left faces) is moved by one cell: the staggered storage, not the physics, breaks the
    array-level symmetry."""
    turned = C4FieldRep("vector", 1).rotate(torch.from_numpy(short_runs["up"]).double(), 1)
    turned, left = turned.numpy(), short_runs["left"].astype(np.float64)
    np.testing.assert_allclose(turned[:, 1], left[:, 1], atol=1e-6)
    np.testing.assert_allclose(turned[:, 0, :, :-1], left[:, 0, :, 1:], atol=1e-6)
    assert np.abs(turned[:, 0] - left[:, 0]).max() > 1e-2  # without the shift they differ


# --- task table and splits -----------------------------------------------------------------


def test_rotation_task_table() -> None:
    """k = 1..36, j = (k - 1) mod 4, inflows at the four walls, buoyancy 0.01 k away from the
    wall, 10% stronger for j = 2."""
    tasks = smoke.rotation_tasks()
    assert [t.k for t in tasks] == list(range(1, 37))
    assert [t.j for t in tasks] == [(k - 1) % 4 for k in range(1, 37)]
    first = smoke.rotation_task(1)
    assert (first.j, first.inflow, first.buoyancy) == (0, (32, 5), (0.0, 0.01))
    assert smoke.rotation_task(2).inflow == (59, 32)
    assert smoke.rotation_task(2).buoyancy == pytest.approx((-0.02, 0.0))
    assert smoke.rotation_task(3).inflow == (32, 59)
    assert smoke.rotation_task(3).buoyancy == pytest.approx((0.0, -0.033))  # 1.1 x 0.01 x 3
    assert smoke.rotation_task(36).buoyancy == pytest.approx((0.36, 0.0))
    for t in tasks:
        strength = float(np.hypot(*t.buoyancy))
        assert strength == pytest.approx(0.01 * t.k * (1.1 if t.j == 2 else 1.0))
        # The buoyancy points from the wall of the inflow towards the centre.
        towards_centre = np.subtract((32, 32), t.inflow)
        assert np.dot(t.buoyancy, towards_centre) > 0
    with pytest.raises(ValueError, match="1..36"):
        smoke.rotation_task(0)


def test_task_split_partitions_the_simulations() -> None:
    """25 training, 10 Domain and 1 unused simulation: each k once, with its own j."""
    everything = smoke.TRAIN_TASKS + smoke.DOMAIN_TASKS + smoke.UNUSED_TASKS
    assert (len(smoke.TRAIN_TASKS), len(smoke.DOMAIN_TASKS)) == (25, 10)
    assert sorted(k for k, _ in everything) == list(range(1, 37))
    for k, j in everything:
        assert smoke.rotation_task(k).j == j


def test_window_arithmetic_and_split_sizes() -> None:
    """Input frames [s + 2, s + 12), then the targets; 4000 / 1000 / 1250 / 1000 samples; the
    last window of every split fits in the 309 stored frames."""
    assert smoke.window(0, 6) == (slice(2, 12), slice(12, 18))
    assert smoke.window(159, 6) == (slice(161, 171), slice(171, 177))
    sizes = {name: spec.n_samples for name, spec in smoke.SMOKE_SPLITS.items()}
    assert sizes == {"train": 4000, "val": 1000, "future": 1250, "domain": 1000}
    assert {name: spec.n_targets for name, spec in smoke.SMOKE_SPLITS.items()} == {
        "train": 6, "val": 6, "future": 20, "domain": 20}
    for spec in smoke.SMOKE_SPLITS.values():
        assert smoke.window(spec.starts[-1], spec.n_targets)[1].stop <= smoke.N_FRAMES
    assert smoke.window(249, 20)[1].stop == 281


# --- cache ---------------------------------------------------------------------------------


def fake_frames(k: int, n_frames: int = smoke.N_FRAMES, size: int = 4) -> np.ndarray:
    """Synthetic 'simulation' k: frame t, component c holds 1000 k + 10 t + c everywhere."""
    t = np.arange(n_frames, dtype=np.float32)[:, None, None, None]
    c = np.arange(2, dtype=np.float32)[None, :, None, None]
    return np.broadcast_to(1000 * k + 10 * t + c, (n_frames, 2, size, size)).copy()


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> str:
    """A cache of 36 tiny synthetic simulations, written by the real writer."""
    root = tmp_path_factory.mktemp("smoke-cache")
    sims = {k: fake_frames(k) for k in range(1, 37)}
    smoke.write_cache(smoke.smoke_cache_dir(root), sims, {"note": "synthetic"})
    return str(root)


def test_cache_round_trip_and_lazy_windows(fake_root: str) -> None:
    """Every split loads from the cache; a sample is exactly the frames its window names."""
    manifest = json.loads((smoke.smoke_cache_dir(fake_root) / "manifest.json").read_text())
    assert manifest["name"] == smoke.SMOKE_NAME and len(manifest["tasks"]) == 36
    assert manifest["tasks"][0]["sha256"] == smoke.frames_digest(fake_frames(1))
    frames = smoke.load_frames([k for k, _ in smoke.TRAIN_TASKS], fake_root)
    train = smoke.load_smoke("train", frames=frames)
    assert len(train) == 4000
    x, y, index = train[161]  # the second training simulation, start 1
    k, start = train.locate(161)
    assert (k, start, index) == (smoke.TRAIN_TASKS[1][0], 1, 161)
    assert x.shape == (20, 4, 4) and y.shape == (6, 2, 4, 4)
    # channel 2 t + c of the input is frame start + 2 + t, component c
    assert x[:, 0, 0].tolist() == [1000 * k + 10 * (start + 2 + t) + c
                                   for t in range(10) for c in range(2)]
    assert y[:, 0, 0, 0].tolist() == [1000 * k + 10 * (start + 12 + t) for t in range(6)]
    # The windows share the stored frames: nothing per sample is materialised.
    assert train.frames[k].data_ptr() == frames[k].data_ptr()
    domain = smoke.load_smoke("domain", root=fake_root, dtype=torch.float64)
    x, y, _ = domain[len(domain) - 1]
    assert x.dtype == torch.float64 and y.shape == (20, 2, 4, 4)
    assert domain.locate(len(domain) - 1) == (smoke.DOMAIN_TASKS[-1][0], 99)
    with pytest.raises(ValueError, match="unknown smoke split"):
        smoke.load_smoke("test", root=fake_root)


def test_damaged_or_missing_cache_is_reported(fake_root: str, tmp_path) -> None:
    """No cache: FileNotFoundError saying how to generate it; a changed simulation fails its
    checksum."""
    with pytest.raises(FileNotFoundError, match="python -m zoo.data.smoke"):
        smoke.load_smoke("train", root=tmp_path)
    sims = {k: fake_frames(k) for k in range(1, 37)}
    folder = smoke.smoke_cache_dir(tmp_path)
    smoke.write_cache(folder, sims, {})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["tasks"][0]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RuntimeError, match="checksum"):
        smoke.load_frames([1], tmp_path)


def test_generation_stages_resumes_and_checks_the_reference(tmp_path, monkeypatch) -> None:
    """generate_smoke with a fast fake simulator: --only stages one simulation; the full run
    simulates only what is missing, writes the cache and clears the staging folder; the
    reference checksum of simulation 1 is enforced unless verify=False."""
    calls: list[int] = []

    def fake_simulate(k: int) -> np.ndarray:
        calls.append(k)
        return fake_frames(k, size=2)

    monkeypatch.setattr(smoke, "simulate_task", fake_simulate)
    lines: list[str] = []
    staged = smoke.generate_smoke(tmp_path, only=5, verify=False, log=lines.append)
    assert staged.name == "k05.npy" and staged.is_file() and calls == [5]
    assert lines and "simulation  5" in lines[0]
    with pytest.raises(RuntimeError, match="sha256"):
        smoke.generate_smoke(tmp_path, only=1, log=lines.append)  # fake data, real reference
    calls.clear()
    folder = smoke.generate_smoke(tmp_path, verify=False, log=lines.append)
    assert sorted(calls) == [k for k in range(2, 37) if k != 5]  # 1 and 5 were staged
    assert folder == smoke.smoke_cache_dir(tmp_path) and not (
        tmp_path / f".{smoke.SMOKE_NAME}.partial").exists()
    assert smoke.load_frames([5], tmp_path)[5].shape == (smoke.N_FRAMES, 2, 2, 2)
    calls.clear()
    assert smoke.generate_smoke(tmp_path, verify=False) == folder and calls == []  # cached
