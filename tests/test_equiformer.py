"""Physics and consistency tests of the Equiformer energy/force model.

Symmetry, conservative forces, batching, smoothness at the cutoff, input validation and the size
of the paper configuration. Tests on real data use the rMD17 aspirin frames of the shared data
(``zoo.data.data_root()``) and skip with a message where they are missing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from torch_geometric.data import Batch, Data

import zoo
from zoo import create_model
from zoo.data import frames_to_batch
from zoo.testing import equivariance_report

# Equiformer paper (Liao & Smidt, ICLR 2023), MD17 L_max = 2: ~3.4-3.5M parameters. Counting the
# layers of the reference code (atomicarchitects/equiformer, graph_attention_transformer_
# nonlinear_exp_l2_md17 with 32 basis functions) gives 3,496,001.
PAPER_PARAMS = 3.4e6


def _model(preset: str, dtype: torch.dtype = torch.float64, seed: int = 0, **overrides):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = create_model("equiformer", preset=preset, **overrides)
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return _model("tiny")


@pytest.fixture(scope="module")
def tiny32(tiny) -> torch.nn.Module:
    return tiny.clone(dtype=torch.float32)


@pytest.fixture(scope="module")
def predictions(tiny, tiny32, aspirin) -> dict:
    """``zoo.predict`` batched and one by one, in float64 and float32, on 3 real frames and
    molecules of 9, 1 and 2 atoms."""
    frames = aspirin[:3] + _mixed_sizes(aspirin)[1:]
    return {
        (dtype, batch_size): zoo.predict(model, frames, batch_size=batch_size)
        for dtype, model in ((torch.float64, tiny), (torch.float32, tiny32))
        for batch_size in (32, 1)
    }


def _mixed_sizes(aspirin: list[Atoms]) -> list[Atoms]:
    """Molecules of 21, 9, 1 and 2 atoms (the last with no neighbour within the cutoff)."""
    part = aspirin[1][:9]
    single = Atoms("O", positions=[[0.3, -0.2, 0.1]])
    far_pair = Atoms("CH", positions=[[0.0, 0.0, 0.0], [0.0, 7.0, 0.0]])
    return [aspirin[0], part, single, far_pair]


# --------------------------------------------------------------------------- symmetry


@pytest.mark.data
def test_equivariance_on_real_aspirin_tiny(tiny, aspirin) -> None:
    batch = frames_to_batch(aspirin[:3], dtype=torch.float64)
    report = equivariance_report(tiny, inputs=batch)
    print("tiny, 3 aspirin frames:", {k: f"{v:.1e}" for k, v in report.items()})
    assert {"rotation0/energy", "translation/forces", "permutation/forces",
            "combined/forces"} <= set(report)
    assert max(report.values()) < 1e-10, report


@pytest.mark.data
@pytest.mark.parametrize("preset", ["small", "small-l1", "medium-l1"])
def test_equivariance_on_real_aspirin_trained_presets(aspirin, preset: str) -> None:
    """The presets recipes train (tiny has its own test): one frame, float64."""
    model = _model(preset)
    batch = frames_to_batch(aspirin[:1], dtype=torch.float64)
    report = equivariance_report(model, inputs=batch)
    print(f"{preset}, 1 aspirin frame:", {k: f"{v:.1e}" for k, v in report.items()})
    assert max(report.values()) < 1e-10, report


# --------------------------------------------------------------------------- conservative forces


@pytest.mark.data
def test_forces_are_minus_energy_gradient(tiny, aspirin) -> None:
    atoms = aspirin[0]
    pos = torch.as_tensor(atoms.positions, dtype=torch.float64)
    z = torch.as_tensor(atoms.numbers)
    forces = tiny(Batch.from_data_list([Data(z=z, pos=pos)]))["forces"].detach()
    checks = [(0, 0), (4, 1), (9, 2), (13, 0), (20, 1)]  # (atom, component)
    h = 1e-4
    displaced = []
    for atom, k in checks:
        for sign in (1.0, -1.0):
            moved = pos.clone()
            moved[atom, k] += sign * h
            displaced.append(Data(z=z, pos=moved))
    energy = tiny(Batch.from_data_list(displaced))["energy"].detach().view(-1, 2)
    finite_difference = (energy[:, 0] - energy[:, 1]) / (2 * h)
    expected = -torch.stack([forces[atom, k] for atom, k in checks])
    scale = forces.abs().max()
    error = (finite_difference - expected).abs() / torch.maximum(expected.abs(), 1e-2 * scale)
    print("finite differences", finite_difference.tolist(), "-forces", expected.tolist())
    assert float(error.max()) < 1e-6, error


# --------------------------------------------------------------------------- batching


def _assert_close_predictions(actual: dict, expected: dict, tolerance: float) -> None:
    """Energies and forces equal up to ``tolerance`` times the largest magnitude."""
    energy_scale = np.abs(expected["energy"]).max()
    np.testing.assert_allclose(actual["energy"], expected["energy"], rtol=0,
                               atol=tolerance * energy_scale)
    force_scale = max(np.abs(f).max() for f in expected["forces"])
    for a, e in zip(actual["forces"], expected["forces"], strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=tolerance * force_scale)


@pytest.mark.data
@pytest.mark.parametrize(
    "dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["f64", "f32"]
)
def test_batched_equals_one_by_one(predictions, dtype, tolerance) -> None:
    _assert_close_predictions(predictions[dtype, 32], predictions[dtype, 1], tolerance)


@pytest.mark.data
def test_mixed_sizes_in_one_batch_match_each_alone(tiny, aspirin) -> None:
    frames = _mixed_sizes(aspirin)
    out = tiny(frames_to_batch(frames, dtype=torch.float64))
    start = 0
    for i, atoms in enumerate(frames):
        single = tiny(frames_to_batch([atoms], dtype=torch.float64))
        n = len(atoms)
        torch.testing.assert_close(out["energy"][i : i + 1], single["energy"],
                                   rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out["forces"][start : start + n], single["forces"],
                                   rtol=1e-10, atol=1e-12)
        start += n
    # The isolated atom and the pair beyond the cutoff feel no force.
    assert out["forces"][30:].abs().max() == 0


@pytest.mark.data
def test_float32_agrees_with_float64(predictions) -> None:
    _assert_close_predictions(predictions[torch.float32, 32], predictions[torch.float64, 32],
                              1e-5)


# --------------------------------------------------------------------------- smoothness


def test_energy_is_smooth_across_the_cutoff(tiny) -> None:
    """Move one atom of a C-O pair through the cutoff: energy continuous and differentiable."""
    cutoff = tiny.cutoff
    h = 1e-3
    distances = torch.arange(cutoff - 0.3, cutoff + 0.1 + h / 2, h, dtype=torch.float64)
    distances = torch.cat([distances, torch.tensor([2 * cutoff], dtype=torch.float64)])
    z = torch.tensor([6, 8])
    graphs = [
        Data(z=z, pos=torch.tensor([[0.0, 0.0, 0.0], [d, 0.0, 0.0]], dtype=torch.float64))
        for d in distances
    ]
    out = tiny(Batch.from_data_list(graphs))
    energy = out["energy"].detach()
    force = out["forces"].detach().view(-1, 2, 3)[:, 1, 0]  # on the moving atom, along x
    far = energy[-1]
    energy, force, distances = energy[:-1], force[:-1], distances[:-1]
    slope_scale = float(force.abs().max())

    # Continuous: no step larger than the slope allows (the jump once seen here was 6e-2 eV).
    steps = energy.diff().abs()
    assert float(steps.max()) <= 1.05 * h * slope_scale + 1e-12, float(steps.max())
    # Differentiable across the cutoff: central differences of the energy equal -force.
    central = (energy[2:] - energy[:-2]) / (2 * h)
    near = (distances[1:-1] - cutoff).abs() < 0.05
    mismatch = (central + force[1:-1])[near].abs().max()
    assert float(mismatch) < 1e-2 * slope_scale, (float(mismatch), slope_scale)
    # Beyond the cutoff the atoms do not interact: energy of two isolated atoms, zero force.
    beyond = distances >= cutoff
    assert torch.equal(force[beyond], torch.zeros_like(force[beyond]))
    torch.testing.assert_close(energy[beyond], far.expand(int(beyond.sum())),
                               rtol=0, atol=1e-12)
    # Approaching the cutoff from inside, energy and force reach those values continuously.
    inside = distances < cutoff
    assert float((energy[inside][-1] - far).abs()) < 1e-6 * max(float(far.abs()), 1.0)
    assert float(force[inside][-1].abs()) < 1e-2 * slope_scale


# --------------------------------------------------------------------------- validation


def test_unknown_element_is_a_clear_error(tiny) -> None:
    z_bad = tiny.max_atomic_number + 1
    batch = Batch.from_data_list([
        Data(z=torch.tensor([6, z_bad]),
             pos=torch.tensor([[0.0, 0, 0], [1.2, 0, 0]], dtype=torch.float64)),
    ])
    with pytest.raises(ValueError, match=rf"atomic numbers must be in 1\.\.{z_bad - 1}"):
        tiny(batch)
    atoms = Atoms(numbers=[6, z_bad], positions=[[0.0, 0, 0], [1.2, 0, 0]])
    with pytest.raises(ValueError, match=str(z_bad)):
        zoo.predict(tiny, [atoms])


# --------------------------------------------------------------------------- size


def test_md17_parameter_count_near_the_paper() -> None:
    model = _model("md17", dtype=torch.float32)
    count = sum(p.numel() for p in model.parameters())
    print(f"md17 preset: {count:,} parameters; paper ~{PAPER_PARAMS / 1e6:.1f}M; "
          f"reference code 3,496,001 ({count / 3_496_001 - 1:+.1%})")
    assert abs(count - PAPER_PARAMS) / PAPER_PARAMS <= 0.15, count


def test_set_atomic_energies_shifts_energy_only_and_is_recorded() -> None:
    """Refitting reference energies (fine-tuning on a new molecule) moves the energy by the
    composition-weighted offsets, leaves forces untouched, and survives a config round trip."""
    model = zoo.create_model("equiformer", "tiny", atomic_energies={1: -10.0, 6: -20.0})
    model = model.double().eval()
    inputs = model.example_inputs(torch.Generator().manual_seed(0), torch.float64)
    before = model(inputs)
    model.set_atomic_energies({1: -11.0, 6: -20.0, 8: -30.0})
    after = model(inputs)
    z = inputs.z
    table = {1: (-11.0, -10.0), 6: (-20.0, -20.0), 8: (-30.0, 0.0)}
    shift = torch.zeros_like(before["energy"])
    for atom, graph in zip(z.tolist(), inputs.batch.tolist(), strict=True):
        new, old = table.get(atom, (0.0, 0.0))
        shift[graph] += new - old
    torch.testing.assert_close(after["energy"] - before["energy"], shift)
    torch.testing.assert_close(after["forces"], before["forces"], rtol=0, atol=0)
    rebuilt = zoo.create_model(**model.config()).double().eval()
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(inputs)["energy"], after["energy"])
