"""The cheaper relaxed step (issue 17, item 4): low-rank branches, the regulariser's row and
cadence estimates, weight-side Lie derivatives, shared set columns, fused conv branches, and
the per-site branch contributions (item 2)."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo import relax
from zoo._registry import BUILTIN_ARCHITECTURES
from zoo.models.smoke_layers import SteerableConv2d
from zoo.relax import (
    IrrepsRep,
    RelaxedBranch,
    TrivialRep,
    VectorChannelsRep,
    branch_contributions,
    relaxation_penalty,
)
from zoo.relax.representations import C4FieldRep
from zoo.relax.sites import can_fuse

# (rep_in, rep_out): mixed irreps, invariant output (EGNN's node update), invariant input,
# vector channels (Vector Neurons), scalars on both sides.
REP_PAIRS = [
    (IrrepsRep("2x0e+2x1o+1x2e"), IrrepsRep("1x0e+1x1o+2x2e")),
    (IrrepsRep("4x0e+4x0e+1x1o+1x1o"), IrrepsRep("3x0e")),
    (IrrepsRep("3x0e"), IrrepsRep("2x0e+1x1o")),
    (VectorChannelsRep(4), VectorChannelsRep(3)),
    (TrivialRep(3), IrrepsRep("2x0e")),
]
FORMS = ["linear", "mlp", "lowrank"]


def random_branch(rep_in, rep_out, form: str, seed: int = 0, **kwargs) -> RelaxedBranch:
    """A float64 branch with every weight random (live and non-equivariant)."""
    branch = RelaxedBranch(rep_in, rep_out, form=form, level=1.0, **kwargs).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in branch.layers.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.5)
    return branch


def dense_generators(rep) -> torch.Tensor:
    if isinstance(rep, TrivialRep):
        return torch.zeros(3, rep.dim, rep.dim, dtype=torch.float64)
    return rep.lie_algebra()


def inputs(n: int, dim: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("rep_in", "rep_out"), REP_PAIRS)
def test_lie_derivative_matches_jvp(rep_in, rep_out, form: str) -> None:
    """The weight-side Lie derivative (moving columns only) equals
    ``d/dt g(exp(tA_in) x)|_0 - A_out g(x)`` by ``torch.func.jvp``, for every form and layout."""
    branch = random_branch(rep_in, rep_out, form, rank=2)
    a_in, a_out = dense_generators(rep_in), dense_generators(rep_out)
    x = inputs(7, rep_in.dim).reshape(7, rep_in.dim)
    lie = branch.lie_derivative(x)
    assert lie.shape == (3, 7, rep_out.dim)
    for a in range(3):
        t0 = torch.zeros((), dtype=torch.float64)
        _, derivative = torch.func.jvp(
            lambda t, a=a: branch(x @ torch.linalg.matrix_exp(t * a_in[a]).T),
            (t0,), (torch.ones_like(t0),),
        )
        torch.testing.assert_close(lie[a], derivative - branch(x) @ a_out[a].T,
                                   rtol=0, atol=1e-12)
    # Leading dimensions are kept.
    assert branch.lie_derivative(x.reshape(7, 1, -1)).shape == (3, 7, 1, rep_out.dim)


def test_lowrank_form_shape_rank_and_start() -> None:
    """``W = U V``: ``r (d + d_out) + d_out`` parameters, rank capped at the smaller side,
    zero output at the start, and a low-rank intertwiner (``(u v^T) kron I_3``) has no Lie
    penalty while a random one has."""
    rep_in, rep_out = VectorChannelsRep(5), VectorChannelsRep(4)
    branch = RelaxedBranch(rep_in, rep_out, form="lowrank", rank=3).double()
    assert branch.rank == 3
    assert sum(p.numel() for p in branch.layers.parameters()) == 3 * (15 + 12) + 12
    assert RelaxedBranch(IrrepsRep("1x1o"), IrrepsRep("2x0e"), form="lowrank", rank=8).rank == 2
    x = inputs(9, 15)
    assert torch.count_nonzero(branch(x)) == 0
    generator = torch.Generator().manual_seed(3)
    u = torch.randn(4, 1, generator=generator, dtype=torch.float64)
    v = torch.randn(1, 5, generator=generator, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    with torch.no_grad():
        branch.layers[0].weight.copy_(torch.kron(v, eye))  # [3, 15]
        branch.layers[1].weight.copy_(torch.kron(u, eye))  # [12, 3]
        branch.layers[1].bias.zero_()
    terms = branch.penalties(x)
    assert terms["lie"] < 1e-12 and terms["norm"] > 0.1
    assert random_branch(rep_in, rep_out, "lowrank", rank=3).penalties(x)["lie"] > 0.1
    with pytest.raises(ValueError, match="rank"):
        RelaxedBranch(rep_in, rep_out, form="lowrank", rank=0)


def test_options_are_validated() -> None:
    rep = IrrepsRep("1x1o")
    with pytest.raises(ValueError, match="penalty_rows"):
        RelaxedBranch(rep, rep, penalty_rows=0)
    with pytest.raises(ValueError, match="penalty_every"):
        RelaxedBranch(rep, rep, penalty_every=0)
    with pytest.raises(ValueError, match="lowrank"):
        RelaxedBranch(rep, rep, form="dense")


def test_row_estimate_is_exact_below_the_cap_and_unbiased_above() -> None:
    """Up to ``penalty_rows`` rows the terms are exact; above, a random subset's terms average
    to the exact ones (Monte Carlo over seeded draws, within 4 standard errors)."""
    rep_in, rep_out = IrrepsRep("2x0e+2x1o"), IrrepsRep("1x0e+1x1o")
    branch = random_branch(rep_in, rep_out, "linear", penalty_rows=40)
    x = inputs(40, rep_in.dim) * torch.linspace(0.1, 3.0, 40, dtype=torch.float64)[:, None]
    exact = branch.penalties(x, exact=True)
    for key, value in branch.penalties(x).items():
        assert torch.equal(value, exact[key]), key
    branch.penalty_rows = 8
    draws = {"norm": [], "lie": []}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for _ in range(2000):
            for key, value in branch.penalties(x).items():
                draws[key].append(float(value))
    for key, values in draws.items():
        values = torch.tensor(values, dtype=torch.float64)
        assert values.std() > 1e-3  # the estimate does vary
        error = abs(values.mean() - exact[key])
        assert error < 4 * values.std() / len(values) ** 0.5, key


def _tiny_egnn(**options) -> zoo.models.ZooModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.create_model("egnn", "tiny").double()
    relax.relax(model, "cr", level=1.0, **options)
    relax.randomize_branches(model, torch.Generator().manual_seed(1))
    return model.train()


def test_penalty_every_k_steps_is_k_times_one_step() -> None:
    """``penalty_every=k``: the first of every ``k`` training passes records ``k`` times the
    exact terms, the others nothing; over ``k`` passes on one batch the regulariser's value and
    gradient add up to those of computing it every pass."""
    k = 3
    exact_model, cadenced = _tiny_egnn(), _tiny_egnn(penalty_every=k)
    cadenced.load_state_dict(exact_model.state_dict())
    data = exact_model.example_inputs(torch.Generator().manual_seed(2), torch.float64)

    totals = {}
    for name, model, passes in (("exact", exact_model, k), ("every", cadenced, k)):
        model.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        recorded = []
        for _ in range(passes):
            model(data)
            term = relaxation_penalty(model)["total"]
            recorded.append(float(term.detach()))
            total = total + term
        total.backward()
        grads = [p.grad.clone() for p in relax.branch_parameters(model)]
        totals[name] = (float(total.detach()), grads)
        if name == "every":
            assert recorded[0] > 0 and recorded[1:] == [0.0] * (k - 1)
            assert all(b.last_penalty is None for b in relax.branches(model))
    assert totals["every"][0] == pytest.approx(totals["exact"][0], rel=1e-12)
    for exact_grad, grad in zip(totals["exact"][1], totals["every"][1], strict=True):
        torch.testing.assert_close(grad, exact_grad, rtol=1e-10, atol=1e-12)
    # The next cycle computes again; eval mode and no_grad passes do not count.
    cadenced.eval()
    cadenced(data)
    cadenced.train()
    with torch.no_grad():
        cadenced(data)
    cadenced(data)
    assert float(relaxation_penalty(cadenced)["total"]) == pytest.approx(
        k * float(relaxation_penalty(exact_model)["total"]), rel=1e-12
    )


def test_relax_records_options_and_clone_keeps_them() -> None:
    model = _tiny_egnn(form="lowrank", rank=2, penalty_rows=64, penalty_every=2)
    recipe = model.relaxation_recipe
    assert recipe["form"] == "lowrank" and recipe["rank"] == 2
    assert recipe["penalty_rows"] == 64 and recipe["penalty_every"] == 2 and recipe["fuse"]
    twin = model.clone()
    for branch in relax.branches(twin):
        assert branch.form == "lowrank" and branch.rank <= 2
        assert branch.penalty_rows == 64 and branch.penalty_every == 2
    data = model.example_inputs(torch.Generator().manual_seed(2), torch.float64)
    torch.testing.assert_close(twin(data)["pos"], model(data)["pos"], rtol=0, atol=0)


def test_shared_set_columns_give_the_same_branch() -> None:
    """Columns equal along the set axis computed once per set: the same output and weight
    gradients as the full product (for a first layer wide enough to use it)."""
    rep = VectorChannelsRep(30)
    for form in ("linear", "mlp"):
        branch = random_branch(rep, rep, form, seed=4)
        generator = torch.Generator().manual_seed(5)
        head = torch.randn(2, 6, 60, generator=generator, dtype=torch.float64)
        tail = torch.randn(2, 1, 30, generator=generator, dtype=torch.float64).expand(2, 6, 30)
        x = torch.cat([head, tail], dim=-1)
        outputs, grads = [], []
        for shared in (0, 30):
            branch.zero_grad(set_to_none=True)
            out = branch(x, shared)
            out.square().sum().backward()
            outputs.append(out.detach())
            grads.append([p.grad.clone() for p in branch.layers.parameters()])
        torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-12, atol=1e-12)
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_vn_sites_report_their_shared_columns() -> None:
    model = zoo.create_model("vn-pointnet", "tiny")
    layer = model.std_feature.vn1.map_to_feat
    assert layer.relaxation_shared_columns((torch.zeros(1), 12)) == 36
    assert layer.relaxation_shared_columns((torch.zeros(1),)) == 0


def _smoke(fuse: bool, method: str = "ace") -> zoo.models.ZooModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.create_model("smoke-equiv", "tiny").double()
    relax.relax(model, method, form="conv", fuse=fuse, level=0.7)
    relax.randomize_branches(model, torch.Generator().manual_seed(1))
    return model.train()


def test_fused_conv_branch_matches_the_separate_branch() -> None:
    """Folding the conv branch into the steerable convolution: the same outputs, regulariser
    terms and gradients (weights, biases, ACE's level) as running it beside the layer, and
    projection gives back exactly the base model."""
    fused, separate = _smoke(True), _smoke(False)
    separate.load_state_dict(fused.state_dict())
    assert all(b.fused for b in relax.branches(fused))
    assert not any(b.fused for b in relax.branches(separate))
    x = fused.example_inputs(torch.Generator().manual_seed(2), torch.float64)
    results = []
    for model in (fused, separate):
        model.zero_grad(set_to_none=True)
        out = model(x)
        terms = relaxation_penalty(model)
        (out.square().mean() + 0.01 * terms["total"]).backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()
                 if p.grad is not None}
        results.append((out.detach(), {k: v.detach() for k, v in terms.items()}, grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-10, atol=1e-12)
    for key in ("norm", "lie"):
        torch.testing.assert_close(results[0][1][key], results[1][1][key])
    assert results[0][2].keys() == results[1][2].keys()
    assert any(name.endswith("scale") for name in results[0][2])
    for name, grad in results[0][2].items():
        torch.testing.assert_close(grad, results[1][2][name], rtol=1e-9, atol=1e-12)

    base = zoo.create_model("smoke-equiv", "tiny").double()
    base.load_state_dict({k: v for k, v in fused.state_dict().items()
                          if "relaxation_branch" not in k})
    relax.project(fused)
    assert list(fused.state_dict()) == list(base.state_dict())
    torch.testing.assert_close(fused(x), base(x), rtol=0, atol=0)


def test_fold_branch_zero_pads_a_smaller_kernel() -> None:
    """A 1 x 1 branch folded into a 3 x 3 steerable convolution is the same as beside it."""
    rep = C4FieldRep("regular", 2)
    conv = SteerableConv2d(rep, rep, kernel_size=3).double()
    branch = RelaxedBranch(rep, rep, form="conv", kernel_size=1, level=0.5).double()
    with torch.no_grad():
        branch.layers[0].weight.normal_()
        branch.layers[0].bias.normal_()
    x = torch.randn(2, 8, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = conv(x) + 0.5 * branch(x)
    conv.add_module("relaxation_branch", branch)
    assert can_fuse(conv, branch)
    branch.fused = True
    torch.testing.assert_close(conv(x), expected, rtol=1e-12, atol=1e-12)


def test_branch_contributions_per_site() -> None:
    """Per site: ``||s g(x)|| / ||f_e(x)||``, zero for fresh branches, ``branch = |s| ||g||``,
    the base output recovered exactly for a fused branch too; the model's mode and recorded
    terms are left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = zoo.create_model("egnn", "tiny").double()
    model = relax.relax(base.clone(), "cr", level=0.5)
    data = model.example_inputs(torch.Generator().manual_seed(2), torch.float64)
    fresh = branch_contributions(model, data)
    assert list(fresh) == [site.module for site in model.relaxation_sites()]
    assert all(v["branch"] == 0 and v["relative"] == 0 and v["base"] > 0 for v in fresh.values())

    relax.randomize_branches(model, torch.Generator().manual_seed(1))
    model.train()
    report = branch_contributions(model, data)
    assert model.training
    assert all(b.last_penalty is None for b in relax.branches(model))
    for name, values in report.items():
        assert values["level"] == 0.5
        assert values["branch"] == pytest.approx(0.5 * values["unscaled"], rel=1e-12)
        assert values["relative"] == pytest.approx(values["branch"] / values["base"])
        assert values["branch"] > 0, name
    # The base outputs are those of the unrelaxed model at the same input (first layer).
    first = model.relaxation_sites()[0].module
    assert report[first]["base"] == pytest.approx(fresh[first]["base"], rel=1e-12)

    smoke = _smoke(True, "cr")
    x = smoke.example_inputs(torch.Generator().manual_seed(2), torch.float64)
    for values in branch_contributions(smoke, x).values():
        assert values["level"] == pytest.approx(0.7) and values["relative"] > 0


def test_lowrank_add_to_is_output_plus_scaled_branch() -> None:
    """The low-rank form's one-product ``output + s g(x)`` equals the plain sum, with the same
    gradients; other forms add ``s g(x)`` as the hook does."""
    rep_in, rep_out = VectorChannelsRep(6), VectorChannelsRep(5)
    for form in ("lowrank", "linear"):
        branch = random_branch(rep_in, rep_out, form, rank=4)
        branch.level = 0.3
        generator = torch.Generator().manual_seed(6)
        x = torch.randn(2, 7, 18, generator=generator, dtype=torch.float64, requires_grad=True)
        output = torch.randn(2, 7, 15, generator=generator, dtype=torch.float64)
        fused = branch.add_to(output, x)
        plain = output + 0.3 * branch(x)
        torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
        grads = [torch.autograd.grad(y.square().sum(), [x, *branch.layers.parameters()])
                 for y in (fused, plain)]
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# The zoo's own architectures (not toy ones other test modules may have registered meanwhile).
DENSE_ARCHITECTURES = [
    name for name in sorted(BUILTIN_ARCHITECTURES)
    if (sites := zoo.create_model(name, "tiny").relaxation_sites())
    and getattr(sites[0].rep_in, "kind", None) != "field"
]


@pytest.mark.parametrize("name", DENSE_ARCHITECTURES)
def test_lowrank_relax_train_project(name: str) -> None:
    """Every architecture with dense sites, low-rank branches: the same function at the start,
    gradients to every branch weight, fewer branch parameters than the linear form, and
    projection gives back exactly the base ``state_dict`` and outputs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = zoo.create_model(name, "tiny")
    x = base.example_inputs(torch.Generator().manual_seed(1), torch.float32)
    base.train()
    with torch.random.fork_rng(devices=[]):
        before = {k: v.detach() for k, v in dict(base(x)).items()}
    state = {k: v.clone() for k, v in base.state_dict().items()}
    model = relax.relax(base.clone(), "ace", form="lowrank", rank=2)
    linear = relax.relax(base.clone(), "cr", form="linear")
    count = sum(p.numel() for p in relax.branch_parameters(model))
    assert count < sum(p.numel() for p in relax.branch_parameters(linear))
    relax.set_levels(model, 1.0)
    with torch.random.fork_rng(devices=[]):
        after = dict(model(x))
    for key, value in before.items():
        torch.testing.assert_close(after[key].detach(), value, rtol=0, atol=0)
    relax.randomize_branches(model, torch.Generator().manual_seed(2))
    out = dict(model(x))
    loss = sum(v.float().square().mean() for v in out.values())
    (loss + 0.01 * relaxation_penalty(model)["total"]).backward()
    for p in relax.branch_parameters(model):
        assert p.grad is not None and p.grad.abs().max() > 0
    assert all(b.scale.grad is not None for b in relax.branches(model))
    relax.project(model)
    assert list(model.state_dict()) == list(state)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("form", FORMS)
def test_permuted_columns_are_the_declared_branch(form: str) -> None:
    """A branch reading and writing permuted columns (``columns_in`` / ``columns_out``, e.g.
    component-major Vector Neuron features) is the declared branch with its input and output
    permuted: ``forward``, ``add_to`` and ``penalties`` (same random rows), values and
    gradients."""
    rep_in, rep_out = VectorChannelsRep(5), VectorChannelsRep(4)
    columns_in, columns_out = rep_in.component_major_columns(), rep_out.component_major_columns()
    assert sorted(columns_in) == list(range(15)) and columns_in[:2] == (0, 3)
    branch = random_branch(rep_in, rep_out, form, rank=3, penalty_rows=8)
    branch.level = 0.4
    generator = torch.Generator().manual_seed(7)
    declared = torch.randn(3, 6, 15, generator=generator, dtype=torch.float64, requires_grad=True)
    output = torch.randn(3, 6, 12, generator=generator, dtype=torch.float64)
    permuted = declared[..., list(columns_in)]  # permuted[..., k] = declared[..., columns_in[k]]
    order = {"columns_in": columns_in, "columns_out": columns_out}
    out_index = list(columns_out)
    torch.testing.assert_close(branch(permuted, **order), branch(declared)[..., out_index])
    fused = branch.add_to(output[..., out_index], permuted, **order)
    plain = branch.add_to(output, declared)[..., out_index]
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        terms = branch.penalties(permuted, **order)
        torch.manual_seed(3)
        terms_declared = branch.penalties(declared)
    params = [declared, *branch.layers.parameters()]
    for a, b in [(fused, plain), *((terms[k], terms_declared[k]) for k in ("norm", "lie"))]:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        for ga, gb in zip(torch.autograd.grad(a.square().sum(), params, retain_graph=True),
                          torch.autograd.grad(b.square().sum(), params, retain_graph=True),
                          strict=True):
            torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)
