"""The smoke-plume baselines (smoke-conv, smoke-equiv, smoke-rsteer), their C4 layers, and the
"conv" relaxation branch on feature maps."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import zoo
from zoo import create_model, relax
from zoo.models.smoke_cnn import quarter_turns
from zoo.models.smoke_layers import SteerableConv2d, c4_kernel_basis
from zoo.relax.branch import RelaxedBranch
from zoo.relax.regularizers import conv_kernel_penalties, relaxation_penalty
from zoo.relax.representations import C4FieldRep, IrrepsRep, c4_fiber_matrix, rotate_kernel
from zoo.testing import equivariance_error

NAMES = ("smoke-conv", "smoke-equiv", "smoke-rsteer")


def build(name: str, **kwargs) -> zoo.models.ZooModel:
    """The tiny preset with fixed weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model(name, "tiny", **kwargs)


def example(model, dtype=torch.float64) -> torch.Tensor:
    return model.example_inputs(torch.Generator().manual_seed(1), dtype)


# --- the C4 action --------------------------------------------------------------------------


def test_quarter_turn_conventions() -> None:
    """A quarter turn takes the point (x, y) to (-y, x) about the grid centre, on arrays with
    rows = y: a radial field is invariant, an upward vector at the bottom wall becomes a
    leftward one at the right wall (Rotation task j -> j + 1)."""
    n = 8
    centre = (n - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(n) - centre, torch.arange(n) - centre, indexing="ij")
    radial = torch.stack([xs, ys]).double()
    rep = C4FieldRep("vector", 1)
    assert torch.equal(rep.rotate(radial, 1), radial)
    up = torch.zeros(2, 64, 64, dtype=torch.float64)
    up[1, 5, 32] = 1.0  # (vx, vy) = (0, 1) at x = 32, y = 5
    turned = rep.rotate(up, 1)
    assert turned[0, 32, 58] == -1 and turned.abs().sum() == 1  # (-1, 0) at x = 58, y = 32
    for k in range(4):
        assert quarter_turns(c4_fiber_matrix("vector", k)) == k
        assert torch.equal(rep.rotate(rep.rotate(up, k), 4 - k), up)
    with pytest.raises(ValueError, match="90 degrees"):
        quarter_turns(torch.eye(2) * 0.5)


@pytest.mark.parametrize(("fiber_in", "fiber_out", "count"),
                         [("vector", "regular", 18), ("regular", "regular", 36),
                          ("regular", "vector", 18), ("vector", "vector", 10),
                          ("trivial", "trivial", 3)])
def test_kernel_basis_is_exact_and_complete(fiber_in, fiber_out, count) -> None:
    """Basis kernels have entries 0 / +-1, disjoint supports, are fixed by the quarter turn,
    and span every equivariant 3 x 3 kernel (the projection of a random kernel)."""
    basis = c4_kernel_basis(fiber_in, fiber_out, 3)
    assert basis.shape[0] == count
    assert set(basis.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert ((basis != 0).sum(0) <= 1).all()
    rep_in, rep_out = C4FieldRep(fiber_in, 1), C4FieldRep(fiber_out, 1)
    assert torch.equal(rotate_kernel(basis, rep_in, rep_out), basis)
    free = torch.randn(basis.shape[1:], generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)
    projected = sum(rotate_kernel(free, rep_in, rep_out, k) for k in range(4)) / 4
    coefficients = torch.linalg.lstsq(basis.flatten(1).T, projected.flatten()).solution
    residual = basis.flatten(1).T @ coefficients - projected.flatten()
    assert residual.abs().max() < 1e-12


def test_rotate_kernel_intertwines_convolution() -> None:
    """conv(g x, T_g W) == g conv(x, W) for a random kernel and every quarter turn: the
    definition that makes ``T_g W == W`` the equivariance condition."""
    generator = torch.Generator().manual_seed(0)
    rep_in, rep_out = C4FieldRep("vector", 2), C4FieldRep("regular", 3)
    weight = torch.randn(rep_out.dim, rep_in.dim, 3, 3, generator=generator, dtype=torch.float64)
    x = torch.randn(2, rep_in.dim, 10, 10, generator=generator, dtype=torch.float64)
    for k in range(4):
        lhs = F.conv2d(rep_in.rotate(x, k), rotate_kernel(weight, rep_in, rep_out, k), padding=1)
        rhs = rep_out.rotate(F.conv2d(x, weight, padding=1), k)
        assert (lhs - rhs).abs().max() < 1e-12


# --- the three baselines --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_shapes_rollout_and_config(name: str) -> None:
    """[B, 2T, H, W] -> [B, 2, H, W]; rollout feeds predictions back; config rebuilds it."""
    model = build(name).eval()
    x = example(model, torch.float32)
    assert x.shape == (2, 20, 16, 16)
    out = model(x)
    assert out.shape == (2, 2, 16, 16) and torch.isfinite(out).all()
    frames = model.rollout(x, 3)
    assert frames.shape == (2, 3, 2, 16, 16)
    assert torch.equal(frames[:, 0], out)
    assert torch.equal(frames[:, 1], model(torch.cat([x[:, 2:], out], 1)))
    with pytest.raises(ValueError, match=r"expected inputs \[B, 20, H, W\]"):
        model(x[:, :3])
    rebuilt = create_model(**model.config())
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(rebuilt.eval()(x), out)


def test_paper_presets_sizes() -> None:
    """SMOKE.md's sizes: 92 regular fields (368 channels), 5 layers, kernel 3, 10 frames."""
    equiv = create_model("smoke-equiv", "smoke")
    assert len(equiv.layers) == 5 and equiv.layers[1].conv.rep_out.dim == 368
    assert equiv.layers[0].conv.rep_in == C4FieldRep("vector", 10)
    rsteer = create_model("smoke-rsteer", "smoke")
    assert rsteer.layers[2].conv.weight.shape == (92, 36, 92, 3, 3)
    conv = create_model("smoke-conv", "smoke")
    n = {m: sum(p.numel() for p in model.parameters())
         for m, model in (("equiv", equiv), ("conv", conv))}
    assert abs(n["conv"] - n["equiv"]) / n["equiv"] < 0.05  # parameter-matched baselines


def test_registry_membership() -> None:
    """All three are registered; only smoke-equiv is equivariant by construction."""
    assert zoo.create_model("smoke-equiv", "tiny").exactly_equivariant
    for name in ("smoke-conv", "smoke-rsteer"):
        assert name in zoo.list_architectures()
        assert not zoo.create_model(name, "tiny").exactly_equivariant
    with pytest.raises(KeyError, match="no preset"):
        create_model("smoke-rsteer", "huge")


def test_equiv_is_exactly_c4_equivariant_at_paper_depth() -> None:
    """10 input frames, 5 layers, batch norm with running statistics (eval): every quarter turn
    to rounding in float64, and to float32 rounding in float32."""
    model = build("smoke-equiv", in_frames=10, hidden_fields=2, num_layers=5, running_stats=True)
    model.train()
    model(example(model, torch.float32))  # running statistics away from their initial values
    assert equivariance_error(model) < 1e-12
    assert equivariance_error(model, dtype=torch.float32) < 1e-5


def test_conv_is_not_equivariant() -> None:
    assert equivariance_error(build("smoke-conv")) > 1e-2


def test_rsteer_equivariance_depends_on_its_relaxed_weights() -> None:
    """As the authors initialise it (independent coefficients per kernel pixel) RSteer is not
    equivariant; with equal coefficients at every pixel it is exactly, and its weight
    constraint is 0; perturbing one layer's coefficients breaks both."""
    assert equivariance_error(build("smoke-rsteer")) > 1e-2
    assert build("smoke-rsteer").weight_constraint().item() > 0
    model = build("smoke-rsteer", equivariant_init=True)
    assert equivariance_error(model) < 1e-12
    assert model.weight_constraint().item() == 0
    with torch.no_grad():
        model.layers[1].conv.weight[..., 0, 0] += 0.1
    assert equivariance_error(model) > 1e-3
    assert model.weight_constraint().item() > 0


def test_relaxed_layer_with_equal_coefficients_is_the_steerable_layer() -> None:
    """A relaxed steerable convolution whose coefficients are equal at every pixel computes the
    unrelaxed layer with those coefficients."""
    rep_in, rep_out = C4FieldRep("regular", 2), C4FieldRep("regular", 3)
    plain = SteerableConv2d(rep_in, rep_out).double()
    relaxed = SteerableConv2d(rep_in, rep_out, relaxed=True).double()
    with torch.no_grad():
        relaxed.weight.copy_(plain.weight[..., None, None].expand_as(relaxed.weight))
        relaxed.bias.copy_(plain.bias)
    assert torch.equal(relaxed.kernel(), plain.kernel())


# --- the conv relaxation branch ------------------------------------------------------------


def test_conv_kernel_penalty_zero_exactly_for_equivariant_convolutions() -> None:
    """``||T W - W||`` (bias included) is ~0 for an equivariant convolution, positive for a
    random kernel or a bias that differs inside a regular field."""
    rep_in, rep_out = C4FieldRep("vector", 3), C4FieldRep("regular", 2)
    layer = SteerableConv2d(rep_in, rep_out).double()
    with torch.no_grad():
        layer.bias.normal_()
    terms = conv_kernel_penalties(layer.kernel(), layer.expanded_bias(), rep_in, rep_out)
    assert terms["lie"] < 1e-12 and terms["norm"] > 0.1
    random = torch.randn_like(layer.kernel())
    assert conv_kernel_penalties(random, None, rep_in, rep_out)["lie"] > 0.1
    uneven = layer.expanded_bias() + torch.arange(rep_out.dim, dtype=torch.float64)
    assert conv_kernel_penalties(layer.kernel(), uneven, rep_in, rep_out)["lie"] > 0.1


def test_conv_branch_needs_feature_maps() -> None:
    with pytest.raises(ValueError, match="feature maps"):
        RelaxedBranch(IrrepsRep("1x1o"), IrrepsRep("1x1o"), form="conv")
    with pytest.raises(ValueError, match="both"):
        RelaxedBranch(C4FieldRep("vector", 1), IrrepsRep("1x1o"), form="linear")


@pytest.mark.parametrize("name", ["smoke-equiv", "smoke-rsteer"])
def test_conv_branch_relax_train_project(name: str) -> None:
    """CR with conv branches: same function at the start, live random branches break C4,
    penalties are the kernel terms with gradients, projection restores the base exactly."""
    base = build(name, equivariant_init=True) if name == "smoke-rsteer" else build(name)
    model = base.clone()
    x = example(model, torch.float32)
    before = model(x).detach()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    relax.relax(model, "cr", form="conv")
    branches = relax.branches(model)
    assert len(branches) == len(model.layers) and all(b.form == "conv" for b in branches)
    assert branches[0].layers[0].weight.shape == (model.layers[0].conv.rep_out.dim, 20, 3, 3)
    relax.set_levels(model, 1.0)
    assert torch.equal(model(x).detach(), before)
    # Equivariant branch kernels keep the model equivariant and cost no violation penalty.
    with torch.no_grad():
        for branch in branches:
            steerable = SteerableConv2d(branch.rep_in, branch.rep_out, bias=False)
            branch.layers[0].weight.copy_(steerable.kernel())  # exact in every dtype
            branch.layers[0].bias.zero_()
    assert equivariance_error(model) < 1e-12
    model.train()
    model(x)
    assert relaxation_penalty(model)["lie"] < 1e-5
    relax.randomize_branches(model, torch.Generator().manual_seed(2))
    assert equivariance_error(model) > 1e-3
    model(x)
    terms = relaxation_penalty(model)
    assert terms["lie"] > 0.1 and terms["norm"] > 0.1
    (model(x).square().mean() + 0.01 * terms["total"]).backward()
    for p in relax.branch_parameters(model):
        assert p.grad is not None and p.grad.abs().max() > 0
    relax.project(model)
    assert list(model.state_dict()) == list(state)
    assert torch.equal(model(x).detach(), before)
    if name == "smoke-equiv":
        assert equivariance_error(model) < 1e-12


def test_pixelwise_linear_branch_on_feature_maps() -> None:
    """'linear' on a feature-map site is a 1 x 1 convolution: it commutes with the plane's
    rotation, so its violation is the fiber mixing only, and an identity-like branch between
    regular fields (a circulant map) has none."""
    rep = C4FieldRep("regular", 1)
    branch = RelaxedBranch(rep, rep, form="linear").double()
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        branch.layers[0].weight.copy_(sum(c4_fiber_matrix("regular", k) * (k + 1)
                                          for k in range(4)))
    assert branch.penalties(x)["lie"] < 1e-12
    with torch.no_grad():
        branch.layers[0].weight[0, 1] += 1.0
    assert branch.penalties(x)["lie"] > 0.1
    assert branch(x).shape == x.shape


def test_equiv_checkpoint_round_trip(tmp_path) -> None:
    """save_pretrained -> zoo.load: the same outputs (the steerable basis is rebuilt, not
    stored) and exact equivariance."""
    model = build("smoke-equiv").eval()
    zoo.save_pretrained(model, tmp_path / "equiv")
    loaded = zoo.load(str(tmp_path / "equiv")).eval()
    x = example(model, torch.float32)
    assert torch.equal(loaded(x), model(x))
    assert not any("basis" in key for key in loaded.state_dict())
    assert equivariance_error(loaded) < 1e-12
