"""Every registered architecture: equivariance, relax/project, config and dtype round trips.

Parametrized over ``zoo.list_architectures()`` with each architecture's ``tiny`` preset.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import zoo
from zoo import relax
from zoo._registry import get_architecture
from zoo.testing import assert_equivariant, cast_inputs, equivariance_error

# Architectures of the zoo itself (a test module may register toy ones in the same session).
ARCHITECTURES = [
    a for a in zoo.list_architectures() if get_architecture(a).cls.__module__.startswith("zoo.")
]
METHODS = ("cr", "ace", "recm")
FORMS = ("linear", "mlp")


@pytest.fixture(scope="module", params=ARCHITECTURES)
def base(request: pytest.FixtureRequest) -> zoo.models.ZooModel:
    """The ``tiny`` preset with reproducible weights, float32 (tests relax a ``clone`` of it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return zoo.create_model(request.param, "tiny")


@pytest.fixture(scope="module")
def inputs(base: zoo.models.ZooModel) -> Any:
    """The architecture's own random example input, float32."""
    return base.example_inputs(torch.Generator().manual_seed(1), torch.float32)


def outputs_of(model: torch.nn.Module, inputs: Any) -> dict[str, torch.Tensor]:
    """The model's outputs as a dict of detached tensors."""
    out = model(inputs)
    if isinstance(out, torch.Tensor):
        out = {"output": out}
    return {k: v.detach() for k, v in out.items()}


def assert_same_outputs(actual: dict, expected: dict) -> None:
    """Bitwise identical outputs."""
    assert actual.keys() == expected.keys()
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, key
        assert torch.equal(actual[key], expected[key]), key


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|a - b| / max|b|`` (the measure of ``zoo.testing``)."""
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


def task_loss(outputs: Any) -> torch.Tensor:
    """A scalar touching every output (differentiable)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.square().mean()
    return sum(v.square().mean() for v in outputs.values())


def test_forward_outputs_are_finite(base, inputs) -> None:
    """The tiny model runs on its example input and gives finite, non-trivial outputs."""
    out = outputs_of(base, inputs)
    assert out
    for key, value in out.items():
        assert value.is_floating_point(), key
        assert torch.isfinite(value).all(), key
        assert value.abs().max() > 0, key


def exact(model: zoo.models.ZooModel) -> bool:
    """Whether the architecture is equivariant by construction (else its error is measured)."""
    return type(model).exactly_equivariant


def test_base_equivariant_float64(base) -> None:
    """The base architecture is exactly equivariant: rounding level in float64."""
    error = equivariance_error(base)
    if not exact(base):
        # A baseline or an approximately equivariant model: the error is a finite number.
        assert error == error and error < float("inf")
        pytest.skip(f"{base.architecture} is not equivariant by construction (error {error:.2g})")
    assert error < 1e-10


def test_base_equivariant_float32(base) -> None:
    """In float32, equivariant to float32 rounding."""
    if not exact(base):
        pytest.skip(f"{base.architecture} is not equivariant by construction")
    assert equivariance_error(base, dtype=torch.float32) < 1e-4


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("method", METHODS)
def test_relax_train_branch_project(base, inputs, method: str, form: str) -> None:
    """Relax -> same function -> live branch breaks symmetry -> train branch -> project.

    - a freshly relaxed model computes exactly the outputs of the base (zero-init branch), at
      the method's starting level and at level 1;
    - with random branches at level 1, the equivariance error is clearly non-zero;
    - forward/backward reaches every branch weight (and the level, for ACE and RECM);
    - an optimiser step on the branch weights only leaves every base parameter untouched;
    - after projection: the base's state_dict keys, parameter count and tensors exactly,
      the same outputs, and equivariance to rounding again.
    """
    if not base.relaxation_sites():
        pytest.skip(f"{base.architecture} has no symmetry to relax (a non-equivariant baseline)")
    model = base.clone()
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    n_parameters = sum(p.numel() for p in model.parameters())
    before = outputs_of(model, inputs)

    relax.relax(model, method, form=form)
    branches = relax.branches(model)
    assert len(branches) == len(model.relaxation_sites()) > 0
    assert all(b.form == form for b in branches)
    assert sum(p.numel() for p in model.parameters()) > n_parameters
    assert_same_outputs(outputs_of(model, inputs), before)
    relax.set_levels(model, 1.0)
    assert_same_outputs(outputs_of(model, inputs), before)

    relax.randomize_branches(model, torch.Generator().manual_seed(2))
    if exact(base):
        assert equivariance_error(model, n_rotations=1) > 1e-3

    model.train()
    levels = relax.level_parameters(model)
    optimizer = torch.optim.Adam(relax.branch_parameters(model), lr=1e-2)
    loss = task_loss(model(inputs)) + 0.01 * relax.relaxation_penalty(model)["total"]
    optimizer.zero_grad()
    loss.backward()
    for p in relax.branch_parameters(model):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert all(p.grad.abs().max() > 0 for p in relax.branch_parameters(model) if p.dim() == 2)
    for level in levels:
        if method == "cr":  # the schedule owns the level: no gradient
            assert level.grad is None and not level.requires_grad
        else:  # ACE / RECM read dL/ds
            assert level.grad is not None and torch.isfinite(level.grad)
    optimizer.step()
    trained = outputs_of(model, inputs)
    assert any(not torch.equal(trained[key], before[key]) for key in before)  # the step did act

    relax.project(model)
    assert relax.branches(model) == []
    assert not hasattr(model, "relaxation_recipe")
    state = model.state_dict()
    assert list(state) == list(snapshot)
    assert sum(p.numel() for p in model.parameters()) == n_parameters
    for key, value in snapshot.items():
        assert torch.equal(state[key], value), key
    assert_same_outputs(outputs_of(model, inputs), before)
    if exact(base):
        assert equivariance_error(model, n_rotations=1) < 1e-10


def test_relaxed_random_branch_fails_assert_equivariant(base) -> None:
    """``assert_equivariant`` raises for a live random branch, passes for the base model."""
    if not exact(base):
        pytest.skip(f"{base.architecture} is not equivariant by construction")
    model = base.clone()
    relax.relax(model, "cr", form="mlp")
    relax.set_levels(model, 1.0)
    relax.randomize_branches(model, torch.Generator().manual_seed(3))
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model)
    report = assert_equivariant(base)
    assert report and max(report.values()) < 1e-9


def test_config_round_trips_through_json(base, inputs) -> None:
    """config -> JSON -> create_model -> strict load: the same model, identical outputs."""
    config = json.loads(json.dumps(base.config()))
    assert config["architecture"] == base.architecture
    rebuilt = zoo.create_model(config["architecture"], model_args=config["model_args"])
    assert type(rebuilt) is type(base)
    assert rebuilt.model_args == base.model_args
    rebuilt.load_state_dict(base.state_dict(), strict=True)
    rebuilt.train(base.training)
    assert_same_outputs(outputs_of(rebuilt, inputs), outputs_of(base, inputs))


def test_clone_float64_matches_float32(base, inputs) -> None:
    """``clone(dtype=float64)`` computes the float32 function up to float32 rounding."""
    twin = base.clone(dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in twin.parameters())
    assert all(p.dtype == torch.float32 for p in base.parameters())  # original untouched
    out64 = outputs_of(twin, cast_inputs(inputs, torch.float64))
    out32 = outputs_of(base, inputs)
    assert out64.keys() == out32.keys()
    for key in out32:
        assert out64[key].dtype == torch.float64
        assert relative_error(out32[key].double(), out64[key]) < 1e-5, key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_save_pretrained_load_round_trip_is_bitwise(base, inputs, dtype, tmp_path) -> None:
    """``save_pretrained`` -> ``zoo.load``: bitwise the same outputs, in float32 and float64.

    The model is given what training gives it: for architectures with per-element reference
    energies, values float32 cannot hold (as a least-squares fit on a dataset gives them).
    """
    model = base.clone(dtype=dtype).eval()
    if hasattr(model, "set_atomic_energies"):
        z = sorted(set(inputs.z.tolist()))
        model.set_atomic_energies({int(a): -1000.0 / 3.0 * a - 0.1234567891 for a in z})
    folder = zoo.save_pretrained(model, tmp_path / "model")
    loaded = zoo.load(folder)
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    assert loaded.model_args == model.model_args
    cast = cast_inputs(inputs, dtype)
    assert_same_outputs(outputs_of(loaded, cast), outputs_of(model, cast))
