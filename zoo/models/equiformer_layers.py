"""Building blocks of Equiformer (Liao & Smidt, ICLR 2023), written on e3nn.

Equivariant layer norm, exponential-normal radial basis with a cosine envelope, depthwise
("separable") tensor products with radially-generated weights, the gated feed-forward network and
equivariant graph attention with MLP attention and non-linear messages.
"""

from __future__ import annotations

import math
from typing import Any

import torch
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
    """SiLU on scalars, sigmoid gates on every non-scalar irrep (e3nn's ``Gate``, on splits).

    Input irreps: ``scalars + gates + gated`` (:attr:`irreps_in`); output: ``irreps_out``.
    Activations are normalised to unit second moment, as in e3nn.
    """

    def __init__(self, irreps_out: str | o3.Irreps) -> None:
        super().__init__()
        from e3nn.math import normalize2mom

        scalars, gates, gated = gate_irreps(o3.Irreps(irreps_out))
        self.scalars, self.gates, self.gated = scalars, gates, gated
        self.irreps_in = scalars + gates + gated
        self.irreps_out = scalars + gated
        self.silu_scale = float(normalize2mom(nn.functional.silu).cst)
        self.sigmoid_scale = float(normalize2mom(torch.sigmoid).cst)
        self.split_sizes = [scalars.dim, gates.dim, gated.dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, g, v = torch.split(x, self.split_sizes, dim=-1)
        s = nn.functional.silu(s) * self.silu_scale
        if self.gated.dim == 0:
            return s
        g = torch.sigmoid(g) * self.sigmoid_scale
        parts, gate_parts = [], torch.split(g, [mul for mul, _ in self.gated], dim=-1)
        for part, gate, (mul, ir) in zip(
            torch.split(v, [mul * ir.dim for mul, ir in self.gated], dim=-1),
            gate_parts, self.gated, strict=True,
        ):
            gated = part.reshape(-1, mul, ir.dim) * gate.unsqueeze(-1)
            parts.append(gated.reshape(-1, mul * ir.dim))
        return torch.cat([s, *parts], dim=-1)


class IrrepsLinear(nn.Module):
    """Equivariant linear map between irreps (e3nn's ``o3.Linear``, on splits and einsums).

    Channels of the same irrep type are mixed by one weight matrix per type, normalised by the
    fan-in; biases only on scalar outputs. Avoids e3nn's per-irrep slicing, whose backward
    allocates a full-size zero gradient per slice.
    """

    def __init__(self, irreps_in: str | o3.Irreps, irreps_out: str | o3.Irreps,
                 biases: bool = False) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        types = []
        for _, ir in self.irreps_out:
            if ir not in types and any(i == ir for _, i in self.irreps_in):
                types.append(ir)
        self.types = types
        self.weights = nn.ParameterList([
            nn.Parameter(torch.randn(
                sum(m for m, i in self.irreps_in if i == ir),
                sum(m for m, i in self.irreps_out if i == ir),
            ))
            for ir in types
        ])
        n_bias = sum(m for m, i in self.irreps_out if i.l == 0 and i.p == 1) if biases else 0
        self.bias = nn.Parameter(torch.zeros(n_bias)) if n_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        chunks = torch.split(x, [mul * ir.dim for mul, ir in self.irreps_in], dim=-1)
        results: dict = {}
        for ir, weight in zip(self.types, self.weights, strict=True):
            inputs = [c.reshape(*lead, mul, ir.dim)
                      for c, (mul, i) in zip(chunks, self.irreps_in, strict=True) if i == ir]
            stacked = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-2)
            y = torch.einsum("...md,mo->...od", stacked, weight) / math.sqrt(weight.shape[0])
            results[ir] = list(torch.split(
                y, [m for m, i in self.irreps_out if i == ir], dim=-2
            ))
        outs, bias_start = [], 0
        for mul, ir in self.irreps_out:
            if ir in results:
                out = results[ir].pop(0).reshape(*lead, mul * ir.dim)
            else:
                out = x.new_zeros((*lead, mul * ir.dim))
            if self.bias is not None and ir.l == 0 and ir.p == 1:
                out = out + self.bias[bias_start : bias_start + mul]
                bias_start += mul
            outs.append(out)
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)


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
        parts, w_start, b_start = [], 0, 0
        chunks = torch.split(x, [mul * ir.dim for mul, ir in self.irreps], dim=-1)
        for chunk, (mul, ir) in zip(chunks, self.irreps, strict=True):
            size = ir.dim
            field = chunk.reshape(-1, mul, size)
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
        # Per input irrep: its paths, and one coupling tensor [2l1+1, sh.dim, sum(2l3+1)] that
        # holds every Clebsch-Gordan block of those paths, so each input irrep costs one einsum
        # and one batched product instead of one per path.
        self.inputs_paths = [[k for k, p in enumerate(self.paths) if p[0] == i]
                             for i in range(len(self.irreps_in))]
        self.refresh_constants(torch.get_default_dtype())

    @torch.no_grad()
    def refresh_constants(self, dtype: torch.dtype, device: Any = None) -> None:
        """(Re)build the coupling tensors exactly (from float64) in ``dtype``."""
        sh_offsets = [0]
        for _, ir in self.irreps_sh:
            sh_offsets.append(sh_offsets[-1] + ir.dim)
        for i, (_, ir_in) in enumerate(self.irreps_in):
            blocks = []
            for k in self.inputs_paths[i]:
                _, j, ir_out, _ = self.paths[k]
                cg = o3.wigner_3j(ir_in.l, self.irreps_sh[j][1].l, ir_out.l, dtype=torch.float64)
                block = torch.zeros(ir_in.dim, self.irreps_sh.dim, ir_out.dim,
                                    dtype=torch.float64)
                block[:, sh_offsets[j] : sh_offsets[j + 1], :] = cg * math.sqrt(ir_out.dim)
                blocks.append(block)
            coupling = (torch.cat(blocks, dim=-1) if blocks
                        else torch.zeros(ir_in.dim, self.irreps_sh.dim, 0, dtype=torch.float64))
            self.register_buffer(f"coupling_{i}", coupling.to(dtype=dtype, device=device),
                                 persistent=False)

    def forward(self, x: torch.Tensor, sh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        chunks = torch.split(x, [mul * ir.dim for mul, ir in self.irreps_in], dim=-1)
        weights = torch.split(weight, [mul for *_, mul in self.paths], dim=-1)
        outs: list[torch.Tensor | None] = [None] * len(self.paths)
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            if not self.inputs_paths[i]:
                continue
            coupling = torch.einsum("en,mnk->emk", sh, getattr(self, f"coupling_{i}"))
            y = torch.bmm(chunks[i].reshape(n, mul, ir_in.dim), coupling)
            sizes = [self.paths[k][2].dim for k in self.inputs_paths[i]]
            for k, part in zip(self.inputs_paths[i], torch.split(y, sizes, dim=-1), strict=True):
                outs[k] = part * weights[k].unsqueeze(-1)
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
            self.linear = IrrepsLinear(self.irreps_mid, self.activation.irreps_in)
        else:
            self.activation = None
            self.linear = IrrepsLinear(self.irreps_mid, irreps_out)
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
        self.linear_in = IrrepsLinear(irreps_in, self.activation.irreps_in, biases=True)
        self.linear_out = IrrepsLinear(self.activation.irreps_out, irreps_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_out(self.activation(self.linear_in(x)))


def smooth_leaky_relu(x: torch.Tensor, negative_slope: float = 0.2) -> torch.Tensor:
    """Leaky ReLU without the kink at 0 (as in the reference Equiformer).

    ``x * ((1 + a) / 2 + (1 - a) / 2 * tanh(x / 2))``: slope ``a`` far below 0 and 1 far above.
    A plain leaky ReLU on the attention logits makes forces jump wherever a logit crosses 0.
    """
    a = negative_slope
    return x * ((1 + a) / 2 + (1 - a) / 2 * (2 * torch.sigmoid(x) - 1))


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
    (a) attention logits from its scalars through a smooth leaky-ReLU MLP, one per head, and
    (b) through a gate and a second separable tensor product, the values. Softmax over incoming
    edges (weighted by the cutoff envelope), messages scaled by the envelope too, sum, linear
    projection.
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
        self.merge_src = IrrepsLinear(irreps_node, irreps_node, biases=True)
        self.merge_dst = IrrepsLinear(irreps_node, irreps_node, biases=False)
        self.message = SeparableTensorProduct(
            irreps_node, irreps_sh, irreps_node, radial_sizes, activation=True
        )
        self.alpha_linear = IrrepsLinear(
            self.message.irreps_mid, o3.Irreps(f"{self.alpha_channels * num_heads}x0e")
        )
        self.alpha_dot = nn.Parameter(torch.randn(num_heads, self.alpha_channels))
        nn.init.uniform_(self.alpha_dot, -1 / math.sqrt(self.alpha_channels),
                         1 / math.sqrt(self.alpha_channels))
        self.value = SeparableTensorProduct(irreps_node, irreps_sh, irreps_value, radial_sizes)
        self.register_buffer("head_index", _head_index(irreps_value, num_heads), persistent=False)
        self.proj = IrrepsLinear(irreps_value, irreps_node)

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
        logits = (smooth_leaky_relu(logits, 0.2) * self.alpha_dot).sum(-1)
        alpha = scatter_softmax(logits, dst, x.shape[0], weights=envelope)
        value = self.value(self.message.project(mid), sh, basis)
        # The envelope also scales every message: a node's last neighbour keeps alpha = 1 up to
        # the cutoff, so without it the energy would jump when that neighbour leaves.
        attended = value * (alpha * envelope.unsqueeze(-1))[:, self.head_index]
        return self.proj(scatter_sum(attended, dst, x.shape[0]))
