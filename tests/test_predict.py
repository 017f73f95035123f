"""Tests of zoo.predict: energies and forces of a model on ase.Atoms frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

import zoo
from zoo import create_model
from zoo.data import InvalidFrameError, frames_to_batch
from zoo.inference import predict


@pytest.fixture(scope="module")
def aspirin(aspirin) -> list[Atoms]:
    return aspirin[:3]


@pytest.fixture(scope="module")
def models() -> dict[torch.dtype, torch.nn.Module]:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = create_model("equiformer", preset="tiny").to(torch.float64)
    return {torch.float64: model, torch.float32: model.clone(dtype=torch.float32)}


def _water() -> Atoms:
    return Atoms("OH2", positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])


@pytest.mark.data
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_predict_on_real_aspirin(models, aspirin, dtype) -> None:
    model = models[dtype].eval()
    out = predict(model, aspirin, batch_size=2)
    assert set(out) == {"energy", "forces"}
    energy, forces = out["energy"], out["forces"]
    assert isinstance(energy, np.ndarray) and energy.shape == (len(aspirin),)
    assert np.issubdtype(energy.dtype, np.floating) and np.isfinite(energy).all()
    assert isinstance(forces, list) and len(forces) == len(aspirin)
    for f, atoms in zip(forces, aspirin, strict=True):
        assert isinstance(f, np.ndarray) and f.shape == (len(atoms), 3)
        assert f.dtype == np.dtype(str(dtype).removeprefix("torch."))
        assert np.isfinite(f).all()
    # Same numbers as the model on the batch itself.
    direct = model(frames_to_batch(aspirin, dtype=dtype))
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(energy, direct["energy"].detach().numpy(), rtol=tolerance,
                               atol=tolerance)
    np.testing.assert_allclose(np.concatenate(forces), direct["forces"].detach().numpy(),
                               rtol=tolerance, atol=tolerance)


def test_training_flags_restored(models) -> None:
    model = models[torch.float64]
    model.train()
    model.blocks[0].eval()  # a mixed state must come back exactly as it was
    before = {name: m.training for name, m in model.named_modules()}
    predict(model, [_water()])
    assert {name: m.training for name, m in model.named_modules()} == before
    # ... also when the prediction fails.
    with pytest.raises(ValueError):
        predict(model, [Atoms(numbers=[6, 99], positions=[[0.0, 0, 0], [1.0, 0, 0]])])
    assert {name: m.training for name, m in model.named_modules()} == before
    model.eval()


def test_runs_in_eval_mode(models) -> None:
    model = models[torch.float64]
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    try:
        model.train()
        predict(model, _water())
    finally:
        handle.remove()
        model.eval()
    assert seen == [False]


def test_no_gradient_bookkeeping_left(models) -> None:
    model = models[torch.float64]
    for p in model.parameters():
        p.grad = None
    out = predict(model, [_water(), _water()])
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # not switched off for good
    assert isinstance(out["energy"], np.ndarray)
    assert all(isinstance(f, np.ndarray) for f in out["forces"])
    # Existing gradients are left untouched.
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    predict(model, _water())
    assert torch.equal(first.grad, torch.ones_like(first))
    first.grad = None


def test_single_atoms_accepted(models) -> None:
    out = predict(models[torch.float64], _water())
    assert out["energy"].shape == (1,)
    assert len(out["forces"]) == 1 and out["forces"][0].shape == (3, 3)
    as_list = predict(models[torch.float64], [_water()])
    np.testing.assert_array_equal(out["energy"], as_list["energy"])


def test_empty_list_is_an_error(models) -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        predict(models[torch.float64], [])


def test_bad_inputs_are_errors(models) -> None:
    model = models[torch.float64]
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, _water(), batch_size=0)
    with pytest.raises(TypeError, match="ase.Atoms"):
        predict(model, [_water(), "not a frame"])
    with pytest.raises(TypeError, match="ase.Atoms"):
        predict(model, "water.xyz")
    with pytest.raises(InvalidFrameError, match="frame 1"):
        predict(model, [_water(), Atoms()])


def test_default_dtype_unchanged(models) -> None:
    original = torch.get_default_dtype()
    try:
        for default in (torch.float32, torch.float64):
            torch.set_default_dtype(default)
            for model in models.values():
                predict(model, _water())
                assert torch.get_default_dtype() == default
    finally:
        torch.set_default_dtype(original)


def test_zoo_predict_is_callable(models) -> None:
    # ``zoo.predict`` is the function (its module is zoo.inference, so no submodule shadows it).
    out = zoo.predict(models[torch.float64], [_water()])
    np.testing.assert_array_equal(out["energy"], predict(models[torch.float64], _water())["energy"])


def test_device_argument_moves_inputs_only(models) -> None:
    model = models[torch.float64]
    out = predict(model, _water(), device="cpu")
    assert next(model.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(out["energy"], predict(model, _water())["energy"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_predict_on_cuda_matches_cpu(models) -> None:
    cpu_model = models[torch.float64]
    gpu_model = cpu_model.clone(device="cuda")
    frames = [_water(), _water()]
    on_gpu = predict(gpu_model, frames)
    on_cpu = predict(cpu_model, frames)
    assert next(gpu_model.parameters()).device.type == "cuda"
    np.testing.assert_allclose(on_gpu["energy"], on_cpu["energy"], rtol=1e-10, atol=1e-10)
    for g, c in zip(on_gpu["forces"], on_cpu["forces"], strict=True):
        np.testing.assert_allclose(g, c, rtol=1e-9, atol=1e-10)


def test_relaxed_model_keeps_no_regulariser_graph(models) -> None:
    from zoo import relax

    model = relax.relax(models[torch.float64].clone(), "cr", form="mlp")
    relax.set_levels(model, 0.5)
    relax.randomize_branches(model, torch.Generator().manual_seed(0))
    out = predict(model, [_water()])
    for branch in relax.branches(model):
        assert branch.regularize is True and branch.last_penalty is None
    # The branches are live: a relaxed model predicts differently from its projection.
    projected = predict(relax.project(model), [_water()])
    assert not np.allclose(out["forces"][0], projected["forces"][0])
