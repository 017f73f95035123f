"""Relaxation core: so(3) generators, representations, regularisers, branches, relax/project."""

from __future__ import annotations

import math

import pytest
import torch
from e3nn import o3

import zoo
from zoo import relax
from zoo._registry import get_architecture
from zoo.relax import (
    FiniteGroupRep,
    IrrepsRep,
    RelaxedBranch,
    TrivialRep,
    VectorChannelsRep,
    finite_group_penalty,
    lie_derivative_penalty,
    relaxation_penalty,
    so3_generators,
)
from zoo.relax.representations import wigner_matrix

LAYOUTS = ["2x0e+3x1o+2x2e+1x3o", "1x1e", "3x2o+1x0o", "1x0e+1x1o+1x2e+1x3o+1x4e"]
# (irreps_in, irreps_out) pairs for intertwiner tests: same and different layouts, mixed parity.
LAYOUT_PAIRS = [
    ("2x0e+3x1o+2x2e+1x3o", "2x0e+3x1o+2x2e+1x3o"),
    ("2x0e+3x1o+2x2e+1x3o", "1x0e+2x1o+1x2e+2x3o+1x1e"),
    ("4x0e+2x1e+1x2e", "2x0e+3x1e+2x2e"),
    ("3x1o+2x2o", "1x1o+3x2o+1x0e"),
]
AXES = ("x", "y", "z")
# Architectures of the zoo itself (a test module may register toy ones in the same session).
# Those with relaxation sites: a non-equivariant baseline (smoke-conv) has nothing to relax.
ARCHITECTURES = [
    a for a in zoo.list_architectures()
    if get_architecture(a).cls.__module__.startswith("zoo.")
    and zoo.create_model(a, "tiny").relaxation_sites()
]


@pytest.fixture
def float64_default():
    """Default dtype float64 inside the test only (e3nn builds its matrices in the default)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def axis_rotation(axis: int, angle: float) -> torch.Tensor:
    """The rotation by ``angle`` about coordinate axis ``axis`` (0, 1, 2 = x, y, z), float64."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    matrix = torch.eye(3, dtype=torch.float64)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    if axis == 1:  # right-handed: rotation about y takes z to x
        matrix = matrix.T.contiguous()
    return matrix


def linear_matrix(irreps_in: str, irreps_out: str, seed: int) -> torch.Tensor:
    """Dense ``[D_out, D_in]`` matrix of a random e3nn ``o3.Linear`` (an intertwiner), float64."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lin = o3.Linear(irreps_in, irreps_out).to(torch.float64)
        # Random weights on every path (the default init is random too; this makes it explicit).
        lin.weight.data.normal_()
    d_in = o3.Irreps(irreps_in).dim
    return lin(torch.eye(d_in, dtype=torch.float64)).T.detach()


def random_inputs(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def c4_permutation() -> torch.Tensor:
    """``[1, 4, 4]``: the cyclic shift generating the regular representation of C4."""
    return torch.roll(torch.eye(4, dtype=torch.float64), 1, dims=0)[None]


# --- so(3) generators ----------------------------------------------------------------------


@pytest.mark.parametrize("irreps", LAYOUTS)
def test_so3_generators_shape_and_antisymmetry(irreps: str) -> None:
    """``[3, D, D]``, real antisymmetric (orthogonal representation), so(3) commutators."""
    gens = so3_generators(irreps)
    dim = o3.Irreps(irreps).dim
    assert gens.shape == (3, dim, dim)
    assert gens.dtype == torch.float64
    torch.testing.assert_close(gens, -gens.transpose(1, 2), rtol=0, atol=1e-14)
    # [A_x, A_y] = A_z and cyclic: the e3nn convention of a right-handed rotation generator.
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        commutator = gens[a] @ gens[b] - gens[b] @ gens[a]
        torch.testing.assert_close(commutator, gens[c], rtol=0, atol=1e-13)


@pytest.mark.parametrize("irreps", LAYOUTS)
@pytest.mark.parametrize("axis", range(3), ids=AXES)
def test_matrix_exp_of_generator_is_exact_wigner_matrix(
    irreps: str, axis: int, float64_default: None
) -> None:
    """``matrix_exp(t A[a])`` is the representation of the rotation by ``t`` about axis ``a``.

    Compared with the library's own ``wigner_matrix`` and with e3nn's ``D_from_matrix`` (in
    float64 default dtype), to 1e-13.
    """
    gens = so3_generators(irreps)
    e3nn_irreps = o3.Irreps(irreps)
    for angle in (0.3, -1.1, 2.5):
        rotation = axis_rotation(axis, angle)
        exp = torch.linalg.matrix_exp(angle * gens[axis])
        ours = wigner_matrix(irreps, rotation)
        theirs = e3nn_irreps.D_from_matrix(rotation)
        assert theirs.dtype == torch.float64
        assert (exp - ours).abs().max() < 1e-13
        assert (exp - theirs).abs().max() < 1e-13


@pytest.mark.parametrize("irreps", LAYOUTS)
def test_wigner_matrix_with_parity_matches_e3nn(irreps: str, float64_default: None) -> None:
    """For improper rotations, parity enters as ``p`` per irrep, as in e3nn."""
    generator = torch.Generator().manual_seed(3)
    for _ in range(3):
        rotation = -zoo.testing.random_rotation(generator)
        expected = o3.Irreps(irreps).D_from_matrix(rotation)
        assert (wigner_matrix(irreps, rotation) - expected).abs().max() < 1e-13


def test_so3_generators_float32_dtype() -> None:
    """The dtype argument casts exact float64 generators (not e3nn's default-dtype ones)."""
    gens32 = so3_generators("1x1o+1x2e", dtype=torch.float32)
    assert gens32.dtype == torch.float32
    torch.testing.assert_close(gens32.double(), so3_generators("1x1o+1x2e"), rtol=0, atol=1e-7)


# --- representations: act equals the dense matrices ----------------------------------------


@pytest.mark.parametrize("irreps", LAYOUTS)
def test_irreps_rep_act_matches_dense(irreps: str) -> None:
    """``IrrepsRep.act(x)`` equals ``lie_algebra() @ x`` (leading dimensions kept)."""
    rep = IrrepsRep(irreps)
    x = random_inputs(6, rep.dim, 0).reshape(2, 3, rep.dim)
    expected = torch.einsum("aij,...j->a...i", rep.lie_algebra(), x)
    acted = rep.act(x)
    assert acted.shape == (3, 2, 3, rep.dim)
    torch.testing.assert_close(acted, expected, rtol=0, atol=1e-13)
    acted32 = rep.act(x.float())
    assert acted32.dtype == torch.float32
    torch.testing.assert_close(acted32.double(), expected, rtol=0, atol=1e-5)


def test_vector_channels_rep_act_matches_dense() -> None:
    """``VectorChannelsRep.act`` equals its ``I_C kron L_a`` matrices on the ``3c + i`` layout."""
    rep = VectorChannelsRep(5)
    dense = rep.lie_algebra()
    assert dense.shape == (3, 15, 15)
    x = random_inputs(4, rep.dim, 1)
    torch.testing.assert_close(
        rep.act(x), torch.einsum("aij,nj->ani", dense, x), rtol=0, atol=1e-13
    )
    # The channel-major layout of C Cartesian vectors is C copies of e3nn's 1o (x, y, z order).
    torch.testing.assert_close(dense, so3_generators("5x1o"), rtol=0, atol=0)


def test_finite_group_rep_act_matches_dense() -> None:
    """``FiniteGroupRep.act`` applies each generator matrix; the rep round-trips from a tensor."""
    mats = torch.stack([torch.kron(c4_permutation()[0], torch.eye(2, dtype=torch.float64))])
    rep = FiniteGroupRep.from_tensor(mats)
    assert rep.dim == 8 and rep.kind == "finite"
    torch.testing.assert_close(rep.group_generators(), mats, rtol=0, atol=0)
    x = random_inputs(5, 8, 2)
    torch.testing.assert_close(rep.act(x), torch.einsum("kij,nj->kni", mats, x), rtol=0, atol=0)


def test_trivial_rep_act_is_zero() -> None:
    """Invariant features: every generator acts as zero."""
    x = random_inputs(3, 4, 0)
    acted = TrivialRep(4).act(x)
    assert acted.shape == (3, 3, 4)
    assert torch.count_nonzero(acted) == 0


# --- regularisers --------------------------------------------------------------------------


@pytest.mark.parametrize(("irreps_in", "irreps_out"), LAYOUT_PAIRS)
def test_lie_penalty_zero_for_e3nn_linear(irreps_in: str, irreps_out: str) -> None:
    """The dense matrix of an ``o3.Linear`` is an intertwiner: zero penalty in float64."""
    weight = linear_matrix(irreps_in, irreps_out, seed=0)
    assert weight.abs().max() > 0.1  # not trivially zero
    x = random_inputs(16, weight.shape[1], 0)
    penalty = lie_derivative_penalty(weight, x, IrrepsRep(irreps_in), IrrepsRep(irreps_out))
    assert penalty < 1e-12


@pytest.mark.parametrize(("irreps_in", "irreps_out"), LAYOUT_PAIRS)
def test_lie_penalty_positive_for_random_weight(irreps_in: str, irreps_out: str) -> None:
    """A random dense ``W`` mixes irreps and components: clearly positive penalty."""
    d_in, d_out = o3.Irreps(irreps_in).dim, o3.Irreps(irreps_out).dim
    weight = random_inputs(d_out, d_in, 7)
    x = random_inputs(16, d_in, 0)
    penalty = lie_derivative_penalty(weight, x, IrrepsRep(irreps_in), IrrepsRep(irreps_out))
    assert penalty > 0.1


def test_lie_penalty_vector_channels_layout() -> None:
    """``kron(M, I_3)`` is an intertwiner of the ``(C, 3)`` layout; ``kron(I_3, M)`` is not.

    The second is what the research code's ``(D, 3)`` reshape of a ``(3, D)`` layout amounts to:
    it gives a positive penalty to an exactly equivariant layer (METHODS.md, defect (a)).
    """
    c_in, c_out = 4, 3
    mixing = random_inputs(c_out, c_in, 11)
    eye3 = torch.eye(3, dtype=torch.float64)
    rep_in, rep_out = VectorChannelsRep(c_in), VectorChannelsRep(c_out)
    x = random_inputs(16, rep_in.dim, 0)
    right = lie_derivative_penalty(torch.kron(mixing, eye3), x, rep_in, rep_out)
    wrong = lie_derivative_penalty(torch.kron(eye3, mixing), x, rep_in, rep_out)
    assert right < 1e-12
    assert wrong > 0.1


def intertwiner_projector(rep_in: IrrepsRep, rep_out: IrrepsRep) -> torch.Tensor:
    """Orthogonal projector on row-major ``vec(W)`` onto ``{W : W A_in = A_out W for all A}``.

    The null space of ``vec(W) -> [vec(W A_in[a] - A_out[a] W)]_a``, from the SVD of its
    Kronecker matrix (row-major: ``vec(W A) = (I kron A^T) vec(W)``, ``vec(A W) = (A kron I)``).
    """
    a_in, a_out = rep_in.lie_algebra(), rep_out.lie_algebra()
    eye_in = torch.eye(a_in.shape[1], dtype=torch.float64)
    eye_out = torch.eye(a_out.shape[1], dtype=torch.float64)
    blocks = [
        torch.kron(eye_out, a_in[a].T.contiguous()) - torch.kron(a_out[a], eye_in)
        for a in range(3)
    ]
    operator = torch.cat(blocks)
    _, singular, vh = torch.linalg.svd(operator)
    rank = int((singular > 1e-10).sum())
    null = vh[rank:].T
    return null @ null.T


def test_sgd_on_lie_penalty_moves_towards_intertwiners() -> None:
    """Gradient steps on the penalty shrink ``W``'s distance to the intertwiner space.

    The gradient lies in the row space of the Lie-derivative map, so the intertwiner part of
    ``W`` does not move (to rounding) while the rest decays.
    """
    rep_in, rep_out = IrrepsRep("2x0e+2x1o"), IrrepsRep("1x0e+2x1o+1x2e")
    projector = intertwiner_projector(rep_in, rep_out)
    # Sanity of the projector: it keeps an o3.Linear and has the right rank (2*1 + 2*2 paths).
    lin = linear_matrix(rep_in.irreps, rep_out.irreps, seed=1).reshape(-1)
    torch.testing.assert_close(projector @ lin, lin, rtol=0, atol=1e-12)
    assert round(float(torch.trace(projector))) == 2 + 4

    weight = random_inputs(rep_out.dim, rep_in.dim, 5).requires_grad_(True)
    x = random_inputs(64, rep_in.dim, 6)
    flat0 = weight.detach().reshape(-1).clone()
    distance0 = (flat0 - projector @ flat0).norm()
    optimizer = torch.optim.SGD([weight], lr=0.2)
    for _ in range(30):
        optimizer.zero_grad()
        lie_derivative_penalty(weight, x, rep_in, rep_out).backward()
        optimizer.step()
    flat = weight.detach().reshape(-1)
    distance = (flat - projector @ flat).norm()
    assert distance < 0.5 * distance0
    torch.testing.assert_close(projector @ flat, projector @ flat0, rtol=0, atol=1e-12)


def test_finite_group_penalty_c4() -> None:
    """Zero for a ``W`` commuting with the C4 shift (circulant), positive for a random ``W``."""
    shift = c4_permutation()
    rep = FiniteGroupRep.from_tensor(shift)
    coefficients = [0.7, -1.3, 0.4, 2.1]
    circulant = sum(c * torch.linalg.matrix_power(shift[0], k) for k, c in enumerate(coefficients))
    x = random_inputs(16, 4, 0)
    assert finite_group_penalty(circulant, x, rep, rep) < 1e-12
    assert finite_group_penalty(random_inputs(4, 4, 1), x, rep, rep) > 0.1


# --- branches ------------------------------------------------------------------------------


def random_branch(irreps_in: str, irreps_out: str, form: str, seed: int) -> RelaxedBranch:
    """A float64 branch with every weight random (a live, non-equivariant ``g``)."""
    branch = RelaxedBranch(IrrepsRep(irreps_in), IrrepsRep(irreps_out), form=form, level=1.0)
    branch = branch.to(torch.float64)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in branch.layers.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.5)
    return branch


@pytest.mark.parametrize("form", ["linear", "mlp"])
def test_branch_lie_derivative_matches_jvp_and_finite_differences(form: str) -> None:
    """``L_A g(x) = d/dt g(exp(tA_in) x)|_0 - A_out g(x)``, by ``torch.func.jvp`` and by FD."""
    irreps_in, irreps_out = "2x0e+2x1o+1x2e", "1x0e+1x1o+2x2e"
    branch = random_branch(irreps_in, irreps_out, form, seed=0)
    a_in, a_out = so3_generators(irreps_in), so3_generators(irreps_out)
    x = random_inputs(5, a_in.shape[1], 3)
    lie = branch.lie_derivative(x)
    assert lie.shape == (3, 5, a_out.shape[1])
    assert lie.abs().max() > 0.1
    for a in range(3):

        def along_orbit(t: torch.Tensor, a: int = a) -> torch.Tensor:
            return branch(x @ torch.linalg.matrix_exp(t * a_in[a]).T)

        t0 = torch.zeros((), dtype=torch.float64)
        _, derivative = torch.func.jvp(along_orbit, (t0,), (torch.ones_like(t0),))
        expected = derivative - branch(x) @ a_out[a].T
        torch.testing.assert_close(lie[a], expected, rtol=0, atol=1e-12)
        h = torch.tensor(1e-5, dtype=torch.float64)
        finite_difference = (along_orbit(h) - along_orbit(-h)) / (2 * h)
        torch.testing.assert_close(
            lie[a], finite_difference - branch(x) @ a_out[a].T, rtol=0, atol=1e-8
        )


@pytest.mark.parametrize(("irreps_in", "irreps_out"), LAYOUT_PAIRS[:2])
def test_branch_penalty_zero_for_intertwiner_weight(irreps_in: str, irreps_out: str) -> None:
    """Linear form, intertwiner weight, zero bias: zero Lie term; a vector bias breaks it."""
    branch = random_branch(irreps_in, irreps_out, "linear", seed=0)
    with torch.no_grad():
        branch.layers[0].weight.copy_(linear_matrix(irreps_in, irreps_out, seed=2))
        branch.layers[0].bias.zero_()
    x = random_inputs(16, branch.rep_in.dim, 0)
    terms = branch.penalties(x)
    assert terms["lie"] < 1e-12
    assert terms["norm"] > 0.1  # the norm term still sees the (equivariant) branch output
    # The regulariser agrees with the functional form on the same weight.
    functional = lie_derivative_penalty(
        branch.layers[0].weight.detach(), x, branch.rep_in, branch.rep_out
    )
    assert abs(terms["lie"].item() - functional.item()) < 1e-12
    # A constant non-scalar output (a preferred direction) is not equivariant.
    with torch.no_grad():
        branch.layers[0].bias.fill_(0.3)
    assert branch.penalties(x)["lie"] > 0.1


def test_branch_penalty_matches_functional_for_random_weight() -> None:
    """Branch Lie term equals ``lie_derivative_penalty`` of its weight (linear form, no bias)."""
    irreps_in, irreps_out = LAYOUT_PAIRS[1]
    branch = random_branch(irreps_in, irreps_out, "linear", seed=4)
    with torch.no_grad():
        branch.layers[0].bias.zero_()
    x = random_inputs(16, branch.rep_in.dim, 0)
    weight = branch.layers[0].weight
    expected = lie_derivative_penalty(weight, x, branch.rep_in, branch.rep_out)
    torch.testing.assert_close(branch.penalties(x)["lie"], expected, rtol=1e-12, atol=0)
    assert expected > 0.1


def test_branch_starts_at_zero_and_rejects_unknown_form() -> None:
    """A fresh branch outputs exactly zero (both forms); an unknown form raises."""
    x = random_inputs(4, 9, 0).float()
    for form in ("linear", "mlp"):
        branch = RelaxedBranch(IrrepsRep("1x0e+1x1o+1x2e"), IrrepsRep("1x1o"), form=form)
        assert torch.count_nonzero(branch(x)) == 0
    with pytest.raises(ValueError, match="linear"):
        RelaxedBranch(IrrepsRep("1x1o"), IrrepsRep("1x1o"), form="conv")


def test_branch_init_scale_scales_the_default_init_and_draws_nothing_extra() -> None:
    """``init_scale`` multiplies PyTorch's default output layer (the paper's x0.01), drawing the
    same random numbers as a zero-initialised branch, so the rest of a run is unchanged."""
    x = random_inputs(4, 9, 0).float()
    reps = (IrrepsRep("1x0e+1x1o+1x2e"), IrrepsRep("1x1o"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        zero = RelaxedBranch(*reps, form="mlp")
        after_zero = torch.rand(())
        torch.manual_seed(3)
        scaled = RelaxedBranch(*reps, form="mlp", init_scale=0.01)
        after_scaled = torch.rand(())
        torch.manual_seed(3)
        default = torch.nn.Linear(9, 36), torch.nn.Linear(36, 3)
    assert after_zero == after_scaled
    torch.testing.assert_close(scaled.layers[0].weight, zero.layers[0].weight)
    torch.testing.assert_close(scaled.layers[-1].weight, 0.01 * default[1].weight)
    output = scaled(x)
    assert 0 < float(output.abs().max()) < 0.1
    with pytest.raises(ValueError, match="init_scale"):
        RelaxedBranch(*reps, init_scale=-1.0)


# --- relax / relaxation_penalty / project on registered architectures ----------------------


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny_model(request: pytest.FixtureRequest) -> zoo.models.ZooModel:
    """The architecture's ``tiny`` preset, seeded (shared: tests relax a ``clone``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return zoo.create_model(request.param, "tiny")


def total_output(outputs: object) -> torch.Tensor:
    """A scalar loss touching every output."""
    if isinstance(outputs, torch.Tensor):
        return outputs.square().sum()
    return sum(v.square().sum() for v in outputs.values())


def test_relaxation_penalty_of_relaxed_then_projected_model(tiny_model) -> None:
    """Finite positive terms with grads to branch weights; zeros once projected."""
    model = tiny_model.clone()
    relax.relax(model, "cr", form="mlp")
    relax.set_levels(model, 1.0)
    relax.randomize_branches(model, torch.Generator().manual_seed(0))
    model.train()
    inputs = model.example_inputs(torch.Generator().manual_seed(1), torch.float32)
    model(inputs)
    terms = relaxation_penalty(model)
    assert set(terms) == {"norm", "lie", "total"}
    for key, value in terms.items():
        assert torch.isfinite(value) and value > 0, key
    torch.testing.assert_close(terms["total"], terms["norm"] + terms["lie"])
    terms["total"].backward()
    weights = [p for p in relax.branch_parameters(model) if p.dim() == 2]
    assert weights
    for p in weights:
        assert p.grad is not None and p.grad.abs().max() > 0

    relax.project(model)
    assert relax.branches(model) == []
    model(inputs)
    for value in relaxation_penalty(model).values():
        assert value == 0


def test_relax_twice_raises(tiny_model) -> None:
    """Relaxing an already relaxed model is an error (project first); afterwards it works."""
    model = tiny_model.clone()
    relax.relax(model, "ace")
    n_branches = len(relax.branches(model))
    assert n_branches == len(model.relaxation_sites())
    with pytest.raises(ValueError, match="already relaxed"):
        relax.relax(model, "cr")
    assert len(relax.branches(model)) == n_branches  # nothing was attached twice
    relax.project(model)
    relax.relax(model, "cr")  # a projected model can get fresh branches (fine-tuning)
    assert len(relax.branches(model)) == n_branches


def test_relaxing_a_model_without_sites_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="smoke-conv declares no relaxation sites"):
        relax.relax(zoo.create_model("smoke-conv", "tiny"), "cr")


def test_unknown_method_lists_options(tiny_model) -> None:
    """``relax`` and ``make_controller`` reject unknown methods, naming every option."""
    with pytest.raises(ValueError, match="unknown relaxation method") as error:
        relax.relax(tiny_model, "lora")
    for method in ("cr", "ace", "recm"):
        assert repr(method) in str(error.value)
    assert relax.branches(tiny_model) == []  # the shared model was left unrelaxed
    with pytest.raises(ValueError, match="choose one of") as error:
        relax.make_controller("lora")
    for method in ("cr", "ace", "recm"):
        assert repr(method) in str(error.value)
