"""O(3) tensor products of degree <= 1 features with ``0e + 1o`` attributes, written out by hand.

SEGNN's layers are e3nn ``FullyConnectedTensorProduct``s of steerable features with node or edge
attributes. For features ``S x 0e + V x 1o`` and attributes ``a = (a0: 0e, a1: 1o)`` the
Clebsch-Gordan paths are four cheap contractions::

    0e x 0e -> 0e   s a0            0e x 1o -> 1o   s a1
    1o x 1o -> 0e   (v . a1) / sqrt(3)              1o x 0e -> 1o   v a0

(the cross product ``1o x 1o -> 1e`` has no ``1e`` output to go to). e3nn's generic kernels
allocate heavily in backward on a CPU; these are plain matmuls and products, several times
faster, and exactly O(3) equivariant.

Conventions, matching the reference ``O3TensorProduct`` (RobDHess/Steerable-E3-GNN) on e3nn's
``component`` normalisation: each path has a weight per (input channel, output channel),
initialised ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in`` the number of input channels
over all paths into that output irrep, the output is not rescaled further (the reference
divides e3nn's path normalisation back out), and scalar outputs have a bias.

Layouts. Inside these layers a feature is a pair ``(s [R, S], v [R, 3, V])`` (vectors
component-major, so that channel mixing is one matmul). Across module boundaries that a
relaxation branch sees, features use e3nn's flat layout ``[R, S + 3V]`` (vector ``u`` at
``S + 3u + m``, components x, y, z): :func:`pack` and :func:`unpack` convert.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INV_SQRT3 = 1.0 / math.sqrt(3.0)
# e3nn's Gate normalises its activations to unit second moment under N(0, 1) inputs
# (``e3nn.math.normalize2mom``, a Monte Carlo estimate there: 1.6792, 1.8467); these are the
# exact values, by 200-point Gauss-Hermite quadrature.
SILU_NORM = 1.6765324703310918
SIGMOID_NORM = 1.8462285453386056


def pack(s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(s [R, S], v [R, 3, V])`` -> e3nn layout ``[R, S + 3V]`` (irreps ``Sx0e+Vx1o``)."""
    return torch.cat([s, v.transpose(-1, -2).flatten(-2)], dim=-1)


def unpack(x: torch.Tensor, scalars: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack`: ``x [R, S + 3V]`` -> ``(s [R, S], v [R, 3, V])``."""
    s, v = x[..., :scalars], x[..., scalars:]
    return s, v.unflatten(-1, (-1, 3)).transpose(-1, -2).contiguous()


class L1TensorProduct(nn.Module):
    """Fully connected tensor product ``(S x 0e + V x 1o) x (a0 + 1o) -> (S' x 0e + V' x 1o)``.

    The same function class and initialisation as the reference SEGNN's ``O3TensorProduct``
    (an e3nn ``FullyConnectedTensorProduct`` with attributes ``1x0e+1x1o``, weights rescaled like
    ``torch.nn.Linear``, a bias on scalar outputs), for attributes whose scalar part ``a0`` is a
    constant (as in SEGNN's N-body model: ``1/sqrt(4 pi)`` on edges, 1 on nodes).

    Parameters
    ----------
    in_scalars, in_vectors
        Input multiplicities ``S``, ``V``.
    out_scalars, out_vectors
        Output multiplicities ``S'``, ``V'``.
    attribute_scalar
        The constant ``a0``.

    Notes
    -----
    ``weight_scalar`` ``[S' + V', S]`` holds the paths from input scalars (``0e x 0e -> 0e`` in
    its first ``S'`` rows, ``0e x 1o -> 1o`` in the rest); ``weight_vector`` ``[S' + V', V]`` the
    paths from input vectors (``1o x 1o -> 0e``, then ``1o x 0e -> 1o``).

    :meth:`forward` contracts ``v`` with ``a1`` before mixing channels (fewest operations for
    one row per input). Mixing commutes with the contraction, so a message layer may instead mix
    per node with :meth:`mixing_weights` and contract per edge with :meth:`contract`.
    """

    def __init__(
        self, in_scalars: int, in_vectors: int, out_scalars: int, out_vectors: int,
        attribute_scalar: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_scalars, self.in_vectors = in_scalars, in_vectors
        self.out_scalars, self.out_vectors = out_scalars, out_vectors
        self.attribute_scalar = float(attribute_scalar)
        rows = out_scalars + out_vectors
        self.weight_scalar = nn.Parameter(torch.empty(rows, in_scalars))
        self.weight_vector = nn.Parameter(torch.empty(rows, in_vectors))
        self.bias = nn.Parameter(torch.empty(out_scalars)) if out_scalars else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Every output irrep (0e and 1o alike) receives one path from each input channel.
        bound = 1.0 / math.sqrt(max(self.in_scalars + self.in_vectors, 1))
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    def path_weights(self) -> tuple[torch.Tensor, ...]:
        """The four paths' ``[out, in]`` weights with the constants of the contraction folded
        in: ``0e x 0e -> 0e`` (times ``a0``), ``0e x 1o -> 1o``, ``1o x 1o -> 0e`` (times
        ``1/sqrt(3)``), ``1o x 0e -> 1o`` (times ``a0``)."""
        sizes = [self.out_scalars, self.out_vectors]
        ss, sv = self.weight_scalar.split(sizes)
        vs, vv = self.weight_vector.split(sizes)
        a0 = self.attribute_scalar
        return ss * a0, sv, vs * INV_SQRT3, vv * a0

    def forward(self, s: torch.Tensor, v: torch.Tensor, a1: torch.Tensor):
        """``(s [R, S], v [R, 3, V])`` with the attribute vector ``a1 [R, 3]`` ->
        ``(s' [R, S'], v' [R, 3, V'])``."""
        ss, sv, vs, vv = self.path_weights()
        a1 = a1.unsqueeze(-1)
        v_out = torch.addcmul(v @ vv.T, a1, (s @ sv.T).unsqueeze(1))
        if self.bias is None:
            return s.new_zeros(s.shape[0], 0), v_out
        s_out = torch.addmm(torch.addmm(self.bias, s, ss.T), (v * a1).sum(1), vs.T)
        return self.activation(s_out, v_out)

    def mixing_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For mixing before contracting: ``[S' + V', S]`` and ``[S' + V', V]`` weights (rows:
        scalar outputs then vector outputs) and the bias padded to ``[S' + V']``."""
        ss, sv, vs, vv = self.path_weights()
        bias = ss.new_zeros(self.out_vectors)
        if self.bias is not None:
            bias = torch.cat([self.bias, bias])
        return torch.cat([ss, sv]), torch.cat([vs, vv]), bias

    def contract(
        self, ys: torch.Tensor, yv: torch.Tensor, a1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Contract inputs mixed with :meth:`mixing_weights` (``ys [R, S' + V']`` with the bias,
        ``yv [R, 3, S' + V']``) with the attribute vector ``a1 [R, 3]``."""
        sizes = [self.out_scalars, self.out_vectors]
        ss, sv = ys.split(sizes, dim=1)
        vs, vv = yv.split(sizes, dim=2)
        a1 = a1.unsqueeze(-1)
        return self.activation(ss + (vs * a1).sum(1), torch.addcmul(vv, a1, sv.unsqueeze(1)))

    def activation(self, s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Applied to the output (identity here; the gate in :class:`GatedL1TensorProduct`)."""
        return s, v

    def extra_repr(self) -> str:
        return (f"{self.in_scalars}x0e+{self.in_vectors}x1o -> "
                f"{self.out_scalars}x0e+{self.out_vectors}x1o, a0={self.attribute_scalar:.4g}")


def gate(s: torch.Tensor, v: torch.Tensor, scalars: int) -> tuple[torch.Tensor, torch.Tensor]:
    """e3nn's ``Gate``: SiLU on the first ``scalars`` scalars, sigmoid of the remaining ``V``
    scalars scaling the ``V`` vectors (both activations normalised as in e3nn)."""
    kept, gates = s.split([scalars, s.shape[1] - scalars], dim=1)
    gates = torch.sigmoid(gates) * SIGMOID_NORM
    return nn.functional.silu(kept) * SILU_NORM, v * gates.unsqueeze(1)


class GatedL1TensorProduct(L1TensorProduct):
    """:class:`L1TensorProduct` to ``S' x 0e`` + ``V'`` gates + ``V' x 1o``, then :func:`gate`
    (the reference ``O3TensorProductSwishGate``)."""

    def __init__(
        self, in_scalars: int, in_vectors: int, out_scalars: int, out_vectors: int,
        attribute_scalar: float = 1.0,
    ) -> None:
        super().__init__(in_scalars, in_vectors, out_scalars + out_vectors, out_vectors,
                         attribute_scalar)
        self.gated_scalars = out_scalars

    def activation(self, s, v):
        return gate(s, v, self.gated_scalars)
