"""Bad input to ``zoo predict`` / ``zoo.predict`` / ``zoo verify``: nothing lost, nothing silently
wrong, one clear line instead of a traceback.

Every test uses a tiny Equiformer saved to a temporary folder (reference energies for H, C and O
only, trained on "ethanol" as far as its config says) and small synthetic frames, so the module
needs no shared data and runs in seconds.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import zoo
from zoo.cli import main as cli_main
from zoo.errors import (
    DeviceError,
    ExtrapolationWarning,
    InputError,
    OutOfMemoryError,
    UnknownArchitectureError,
    ZooError,
)

# Reference energies float32 cannot hold exactly (as a fitted model has them).
ATOMIC_ENERGIES = {1: -13.604938271604938, 6: -1029.4567890123457, 8: -2041.2345678901234}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny Equiformer checkpoint whose config says it was trained on rMD17 ethanol."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.create_model("equiformer", "tiny", atomic_energies=ATOMIC_ENERGIES)
    data = {"dataset": "rmd17", "molecule": "ethanol", "n_train": 950, "n_val": 50,
            "split_seed": 0, "max_test_frames": None}
    return zoo.save_pretrained(model.eval(), tmp_path_factory.mktemp("ckpt") / "tiny",
                               extra={"data": data, "metrics": {"energy_mae": 1.0}})


@pytest.fixture(scope="module")
def model(folder) -> torch.nn.Module:
    return zoo.load(folder)


def ethanol(i: int = 0) -> Atoms:
    """An ethanol conformation (slightly displaced per ``i``), with reference labels attached."""
    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.default_rng(i).normal(scale=0.02, size=atoms.positions.shape)
    forces = np.random.default_rng(100 + i).normal(size=(len(atoms), 3))
    atoms.calc = SinglePointCalculator(atoms, energy=-4000.0 - i, forces=forces)
    return atoms


@pytest.fixture
def frames_file(tmp_path) -> Path:
    path = tmp_path / "inp.xyz"
    write(path, [ethanol(i) for i in range(4)], format="extxyz")
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# --- 1. predictions never destroy anything --------------------------------------------------
def test_predict_keeps_reference_labels_and_writes_its_own_keys(folder, model, frames_file):
    output = frames_file.with_name("out.xyz")
    assert cli_main(["predict", str(folder), str(frames_file), "-o", str(output)]) == 0
    inputs, written = read(frames_file, ":"), read(output, ":")
    predicted = zoo.predict(model, inputs)
    assert len(written) == len(inputs)
    for i, (source, atoms) in enumerate(zip(inputs, written, strict=True)):
        # The reference labels of the input are kept, under their own keys ...
        assert atoms.get_potential_energy() == source.get_potential_energy()
        np.testing.assert_array_equal(atoms.get_forces(), source.get_forces())
        # ... and the predictions sit beside them.
        assert atoms.info["zoo_energy"] == pytest.approx(predicted["energy"][i], abs=1e-9)
        np.testing.assert_allclose(atoms.arrays["zoo_forces"], predicted["forces"][i],
                                   atol=1e-6)


def test_output_equal_to_the_input_is_refused(folder, frames_file, capsys):
    before = frames_file.read_bytes()
    aliases = [frames_file, frames_file.parent / "sub" / ".." / frames_file.name]
    (frames_file.parent / "sub").mkdir()
    for alias in aliases:
        assert cli_main(["predict", str(folder), str(frames_file), "-o", str(alias)]) == 2
        assert "is the input file" in _one_line_error(capsys)
    os.link(frames_file, frames_file.parent / "hardlink.xyz")
    hardlink = frames_file.parent / "hardlink.xyz"
    assert cli_main(["predict", str(folder), str(frames_file), "-o", str(hardlink)]) == 2
    assert frames_file.read_bytes() == before


def test_a_write_that_fails_midway_keeps_the_earlier_output(folder, tmp_path):
    """The issue's reproduction: ``ulimit -f`` makes the write fail with EFBIG partway."""
    big = tmp_path / "big.xyz"
    write(big, [ethanol(i) for i in range(40)], format="extxyz")
    output = tmp_path / "out.xyz"
    assert cli_main(["predict", str(folder), str(big), "-o", str(output)]) == 0
    good = output.read_bytes()
    assert len(good) > 20_000
    limit = 8_000  # bytes per file: the new output does not fit

    def limit_file_size() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    script = "import sys; from zoo.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", script, "predict", str(folder), str(big), "-o", str(output)],
        preexec_fn=limit_file_size, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert str(output) in done.stderr and "Traceback" not in done.stderr
    assert output.read_bytes() == good  # the earlier good output survives, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.xyz", "out.xyz"]  # no leftovers


def test_unwritable_output_names_the_path(folder, frames_file, capsys):
    missing = frames_file.parent / "no-such-folder" / "out.xyz"
    assert cli_main(["predict", str(folder), str(frames_file), "-o", str(missing)]) == 2
    assert str(missing) in _one_line_error(capsys)


# --- 9. every format ase reads -----------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".pdb", ".traj", ".extxyz"])
def test_predict_reads_what_ase_reads(folder, model, tmp_path, suffix):
    frames = [ethanol(i) for i in range(3)]
    path = tmp_path / f"inp{suffix}"
    write(path, frames)
    output = tmp_path / "out.xyz"
    assert cli_main(["predict", str(folder), str(path), "-o", str(output)]) == 0
    expected = zoo.predict(model, read(path, ":"))["energy"]
    written = read(output, ":")
    np.testing.assert_allclose([a.info["zoo_energy"] for a in written], expected, atol=1e-9)


def test_old_pickled_trajectory_is_refused_never_unpickled(folder, tmp_path, capsys):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "old.traj"
    path.write_bytes(b"PickleTrajectory" + pickle.dumps(Payload()))
    assert cli_main(["predict", str(folder), str(path)]) == 2
    assert "old.traj" in _one_line_error(capsys)
    assert not marker.exists()


def test_unknown_format_says_what_is_accepted(folder, tmp_path, capsys):
    path = tmp_path / "frames.unknownext"
    path.write_text("not a structure\n")
    assert cli_main(["predict", str(folder), str(path)]) == 2
    assert ".pdb" in _one_line_error(capsys)


# --- 5. predictions that would be silently wrong ------------------------------------------------
def test_elements_outside_the_training_data_are_refused(model):
    assert model.elements == (1, 6, 8)  # the keys of atomic_energies, kept through save/load
    bad = ethanol()
    bad.numbers[[0, 3]] = [7, 16]  # C -> N, H -> S
    with pytest.raises(InputError, match=r"frame 1 has element\(s\) N, S.*H, C, O"):
        zoo.predict(model, [ethanol(), bad])
    # The model itself refuses them too, whoever calls it.
    from zoo.data import frames_to_batch

    with pytest.raises(InputError, match="N, S"):
        model(frames_to_batch([bad]))


def test_periodic_frame_is_refused(model):
    atoms = ethanol()
    atoms.cell, atoms.pbc = [6.0, 6.0, 6.0], True
    with pytest.raises(InputError, match="periodic"):
        zoo.predict(model, [atoms])
    atoms.pbc = False  # what the message says to do
    assert np.isfinite(zoo.predict(model, [atoms])["energy"]).all()


def test_coincident_atoms_are_refused(model):
    atoms = ethanol()
    atoms.positions[4] = atoms.positions[2] + [0.0, 0.0, 1e-7]
    with pytest.raises(InputError, match="atoms 2 and 4"):
        zoo.predict(model, [atoms])


def test_another_molecule_than_the_training_one_warns(model):
    water = Atoms("OH2", positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    with pytest.warns(ExtrapolationWarning, match=r"C2H6O only; 1 of 2 frame\(s\).*H2O"):
        zoo.predict(model, [ethanol(), water])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.predict(model, [ethanol(), ethanol(1)])  # the training molecule: silent


def test_out_of_memory_is_one_clear_error(model):
    def fail(module, args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 3400000000 bytes.")

    handle = model.register_forward_pre_hook(fail)
    try:
        with pytest.raises(OutOfMemoryError, match=r"frame 0 \(9 atoms, 72 atom pairs"):
            zoo.predict(model, [ethanol()])
    finally:
        handle.remove()


def test_calculator_leaves_the_callers_model_alone(folder):
    from zoo.ase import ZooCalculator

    model = zoo.load(folder)
    atoms = ethanol()
    calculator = ZooCalculator(model, dtype="float64")
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # not cast in place
    assert {p.dtype for p in calculator.model.parameters()} == {torch.float64}
    atoms.calc = calculator
    expected = zoo.predict(zoo.load(folder, dtype="float64"), [atoms])["energy"][0]
    assert atoms.get_potential_energy() == pytest.approx(expected, abs=1e-9)
    assert ZooCalculator(model, dtype="float32").model is model  # nothing to convert


# --- 6. one line, not a traceback -------------------------------------------------------------
def test_point_cloud_to_a_molecule_model(folder, model, tmp_path, capsys):
    with pytest.raises(InputError, match="molecules"):
        zoo.predict(model, np.random.default_rng(0).normal(size=(30, 3)))
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).normal(size=(30, 3)))
    assert cli_main(["predict", str(folder), str(tmp_path / "cloud.npy")]) == 2
    assert "molecules" in _one_line_error(capsys)


def test_molecules_to_a_point_cloud_model():
    classifier = zoo.create_model("vn-pointnet", "tiny")
    with pytest.raises(InputError, match="point clouds"):
        zoo.predict(classifier, [ethanol()])


def test_bad_devices(folder, model, frames_file, capsys):
    with pytest.raises(DeviceError, match="unknown device 'banana'"):
        zoo.load(folder, device="banana")
    with pytest.raises(DeviceError, match="unknown device 'banana'"):
        zoo.predict(model, [ethanol()], device="banana")
    assert cli_main(["predict", str(folder), str(frames_file), "--device", "banana"]) == 2
    assert "banana" in _one_line_error(capsys)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            zoo.load(folder, device="cuda")
        assert cli_main(["predict", str(folder), str(frames_file), "--device", "cuda"]) == 2
        assert "no CUDA GPU" in _one_line_error(capsys)


def test_unknown_architecture_is_a_zoo_error():
    with pytest.raises(UnknownArchitectureError) as info:
        zoo.create_model("equiformr")
    assert isinstance(info.value, ZooError) and isinstance(info.value, KeyError)
    assert str(info.value).startswith("unknown architecture 'equiformr'. Did you mean equiformer")
    with pytest.raises(ZooError, match="no preset 'huge'"):
        zoo.create_model("equiformer", "huge")


# --- 8. a verification that measured nothing fails ----------------------------------------------
def test_verify_without_data_fails_unless_metrics_are_skipped(folder, tmp_path, capsys):
    args = ["verify", str(folder), "--data-root", str(tmp_path / "nonexistent")]
    assert cli_main(args) != 0
    captured = capsys.readouterr()
    assert "not re-measured" in captured.out and "--no-metrics" in captured.err
    assert cli_main([*args, "--no-metrics"]) == 0
