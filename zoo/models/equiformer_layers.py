"""Building blocks of Equiformer (Liao & Smidt, ICLR 2023), written on e3nn.

Equivariant layer norm, exponential-normal radial basis with a cosine envelope, depthwise
("separable") tensor products with radially-generated weights, the gated feed-forward network and
equivariant graph attention with MLP attention and non-linear messages.
"""

from __future__ import annotations

import math

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

from zoo.models.graph import scatter_softmax, scatter_sum


def gate_irreps(irreps_out: o3.Irreps) -> tuple[o3.Irreps, o3.Irreps, o3.Irreps]:
    """Split target irreps into (activated scalars, gate scalars, gated non-scalars)."""
    irreps_out = o3.Irreps(irreps_out).simplify()
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    gates = o3.Irreps([(gated.num_irreps, "0e")]) if gated.num_irreps > 0 else o3.Irreps("")
    return scalars, gates, gated


class GatedActivation(nn.Module):
    """SiLU on scalars, sigmoid gates on every non-scalar irrep (e3nn ``Gate``).

    Its input irreps are ``scalars + gates + gated``; its output irreps are ``irreps_out``.
    """

    def __init__(self, irreps_out: str | o3.Irreps) -> None:
        super().__init__()
        scalars, gates, gated = gate_irreps(o3.Irreps(irreps_out))
        if gated.num_irreps == 0:
            self.gate = e3nn_nn.Activation(scalars, [nn.functional.silu])
            self.irreps_in = scalars
        else:
            self.gate = e3nn_nn.Gate(
                scalars, [nn.functional.silu], gates, [torch.sigmoid], gated
            )
            self.irreps_in = self.gate.irreps_in
        self.irreps_out = self.gate.irreps_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x)


class EquivariantLayerNorm(nn.Module):
    """Layer norm per irrep type: scalars centred and scaled, ``l > 0`` scaled by their RMS norm.

    Affine weight per channel, bias on scalars only (biases on ``l > 0`` would break equivariance).
    """

    def __init__(self, irreps: str | o3.Irreps, eps: float = 1e-5) -> None:
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.irreps.num_irreps))
        n_scalars = sum(mul for mul, ir in self.irreps if ir.l == 0)
        self.bias = nn.Parameter(torch.zeros(n_scalars))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts, start, w_start, b_start = [], 0, 0, 0
        for mul, ir in self.irreps:
            size = 2 * ir.l + 1
            field = x[:, start : start + mul * size].reshape(-1, mul, size)
            start += mul * size
            weight = self.weight[w_start : w_start + mul]
            w_start += mul
            if ir.l == 0:
                field = field - field.mean(dim=1, keepdim=True)
            norm = field.pow(2).mean(dim=-1).mean(dim=1, keepdim=True)  # component normalisation
            field = field * torch.rsqrt(norm + self.eps).unsqueeze(-1) * weight[None, :, None]
            if ir.l == 0:
                field = field + self.bias[b_start : b_start + mul][None, :, None]
                b_start += mul
            parts.append(field.reshape(-1, mul * size))
        return torch.cat(parts, dim=-1)


class ExpNormalBasis(nn.Module):
    """Exponential-normal radial basis (PhysNet / TorchMD-Net) times a cosine cutoff envelope."""

    def __init__(self, num_basis: int, cutoff: float) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.alpha = 5.0 / cutoff
        start = math.exp(-cutoff)
        self.register_buffer("means", torch.linspace(start, 1.0, num_basis), persistent=False)
        width = (2.0 / num_basis * (1.0 - start)) ** -2
        self.register_buffer("betas", torch.full((num_basis,), width), persistent=False)

    def envelope(self, distance: torch.Tensor) -> torch.Tensor:
        """Cosine cutoff: 1 at 0, 0 with zero slope at the cutoff."""
        inside = distance < self.cutoff
        return 0.5 * (torch.cos(distance * math.pi / self.cutoff) + 1.0) * inside

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        d = distance.unsqueeze(-1)
        expo = torch.exp(-self.alpha * d)
        basis = torch.exp(-self.betas * (expo - self.means) ** 2)
        return basis * self.envelope(distance).unsqueeze(-1)


class RadialMLP(nn.Module):
    """Radial basis -> MLP (SiLU, layer norm) -> tensor-product weights per edge."""

    def __init__(self, sizes: list[int], num_weights: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.SiLU()]
        layers.append(nn.Linear(sizes[-1], num_weights))
        self.net = nn.Sequential(*layers)

    def forward(self, basis: torch.Tensor) -> torch.Tensor:
        return self.net(basis)


class DepthwiseTensorProduct(nn.Module):
    """Depthwise ("uvu") tensor product of features with edge harmonics, per-edge weights.

    Every channel ``u`` of input irrep ``i`` times harmonic ``j`` gives one output channel per
    allowed output irrep, scaled by its own weight ``w[e, path, u]``. Outputs are grouped by output
    irrep (all ``0e`` paths first, then ``1e``, ...), so the next linear layer sees a simplified
    irreps. Written on ``torch.split`` and batched matrix products rather than e3nn's generated
    code, whose per-irrep slicing makes every backward pass allocate a zero tensor of the full
    edge-feature size per slice (most of the training time on CPU).

    Parameters
    ----------
    irreps_in
        Input feature irreps.
    irreps_sh
        Edge spherical harmonics irreps (multiplicity 1 each).
    allowed_out
        Output irreps a path may produce (others are dropped, as in Equiformer's lmax cut).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, allowed_out: list) -> None:
        super().__init__()
        self.irreps_in, self.irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        paths = []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (mul_sh, ir_sh) in enumerate(self.irreps_sh):
                if mul_sh != 1:
                    raise ValueError("edge harmonics must have multiplicity 1")
                for ir_out in ir_in * ir_sh:
                    if ir_out in allowed_out:
                        paths.append((i, j, ir_out, mul))
        # Group by output irrep (stable), so outputs concatenate into a simplified irreps.
        order = sorted(range(len(paths)), key=lambda k: (paths[k][2].l, paths[k][2].p))
        self.paths = [paths[k] for k in order]
        self.irreps_out = o3.Irreps([(mul, ir) for _, _, ir, mul in self.paths]).simplify()
        self.weight_numel = sum(mul for *_, mul in self.paths)
        for l1, l2, l3 in {(self.irreps_in[i][1].l, self.irreps_sh[j][1].l, ir.l)
                           for i, j, ir, _ in self.paths}:
            # Named like e3nn's buffers so ZooModel re-derives them exactly after a dtype cast.
            self.register_buffer(f"_w3j_{l1}_{l2}_{l3}", o3.wigner_3j(l1, l2, l3),
                                 persistent=False)

    def forward(self, x: torch.Tensor, sh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        xs = [
            part.reshape(n, mul, ir.dim)
            for part, (mul, ir) in zip(
                torch.split(x, [mul * ir.dim for mul, ir in self.irreps_in], dim=-1),
                self.irreps_in, strict=True,
            )
        ]
        shs = torch.split(sh, [ir.dim for _, ir in self.irreps_sh], dim=-1)
        weights = torch.split(weight, [mul for *_, mul in self.paths], dim=-1)
        outs = []
        for (i, j, ir_out, _), w in zip(self.paths, weights, strict=True):
            l1, l2 = self.irreps_in[i][1].l, self.irreps_sh[j][1].l
            cg = getattr(self, f"_w3j_{l1}_{l2}_{ir_out.l}")
            # (sh . C) first: [E, 2l1+1, 2l3+1], then a batched product with the channels.
            coupling = torch.einsum("en,mnk->emk", shs[j], cg) * math.sqrt(ir_out.dim)
            outs.append(torch.bmm(xs[i], coupling) * w.unsqueeze(-1))
        grouped, start = [], 0
        for mul, ir in self.irreps_out:
            members, total = [], 0
            while total < mul:
                members.append(outs[start])
                total += outs[start].shape[1]
                start += 1
            grouped.append(torch.cat(members, dim=1).reshape(n, mul * ir.dim))
        return torch.cat(grouped, dim=-1)


class SeparableTensorProduct(nn.Module):
    """Depthwise tensor product with edge spherical harmonics, then a linear layer.

    Each input channel is multiplied by each harmonic into every allowed output ``l`` (up to the
    largest ``l`` of ``irreps_out``), with weights generated per edge from the radial basis.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_out: o3.Irreps,
        radial_sizes: list[int],
        activation: bool = False,
    ) -> None:
        super().__init__()
        irreps_in, irreps_sh, irreps_out = map(o3.Irreps, (irreps_in, irreps_sh, irreps_out))
        allowed = sorted({ir for _, ir in irreps_out} | {o3.Irrep("0e")})
        self.dtp = DepthwiseTensorProduct(irreps_in, irreps_sh, allowed)
        self.radial = RadialMLP(radial_sizes, self.dtp.weight_numel)
        self.irreps_mid = self.dtp.irreps_out
        if activation:
            self.activation = GatedActivation(irreps_out)
            self.linear = o3.Linear(self.irreps_mid, self.activation.irreps_in)
        else:
            self.activation = None
            self.linear = o3.Linear(self.irreps_mid, irreps_out)
        self.irreps_out = o3.Irreps(irreps_out)

    def depthwise(self, x: torch.Tensor, sh: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        return self.dtp(x, sh, self.radial(basis))

    def project(self, mid: torch.Tensor) -> torch.Tensor:
        out = self.linear(mid)
        return out if self.activation is None else self.activation(out)

    def forward(self, x: torch.Tensor, sh: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        return self.project(self.depthwise(x, sh, basis))


class FeedForward(nn.Module):
    """Gated feed-forward network: linear -> gate -> linear (the relaxation site of a block)."""

    def __init__(self, irreps_in: o3.Irreps, irreps_mid: o3.Irreps, irreps_out: o3.Irreps) -> None:
        super().__init__()
        self.activation = GatedActivation(irreps_mid)
        self.linear_in = o3.Linear(irreps_in, self.activation.irreps_in, biases=True)
        self.linear_out = o3.Linear(self.activation.irreps_out, irreps_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_out(self.activation(self.linear_in(x)))


def _head_index(irreps: o3.Irreps, num_heads: int) -> torch.Tensor:
    """Head of every feature dimension when ``irreps`` is ``num_heads`` stacked copies per type."""
    index = []
    for mul, ir in o3.Irreps(irreps):
        if mul % num_heads:
            raise ValueError(f"multiplicity {mul} of {ir} is not divisible by {num_heads} heads")
        per_head = mul // num_heads
        for h in range(num_heads):
            index += [h] * (per_head * ir.dim)
    return torch.tensor(index, dtype=torch.long)


class GraphAttention(nn.Module):
    """Equivariant graph attention with MLP attention and non-linear messages.

    ``message = W_src x_j + W_dst x_i``; a separable tensor product with the edge harmonics gives
    (a) attention logits from its scalars through a leaky-ReLU MLP, one per head, and (b) through a
    gate and a second separable tensor product, the values. Softmax over incoming edges (weighted
    by the cutoff envelope), messages scaled by the envelope too, sum, linear projection.
    """

    def __init__(
        self,
        irreps_node: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_head: o3.Irreps,
        num_heads: int,
        radial_sizes: list[int],
    ) -> None:
        super().__init__()
        irreps_node, irreps_head = o3.Irreps(irreps_node), o3.Irreps(irreps_head)
        self.num_heads = num_heads
        irreps_value = o3.Irreps([(mul * num_heads, ir) for mul, ir in irreps_head])
        self.alpha_channels = sum(mul for mul, ir in irreps_head if ir.l == 0)
        self.merge_src = o3.Linear(irreps_node, irreps_node, biases=True)
        self.merge_dst = o3.Linear(irreps_node, irreps_node, biases=False)
        self.message = SeparableTensorProduct(
            irreps_node, irreps_sh, irreps_node, radial_sizes, activation=True
        )
        self.alpha_linear = o3.Linear(
            self.message.irreps_mid, o3.Irreps(f"{self.alpha_channels * num_heads}x0e")
        )
        self.alpha_dot = nn.Parameter(torch.randn(num_heads, self.alpha_channels))
        nn.init.uniform_(self.alpha_dot, -1 / math.sqrt(self.alpha_channels),
                         1 / math.sqrt(self.alpha_channels))
        self.value = SeparableTensorProduct(irreps_node, irreps_sh, irreps_value, radial_sizes)
        self.register_buffer("head_index", _head_index(irreps_value, num_heads), persistent=False)
        self.proj = o3.Linear(irreps_value, irreps_node)

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        sh: torch.Tensor,
        basis: torch.Tensor,
        envelope: torch.Tensor,
    ) -> torch.Tensor:
        src, dst = edge_index
        message = self.merge_src(x)[src] + self.merge_dst(x)[dst]
        mid = self.message.depthwise(message, sh, basis)
        logits = self.alpha_linear(mid).reshape(-1, self.num_heads, self.alpha_channels)
        logits = (nn.functional.leaky_relu(logits, 0.2) * self.alpha_dot).sum(-1)
        alpha = scatter_softmax(logits, dst, x.shape[0], weights=envelope)
        value = self.value(self.message.project(mid), sh, basis)
        # The envelope also scales every message: a node's last neighbour keeps alpha = 1 up to
        # the cutoff, so without it the energy would jump when that neighbour leaves.
        attended = value * (alpha * envelope.unsqueeze(-1))[:, self.head_index]
        return self.proj(scatter_sum(attended, dst, x.shape[0]))
