"""EGNN and SEGNN for the charged N-body task: symmetry, batching, relaxation sites, layers.

The shared suite (``tests/test_architectures.py``) covers equivariance, relax/project and config
round trips of the ``tiny`` presets; this file checks what is specific to these models.
"""

from __future__ import annotations

import math

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

import zoo
from zoo import relax
from zoo.models.base import GroupElement
from zoo.models.nbody_common import SystemGraph, fully_connected_edges
from zoo.models.segnn_layers import (
    SIGMOID_NORM,
    SILU_NORM,
    GatedL1TensorProduct,
    L1TensorProduct,
    pack,
    unpack,
)
from zoo.testing import equivariance_report, random_rotation

MODELS = ("egnn", "segnn")


def _model(name: str, preset: str = "tiny", seed: int = 0, **overrides) -> zoo.models.ZooModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return zoo.create_model(name, preset, **overrides).double().eval()


def _system(n: int, generator: torch.Generator) -> Data:
    pos = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    vel = torch.randn(n, 3, generator=generator, dtype=torch.float64) * 0.5
    charge = torch.randint(0, 2, (n, 1), generator=generator).double() * 2 - 1
    return Data(pos=pos, vel=vel, charge=charge)


def _batch(sizes, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch.from_data_list([_system(n, generator) for n in sizes])


def test_fully_connected_edges_mixed_sizes() -> None:
    batch = torch.tensor([0, 0, 0, 1, 2, 2])
    src, dst = fully_connected_edges(batch)
    pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert pairs == {(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (4, 5), (5, 4)}
    assert len(pairs) == src.numel()
    with pytest.raises(ValueError, match="sorted"):
        fully_connected_edges(torch.tensor([1, 0]))


@pytest.mark.parametrize("name", MODELS)
def test_mixed_sizes_match_systems_alone(name: str) -> None:
    """A batch of systems of 5, 3, 1 and 2 particles predicts what each system does alone."""
    model = _model(name)
    systems = _batch((5, 3, 1, 2), seed=1).to_data_list()
    together = model(Batch.from_data_list(systems))["pos"]
    alone = torch.cat([model(Batch.from_data_list([s]))["pos"] for s in systems])
    assert together.shape == (11, 3)
    torch.testing.assert_close(together, alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_reflections_and_per_system_translations(name: str) -> None:
    """A mirror (x -> -x) and a random improper rotation act on the output like on the input;
    translating each system by its own vector translates only that system's prediction (positions
    are centred per system, not per batch or per particle)."""
    model = _model(name)
    data = _batch((5, 4, 3), seed=2)
    out = model(data)["pos"]
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    improper = random_rotation(torch.Generator().manual_seed(3), reflect=True)
    for rotation in (mirror, improper):
        g = GroupElement(rotation)
        expected = model.act_on_outputs({"pos": out}, g)["pos"]
        actual = model(model.act_on_inputs(data, g))["pos"]
        assert (actual - expected).abs().max() < 1e-12 * out.abs().max()

    shifts = torch.tensor([[10.0, -3.0, 2.0], [0.0, 0.0, 0.0], [-7.0, 5.0, 1.0]],
                          dtype=torch.float64)
    moved = data.clone()
    moved.pos = data.pos + shifts[data.batch]
    torch.testing.assert_close(model(moved)["pos"], out + shifts[data.batch],
                               rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("name", MODELS)
def test_rest_and_validation(name: str) -> None:
    """A particle at rest gives finite predictions; inputs missing a field are refused."""
    model = _model(name)
    data = _batch((4,), seed=4)
    data.vel[0] = 0.0
    assert torch.isfinite(model(data)["pos"]).all()
    del data.vel
    with pytest.raises(ValueError, match="vel"):
        model(data)


def _intertwiner(rep_in, rep_out, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random O(3)-equivariant ``W``, ``b`` between e3nn irreps layouts: a random channel
    mixing between equal irreps (``B kron I``), zero between different ones, bias on 0e only."""
    irreps_in, irreps_out = o3.Irreps(rep_in.irreps), o3.Irreps(rep_out.irreps)
    weight = torch.zeros(irreps_out.dim, irreps_in.dim, dtype=torch.float64)
    bias = torch.zeros(irreps_out.dim, dtype=torch.float64)
    for (mul_out, ir_out), out_slice in zip(irreps_out, irreps_out.slices(), strict=True):
        if ir_out.l == 0:
            bias[out_slice] = torch.randn(mul_out, generator=generator, dtype=torch.float64)
        for (mul_in, ir_in), in_slice in zip(irreps_in, irreps_in.slices(), strict=True):
            if ir_in == ir_out:
                mixing = torch.randn(mul_out, mul_in, generator=generator, dtype=torch.float64)
                eye = torch.eye(ir_out.dim, dtype=torch.float64)
                weight[out_slice, in_slice] = torch.kron(mixing, eye) / math.sqrt(mul_in)
    return weight, bias


@pytest.mark.parametrize("name", MODELS)
def test_relaxation_sites_layouts(name: str) -> None:
    """The declared site representations match the features the branches see:

    - branches that are intertwiners keep the relaxed model equivariant (reflections included)
      and get a zero Lie-derivative penalty (METHODS.md defect (a): an intertwiner must give 0);
    - random branches break rotation equivariance, clearly, and get a non-zero penalty, while
      translation and permutation equivariance stay exact (branch inputs are per particle and
      translation invariant).
    """
    model = _model(name)
    data = _batch((5, 4), seed=5)
    relax.relax(model, "cr", form="linear")
    relax.set_levels(model, 1.0)
    generator = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for site, branch in zip(model.relaxation_sites(), relax.branches(model), strict=True):
            weight, bias = _intertwiner(site.rep_in, site.rep_out, generator)
            branch.layers[0].weight.copy_(weight)
            branch.layers[0].bias.copy_(bias)
    model.train()
    model(data)
    assert relax.relaxation_penalty(model)["lie"] < 1e-12
    assert relax.relaxation_penalty(model)["norm"] > 0.1  # the branches are live
    assert max(equivariance_report(model, data).values()) < 1e-12

    relax.randomize_branches(model, torch.Generator().manual_seed(7))
    model(data)
    assert relax.relaxation_penalty(model)["lie"] > 1e-3
    report = equivariance_report(model, data)
    assert min(v for k, v in report.items() if k.startswith(("rotation", "reflection"))) > 1e-3
    assert max(v for k, v in report.items() if k.startswith(("translation", "permutation"))) < 1e-12


def test_egnn_messages_equal_unfactorised_edge_mlp() -> None:
    """``phi_e`` applied per node then gathered equals ``phi_e`` on the concatenated inputs."""
    model = _model("egnn")
    layer = model.layers[0]
    generator = torch.Generator().manual_seed(8)
    n, hidden = 7, model.hidden_features
    h = torch.randn(n, hidden, generator=generator, dtype=torch.float64)
    x = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    graph = SystemGraph(torch.tensor([0, 0, 0, 0, 1, 1, 1]))
    src, dst = graph.edge_index
    scalars = torch.randn(src.numel(), 2, generator=generator, dtype=torch.float64)
    message, diff = layer.messages(h, x, graph, scalars)
    radial = (x[dst] - x[src]).pow(2).sum(-1, keepdim=True)
    expected = layer.edge_mlp(torch.cat([h[dst], h[src], radial, scalars], dim=-1))
    torch.testing.assert_close(message, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(diff, x[dst] - x[src])


def test_segnn_first_message_equals_plain_tensor_product() -> None:
    """The per-node mixing of the first message layer equals its tensor product on the
    concatenated edge input ``[f_i, f_j, scalars]``."""
    model = _model("segnn")
    layer = model.layers[0]
    generator = torch.Generator().manual_seed(9)
    n, k = 6, model.scalars
    s = torch.randn(n, k, generator=generator, dtype=torch.float64)
    v = torch.randn(n, 3, k, generator=generator, dtype=torch.float64)
    graph = SystemGraph(torch.tensor([0, 0, 0, 1, 1, 1]))
    src, dst = graph.edge_index
    a1 = torch.randn(src.numel(), 3, generator=generator, dtype=torch.float64)
    scalars = torch.randn(src.numel(), 2, generator=generator, dtype=torch.float64)
    actual = layer.first_message(s, v, graph, a1, scalars)
    expected = layer.message_1(torch.cat([s[dst], s[src], scalars], -1),
                               torch.cat([v[dst], v[src]], -1), a1)
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gated", [False, True])
def test_l1_tensor_product_matches_e3nn(gated: bool) -> None:
    """The hand-written product is e3nn's ``FullyConnectedTensorProduct`` (component
    normalisation) with attributes ``a0 x 0e + 1o``, rescaled by ``sqrt(fan_in)`` as the
    reference ``O3TensorProduct`` does, then e3nn's ``Gate`` for the gated one."""
    from e3nn.nn import Gate

    n_s, n_v, out_s, out_v, a0 = 5, 4, 3, 6, 0.7
    cls = GatedL1TensorProduct if gated else L1TensorProduct
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(10)
        ours = cls(n_s, n_v, out_s, out_v, attribute_scalar=a0).double()
    out_irreps = o3.Irreps(f"{ours.out_scalars}x0e+{out_v}x1o")
    reference = o3.FullyConnectedTensorProduct(
        f"{n_s}x0e+{n_v}x1o", "1x0e+1x1o", out_irreps
    ).double()
    paths = {}
    for weight, ins in zip(reference.weight_views(), reference.instructions, strict=True):
        paths[(ins.i_in1, ins.i_in2)] = weight[:, 0, :].T
    with torch.no_grad():  # rows of ours: scalar outputs, then vector outputs
        ours.weight_scalar.copy_(torch.cat([paths[(0, 0)], paths[(0, 1)]]))
        ours.weight_vector.copy_(torch.cat([paths[(1, 1)], paths[(1, 0)]]))
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(9, n_s + 3 * n_v, generator=generator, dtype=torch.float64)
    a1 = torch.randn(9, 3, generator=generator, dtype=torch.float64)
    attributes = torch.cat([torch.full((9, 1), a0, dtype=torch.float64), a1], dim=-1)
    expected = reference(x, attributes) * math.sqrt(n_s + n_v)
    expected[:, : ours.out_scalars] += ours.bias.detach()
    if gated:
        gate = Gate(f"{out_s}x0e", [torch.nn.functional.silu], f"{out_v}x0e", [torch.sigmoid],
                    f"{out_v}x1o")
        expected = gate(expected)
        # e3nn estimates the activations' normalisation by Monte Carlo; ours are exact.
        expected[:, :out_s] *= SILU_NORM / gate.act_scalars.acts[0].cst
        expected[:, out_s:] *= SIGMOID_NORM / gate.act_gates.acts[0].cst
    # e3nn's Clebsch-Gordan coefficients are float32-rounded
    assert (pack(*ours(*unpack(x, n_s), a1)) - expected).abs().max() < 1e-6
    # mixing per row then contracting is the same function as forward
    ws, wv, bias = ours.mixing_weights()
    s, v = unpack(x, n_s)
    mixed = ours.contract(torch.addmm(bias, s, ws.T), v @ wv.T, a1)
    for a, b in zip(mixed, ours(s, v, a1), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_segnn_hidden_irreps_and_lmax() -> None:
    """Weight-balanced hidden irreps as in the reference (64 features -> 32x0e+32x1o)."""
    assert zoo.create_model("segnn", "nbody").hidden_irreps == "32x0e+32x1o"
    assert zoo.create_model("segnn", "tiny").hidden_irreps == "4x0e+4x1o"
    with pytest.raises(ValueError, match="lmax"):
        zoo.create_model("segnn", "tiny", lmax=2)


def test_parameter_counts_of_nbody_presets() -> None:
    """EGNN: the reference EGNN_vel (64 features, 4 layers) has 134,020 parameters, of which
    12,416 in the last layer's feature update that never reaches the output; SEGNN: the
    reference construction (e3nn tensor products, 32x0e+32x1o, 4 layers) has 147,424."""
    counts = {name: sum(p.numel() for p in zoo.create_model(name, "nbody").parameters())
              for name in MODELS}
    assert counts == {"egnn": 134_020 - 12_416, "segnn": 147_424}


@pytest.mark.parametrize("name", MODELS)
def test_overfits_a_few_systems(name: str) -> None:
    """A few dozen Adam steps on 8 systems reduce the position error."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12)
        model = zoo.create_model(name, "tiny", hidden_features=16)
    data = _batch((5,) * 8, seed=13)
    data = data.apply(lambda t: t.float() if t.is_floating_point() else t)
    target = data.pos + 0.8 * data.vel + 0.1 * torch.randn(
        data.pos.shape, generator=torch.Generator().manual_seed(14))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = (model(data)["pos"] - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::8]
