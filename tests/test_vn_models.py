"""Vector Neuron models: invariance, relaxation sites and their Lie derivative, the fused
kernels against plain autograd, a small overfit, and the sizes of the published configurations.

The shared suite (tests/test_architectures.py) covers the ``tiny`` presets, whose batch norms
use batch statistics; here the models keep running statistics, calibrated on random clouds
before eval, as a trained checkpoint would.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo import relax
from zoo.models import vn_kernels
from zoo.models.vn_layers import VNBatchNorm, VNEdgeLinear, VNSite, VNStdFeature
from zoo.relax import VectorChannelsRep, lie_derivative_penalty
from zoo.testing import equivariance_report

ARCHS = ("vn-pointnet", "vn-dgcnn")
# Parameter counts of the reference configurations (the papers do not state them).
MODELNET40_PARAMETERS = {"vn-pointnet": 1_972_745, "vn-dgcnn": 2_899_830}
SMALL = {  # tiny widths, running statistics and dropout as in the modelnet40 presets
    "vn-pointnet": dict(point_channels=4, hidden_channels=6, embed_channels=12,
                        transform_channels=(4, 6, 12, 8, 6), head_channels=(16, 16), k=4),
    "vn-dgcnn": dict(conv_channels=(4, 4, 6, 8), embed_channels=12, head_channels=(16, 16), k=4),
}


def calibrated(arch: str, dtype=torch.float64, **overrides) -> zoo.models.ZooModel:
    """A model in eval mode whose running statistics come from a few random batches."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.create_model(arch, model_args={**SMALL[arch], **overrides}).to(dtype)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average of the calibration batches
    generator = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 32, 3, generator=generator, dtype=dtype))
    return model.eval()


def clouds(n: int = 3, points: int = 40, seed: int = 2, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(n, points, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("arch", ARCHS)
def test_invariant_float64_eval_running_stats(arch):
    model = calibrated(arch)
    x = clouds()
    logits = model(x)["logits"]
    assert logits.shape == (3, 40) and torch.isfinite(logits).all()
    other = model(clouds(seed=3))["logits"]
    assert (other - logits).abs().max() > 1e-2 * logits.abs().max()  # depends on the input
    report = equivariance_report(model, x, n_rotations=5)
    assert max(report.values()) < 1e-10, report
    assert ("reflection/logits" in report) == (arch == "vn-dgcnn")


def test_pointnet_not_reflection_invariant_dgcnn_is():
    """The cross product of VN-PointNet's first layer sees handedness; VN-DGCNN's layers do not
    (so it declares O(3))."""
    x = clouds()
    mirror = x * torch.tensor([1.0, 1.0, -1.0], dtype=x.dtype)
    for arch, invariant in (("vn-pointnet", False), ("vn-dgcnn", True)):
        model = calibrated(arch)
        with torch.no_grad():
            a, b = model(x)["logits"], model(mirror)["logits"]
        error = float((a - b).abs().max() / a.abs().max())
        assert (error < 1e-10) == invariant, (arch, error)


@pytest.mark.parametrize("arch", ARCHS)
def test_max_pooling_variant_invariant(arch):
    model = calibrated(arch, pooling="max")
    assert max(equivariance_report(model, clouds(), n_rotations=2).values()) < 1e-10


@pytest.mark.parametrize("arch", ARCHS)
def test_relaxed_random_branches_break_invariance(arch):
    model = calibrated(arch)
    relax.relax(model, "cr")
    relax.set_levels(model, 1.0)
    relax.randomize_branches(model, torch.Generator().manual_seed(4))
    report = equivariance_report(model, clouds(), n_rotations=2)
    assert max(v for k, v in report.items() if k.startswith("rotation")) > 1e-3
    assert report["permutation/logits"] < 1e-10  # branches act per point: still a set function


def _kron_intertwiner(rep_in: VectorChannelsRep, rep_out: VectorChannelsRep, generator):
    a = torch.randn(rep_out.channels, rep_in.channels, generator=generator, dtype=torch.float64)
    return torch.kron(a, torch.eye(3, dtype=torch.float64))


def test_lie_derivative_zero_exactly_for_vn_intertwiners():
    """METHODS.md defect (a): for the channel-major layout, ``W = A kron I_3`` has zero Lie
    derivative; a random ``W`` and the research code's ``(3, D)`` layout ``I_3 kron A`` do not."""
    gen = torch.Generator().manual_seed(0)
    rep_in, rep_out = VectorChannelsRep(5), VectorChannelsRep(4)
    x = torch.randn(64, rep_in.dim, generator=gen, dtype=torch.float64)
    good = _kron_intertwiner(rep_in, rep_out, gen)
    wrong_layout = torch.kron(torch.eye(3, dtype=torch.float64), good[::3, ::3])
    random = torch.randn(rep_out.dim, rep_in.dim, generator=gen, dtype=torch.float64)
    scale = lie_derivative_penalty(random, x, rep_in, rep_out)
    assert scale > 1.0
    assert lie_derivative_penalty(good, x, rep_in, rep_out) < 1e-12 * scale
    assert lie_derivative_penalty(wrong_layout, x, rep_in, rep_out) > 0.1 * scale
    # The VN linear layer is exactly such an intertwiner: its dense matrix is A kron I_3.
    layer = VNEdgeLinear(5, 2).double()
    dense = torch.func.jacrev(layer)(x[0])
    assert lie_derivative_penalty(dense, x, *layer.site_reps()) < 1e-12 * scale


@pytest.mark.parametrize("arch", ARCHS)
def test_equivariant_branches_keep_model_invariant_and_unpenalised(arch):
    """Every site's branch set to ``A kron I_3`` (zero bias): the relaxed model stays invariant
    and its Lie-derivative regulariser vanishes; random branches are penalised. This checks
    that every site's input and output really are channel-major ``[..., 3C]`` features."""
    model = calibrated(arch)
    relax.relax(model, "cr", form="linear")
    relax.set_levels(model, 1.0)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for branch in relax.branches(model):
            layer = branch.layers[0]
            layer.weight.copy_(0.3 * _kron_intertwiner(branch.rep_in, branch.rep_out, gen))
            layer.bias.zero_()
    x = clouds()
    report = equivariance_report(model, x, n_rotations=3)
    assert max(report.values()) < 1e-10, report
    model.train()
    model(x)
    penalty = relax.relaxation_penalty(model)
    assert penalty["norm"] > 1e-3 and penalty["lie"] < 1e-10 * penalty["norm"]
    relax.randomize_branches(model, gen)
    model(x)
    assert relax.relaxation_penalty(model)["lie"] > 1e-3


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("chunk", [1 << 16, 7])
def test_fused_kernels_match_plain_autograd(monkeypatch, training, chunk):
    """Values, input gradients, batch-norm gradients and running statistics, chunked or not."""
    monkeypatch.setattr(vn_kernels, "_CHUNK_ELEMENTS", chunk)
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()

    def twin_norms(channels):
        norms = [VNBatchNorm(channels).double().train(training) for _ in range(2)]
        with torch.no_grad():
            for bn in norms:
                bn.bn.weight.copy_(torch.linspace(0.5, 1.5, channels))
                bn.bn.bias.copy_(torch.linspace(-0.3, 0.3, channels))
                bn.bn.running_mean.fill_(1.2)
                bn.bn.running_var.fill_(0.7)
        return norms

    def compare(plain, fused, inputs, norms):
        grad = torch.randn(plain.shape, generator=gen, dtype=torch.float64)
        expected = torch.autograd.grad(plain, [*inputs, norms[0].bn.weight, norms[0].bn.bias],
                                       grad)
        got = torch.autograd.grad(fused, [*inputs, norms[1].bn.weight, norms[1].bn.bias], grad)
        assert torch.allclose(plain, fused, atol=1e-12)
        for a, b in zip(expected, got, strict=True):
            assert torch.allclose(a, b, atol=1e-11)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.allclose(getattr(norms[0].bn, name).double(),
                                  getattr(norms[1].bn, name).double(), atol=1e-12)

    batch, points, k, channels = 3, 11, 4, 5
    parts = [randn(batch, points, 3, channels) for _ in range(4)]
    idx = vn_kernels.knn(torch.randn(batch, points, 3, generator=gen), k)
    norms = twin_norms(channels)
    plain = vn_kernels.vn_edge_activations(*parts, idx, norms[0], 0.2).mean(2)
    fused = vn_kernels.vn_edge_mean(*parts, idx, norms[1].bn, 0.2).transpose(-1, -2)
    compare(plain, fused, parts, norms)
    for direction_channels in (channels, 1):  # shared nonlinearity: one direction
        p, d = randn(4, 6, channels, 3), randn(4, 6, direction_channels, 3)
        norms = twin_norms(channels)
        plain = vn_kernels.vn_leaky_relu(norms[0](p), d, 0.0)
        fused = vn_kernels.vn_batchnorm_leaky_relu(p, d, norms[1].bn, 0.0)
        compare(plain, fused, [p, d], norms)
    # Batch norm alone, in both layouts (the networks run it component-major).
    p = randn(4, 6, channels, 3)
    norms = twin_norms(channels)
    compare(norms[0](p), vn_kernels.vn_batchnorm(p, norms[1].bn), [p], norms)
    norms = twin_norms(channels)
    q = p.detach().transpose(-1, -2).contiguous().requires_grad_()
    compare(norms[0](q, component_major=True),
            vn_kernels.vn_batchnorm(q, norms[1].bn, component_major=True), [q], norms)


def test_edge_linear_is_the_reference_edge_map():
    """``out[j, :C] + out[i, C:]`` equals ``W [x_j - x_i, x_i]`` on the materialised edges."""
    gen = torch.Generator().manual_seed(0)
    layer = VNEdgeLinear(3, 4).double()
    v = torch.randn(2, 9, 3, 3, generator=gen, dtype=torch.float64)
    idx = vn_kernels.knn(v.flatten(-2), 4)
    nb, ctr = layer.split(layer(v.flatten(-2)))
    per_point = vn_kernels.gather_neighbours(nb, idx) + ctr.unsqueeze(2)  # [B, N, k, 3, C]
    neighbours = vn_kernels.gather_neighbours(v, idx)
    centre = v.unsqueeze(2).expand_as(neighbours)
    edges = torch.cat([neighbours - centre, centre], dim=-2)  # [B, N, k, 2C_in, 3]
    reference = torch.einsum("oc,...ci->...io", layer.weight, edges)
    assert torch.allclose(per_point, reference, atol=1e-12)


def test_knn_matches_brute_force():
    x = torch.randn(2, 30, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    idx = vn_kernels.knn(x, 5)
    brute = torch.cdist(x, x).topk(5, largest=False).indices
    assert torch.equal(idx.sort(-1).values, brute.sort(-1).values)
    assert (idx[..., 0] == torch.arange(30)).all()  # the point itself comes first
    with pytest.raises(ValueError, match="at least k=40"):
        vn_kernels.knn(x, 40)


def test_std_feature_normalized_frame():
    # Built from a seeded RNG: an unseeded layer is a different draw in every session, and some
    # draws put a frame vector near zero, where the reference's epsilon dominates.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = VNStdFeature(8, normalize_frame=True).double().eval()
    v = torch.randn(5, 8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    invariant, frame = layer(v)
    # Orthonormal up to the reference's epsilon in the normalisations (EPS / |z|).
    eye = torch.eye(3, dtype=v.dtype)
    assert torch.allclose(frame @ frame.transpose(-1, -2), eye, atol=1e-3)
    assert torch.allclose(torch.linalg.det(frame), torch.ones(5, dtype=v.dtype), atol=1e-3)
    rotation = torch.linalg.qr(
        torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=v.dtype)
    )[0]
    rotation = rotation * torch.linalg.det(rotation)
    rotated, _ = layer(v @ rotation.T)
    assert torch.allclose(rotated, invariant, atol=1e-10)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_predicts_a_single_cloud_in_eval_mode(arch):
    """The tiny preset (no running statistics learned) predicts one cloud at a time in eval
    mode, and a cloud's logits do not depend on the clouds batched with it."""
    from zoo.point_clouds import predict_point_cloud

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.create_model(arch, "tiny").eval()
    x = clouds(3, 24, dtype=torch.float32)
    one = model(x[:1])["logits"]
    assert one.shape == (1, 40) and torch.isfinite(one).all()
    torch.testing.assert_close(model(x)["logits"][:1], one, rtol=1e-5, atol=1e-6)
    out = predict_point_cloud(model, x[0].numpy())
    assert out["probabilities"].shape == (1, 40)
    # Training-mode passes still normalise with the batch and leave the state untouched.
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()(x)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("arch", ARCHS)
def test_input_validation(arch):
    model = zoo.create_model(arch, "tiny")
    with pytest.raises(ValueError, match=r"\[batch, points, 3\]"):
        model(torch.randn(2, 10, 2))
    with pytest.raises(ValueError, match="at least k=4"):
        model(torch.randn(2, 3, 3))
    with pytest.raises(ValueError, match="pooling"):
        zoo.create_model(arch, "tiny", pooling="sum")


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_overfits_a_few_clouds(arch):
    """A handful of clouds with random labels: memorised within 100 Adam steps."""
    torch.manual_seed(0)
    model = zoo.create_model(arch, "tiny", num_classes=4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 24, 3, generator=gen) * torch.tensor([1.0, 0.6, 0.3])  # anisotropic
    y = torch.randint(0, 4, (8,), generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(model(x)["logits"], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    with torch.no_grad():
        assert (model(x)["logits"].argmax(-1) == y).float().mean() >= 0.75


@pytest.mark.parametrize("arch", ARCHS)
def test_modelnet40_preset(arch):
    """The reference widths: parameter count, relaxation sites, and a forward pass."""
    model = zoo.create_model(arch, "modelnet40")
    assert sum(p.numel() for p in model.parameters()) == MODELNET40_PARAMETERS[arch]
    sites = model.relaxation_sites()
    assert len(sites) == len({s.module for s in sites}) > 10
    for site in sites:
        assert isinstance(site.rep_in, VectorChannelsRep)
    assert model.k == 20 and model.model_args["pooling"] == "mean"
    logits = model.eval()(clouds(2, 32, dtype=torch.float32))["logits"]
    assert logits.shape == (2, 40) and torch.isfinite(logits).all()


def _relaxed_steps(arch: str, form: str, observed: bool) -> list[tuple]:
    """Two regularised steps of a relaxed ``tiny`` model with live branches: logits, penalty
    terms and every gradient. ``observed``: a no-op hook on every site, so that each is called
    on its channel-major input and its branch added by the hook (the general path)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.create_model(arch, "tiny").double().train()
    # 64 rows per site: a random subset (120 points, 1200 edges), drawn every other step.
    relax.relax(model, "ace", form=form, rank=4, penalty_rows=64, penalty_every=2, level=0.7)
    relax.randomize_branches(model, torch.Generator().manual_seed(3))
    if observed:
        for site in model.relaxation_sites():
            model.get_submodule(site.module).register_forward_hook(lambda *args: None)
    steps = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        for _ in range(2):
            model.zero_grad()
            logits = model(clouds())["logits"]
            penalty = relax.relaxation_penalty(model)
            (logits.square().mean() + penalty["total"]).backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            steps.append((logits.detach(), penalty["norm"].detach(), penalty["lie"].detach(),
                          grads))
    return steps


@pytest.mark.parametrize("form", ["lowrank", "linear", "mlp"])
@pytest.mark.parametrize("arch", ARCHS)
def test_component_major_branches_match_the_hooked_path(arch, form):
    """Sites that add their branch on component-major features (permuted branch weights, the
    low-rank first layers of sites sharing an input as one product, their penalty rows gathered
    together) compute what the hook on channel-major inputs computes: the same outputs,
    regulariser terms (same rows) and gradients, to rounding."""
    direct, hooked = _relaxed_steps(arch, form, False), _relaxed_steps(arch, form, True)
    for step, step_hooked in zip(direct, hooked, strict=True):
        for value, value_hooked in zip(step[:3], step_hooked[:3], strict=True):  # logits, terms
            torch.testing.assert_close(value, value_hooked, rtol=1e-10, atol=1e-12)
        grads, grads_hooked = step[3], step_hooked[3]
        assert grads.keys() == grads_hooked.keys()
        for name, grad in grads.items():
            # Rounding relative to the tensor's scale (batch norms amplify it in small entries).
            scale = float(grads_hooked[name].abs().max())
            error = float((grad - grads_hooked[name]).abs().max())
            assert error <= 1e-9 * scale + 1e-12, (name, error, scale)
    assert direct[0][2] > 0 and direct[1][2] == 0  # terms in the first step only


def test_a_backward_hook_on_a_site_is_honoured():
    """A site with only a backward hook is still called as a module (not bypassed), so the
    user's hook runs, as it would on any torch module."""
    model = zoo.create_model("vn-pointnet", "tiny")
    site = next(m for m in model.modules() if isinstance(m, VNSite))
    calls = []
    site.register_full_backward_hook(lambda module, grad_in, grad_out: calls.append(1))
    model(torch.randn(2, 16, 3))["logits"].sum().backward()
    assert calls
