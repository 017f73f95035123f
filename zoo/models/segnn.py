"""SEGNN for the charged N-body task (Brandstetter, Hesselink, van der Pol, Bekkers & Welling,
"Geometric and Physical Quantities improve E(3) Equivariant Message Passing", ICLR 2022,
arXiv 2021; its N-body configuration).

Steerable node features ``S x 0e + S x 1o`` ("weight balanced": as many weights per tensor
product as a ``hidden_features``-wide linear layer) on the fully connected graph of each system
(``i`` receives from ``j``)::

    a_ij = Y(x_j - x_i)                     edge attribute, Y = spherical harmonics l <= 1
    a_i  = (1, mean_j Y_1(x_j - x_i) + Y_1(v_i))    node attribute
    f_i  = TP(|v_i|, x_i - c, v_i; a_i)     embedding (c: the system's centroid)
    m_ij = TPg(TPg(f_i, f_j, |x_i - x_j|, q_i q_j; a_ij); a_ij)
    f_i <- f_i + TP(TPg(f_i, sum_j m_ij; a_i); a_i)             node update (residual)
    x_i' = x_i + TP(TPg(f_i; a_i); a_i)      output: a 1o vector added to the position

``TP(.; a)`` is a fully connected O(3) tensor product with the attribute ``a`` and ``TPg`` the
same followed by a gated nonlinearity (:mod:`zoo.models.segnn_layers`). Every feature is a
scalar (0e) or a polar vector (1o), so the model is exactly E(3) x S_n equivariant, reflections
included.

As in the reference (RobDHess/Steerable-E3-GNN, ``nbody/train_nbody.py`` and ``models/segnn``):
integral-normalised spherical harmonics, the node attribute's scalar set to 1, the distance
(not its square) and the charge product as extra message scalars, no normalisation layers,
sum aggregation. Differences, each for a reason:

- positions are centred per system (the reference subtracts a per-particle mean over x, y, z,
  which breaks rotation equivariance: METHODS.md defect (c));
- the tensor products are written out for l <= 1 instead of e3nn's generic kernels (same
  function class and initialisation, several times faster on a CPU); the first message layer
  mixes channels per node before gathering to edges (the same linear map);
- directions of zero vectors (a particle at rest) are zero instead of NaN.

Relaxation sites: the node-update layers (METHODS.md), ``layers.{k}.update``, whose first input is
``[f_i, sum_j m_ij]`` in e3nn's layout (``2Sx0e+2Sx1o``) and output the update (``Sx0e+Sx1o``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from zoo._registry import register_architecture
from zoo.models.base import RelaxationSite
from zoo.models.nbody_common import NBodyModel, SystemGraph, graph_mean, read_system
from zoo.models.segnn_layers import GatedL1TensorProduct, L1TensorProduct, pack, unpack
from zoo.relax.representations import IrrepsRep

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's N-body configuration: 64 hidden features (-> 32x0e+32x1o), l <= 1, 4 layers.
    "nbody": dict(hidden_features=64, num_layers=4, lmax=1),
    "tiny": dict(hidden_features=8, num_layers=2, lmax=1),
}

SH0 = 1.0 / math.sqrt(4.0 * math.pi)  # e3nn "integral" normalisation, as in the reference
SH1 = math.sqrt(3.0 / (4.0 * math.pi))
NODE_SCALAR = 1.0  # the reference sets the node attribute's scalar to 1 for every node
MESSAGE_SCALARS = 2  # |x_i - x_j|, q_i q_j


def weight_balanced_multiplicity(hidden_features: int) -> int:
    """Multiplicity ``n`` of ``n x 0e + n x 1o`` giving a tensor product with ``0e + 1o``
    attributes at least the weights of a ``hidden_features``-wide linear layer.

    That tensor product has four paths of ``n^2`` weights each, so ``n = ceil(F / 2)`` (the
    reference's ``WeightBalancedIrreps`` with ``lmax = 1``: 64 features -> ``32x0e+32x1o``).
    """
    return math.ceil(hidden_features / 2)


def _directions(vectors: torch.Tensor) -> torch.Tensor:
    """Unit vectors; zero where the vector is zero."""
    norm = vectors.norm(dim=-1, keepdim=True)
    return vectors / norm.clamp_min(torch.finfo(vectors.dtype).tiny)


class SEGNNNodeUpdate(nn.Module):
    """Node update ``TP(TPg([f_i, m_i]; a_i); a_i)``, a relaxation site.

    The first input is ``[f_i, m_i]`` packed in e3nn's layout (``2Sx0e+2Vx1o``: the scalars of
    ``f`` then of ``m``, then the vectors of ``f`` then of ``m``); the output, ``Sx0e+Vx1o`` in the
    same layout, is added to ``f_i``.
    """

    def __init__(self, scalars: int, vectors: int) -> None:
        super().__init__()
        self.scalars = scalars
        self.layer_1 = GatedL1TensorProduct(2 * scalars, 2 * vectors, scalars, vectors,
                                            NODE_SCALAR)
        self.layer_2 = L1TensorProduct(scalars, vectors, scalars, vectors, NODE_SCALAR)

    def forward(self, packed: torch.Tensor, node_vector: torch.Tensor) -> torch.Tensor:
        s, v = unpack(packed, 2 * self.scalars)
        s, v = self.layer_1(s, v, node_vector)
        return pack(*self.layer_2(s, v, node_vector))


class SEGNNLayer(nn.Module):
    """Message passing layer: two gated tensor products per edge, sum, residual node update."""

    def __init__(self, scalars: int, vectors: int) -> None:
        super().__init__()
        self.scalars, self.vectors = scalars, vectors
        self.message_1 = GatedL1TensorProduct(
            2 * scalars + MESSAGE_SCALARS, 2 * vectors, scalars, vectors, SH0
        )
        self.message_2 = GatedL1TensorProduct(scalars, vectors, scalars, vectors, SH0)
        self.update = SEGNNNodeUpdate(scalars, vectors)

    def first_message(self, s, v, graph, edge_vector, edge_scalars):
        """``TPg([f_i, f_j, |x_i - x_j|, q_i q_j]; a_ij)`` for every edge ``j -> i``.

        The paths that do not contract ``f`` with ``a_ij`` are linear in ``f``: they are mixed per
        node (4x fewer rows than edges) and gathered; the ``1o x 1o -> 0e`` path is contracted
        per edge first, so edge tensors stay as narrow as the output.
        """
        n_s, n_v = self.scalars, self.vectors
        tp = self.message_1
        ws, wv, bias = tp.mixing_weights()
        vs, vv = wv.split([tp.out_scalars, tp.out_vectors])
        a1 = edge_vector.unsqueeze(-1)
        ys = torch.addmm(
            graph.pair(torch.addmm(bias, s, ws[:, :n_s].T), s @ ws[:, n_s : 2 * n_s].T),
            edge_scalars, ws[:, 2 * n_s :].T,
        )
        ss, sv = ys.split([tp.out_scalars, tp.out_vectors], dim=1)
        ss = torch.addmm(ss, graph.at_target(v, a1, torch.mul).sum(1), vs[:, :n_v].T)
        ss = torch.addmm(ss, (v.index_select(0, graph.src) * a1).sum(1), vs[:, n_v:].T)
        yvv = graph.pair(v @ vv[:, :n_v].T, v @ vv[:, n_v:].T)
        return tp.activation(ss, torch.addcmul(yvv, a1, sv.unsqueeze(1)))

    def forward(self, s, v, graph, edge_vector, edge_scalars, node_vector):
        ms, mv = self.first_message(s, v, graph, edge_vector, edge_scalars)
        ms, mv = self.message_2(ms, mv, edge_vector)
        packed = pack(torch.cat([s, graph.sum_at_target(ms)], dim=-1),
                      torch.cat([v, graph.sum_at_target(mv)], dim=-1))
        us, uv = unpack(self.update(packed, node_vector), self.scalars)
        return s + us, v + uv


@register_architecture("segnn", presets=PRESETS, default_preset="nbody")
class SEGNN(NBodyModel):
    """Steerable E(3)-equivariant graph network predicting future N-body positions.

    Parameters
    ----------
    hidden_features
        Width of the equivalent scalar network; the hidden irreps are ``nx0e+nx1o`` with
        ``n = ceil(hidden_features / 2)`` (weight balanced, as in the reference).
    num_layers
        Message-passing layers.
    lmax
        Largest degree of hidden features and attributes; only ``1`` (the paper's N-body
        setting) is implemented.

    Notes
    -----
    Reference: J. Brandstetter, R. Hesselink, E. van der Pol, E. J. Bekkers, M. Welling,
    "Geometric and Physical Quantities improve E(3) Equivariant Message Passing", ICLR 2022
    (arXiv:2110.02905, 2021); code: RobDHess/Steerable-E3-GNN.
    """

    def __init__(self, hidden_features: int = 64, num_layers: int = 4, lmax: int = 1) -> None:
        super().__init__()
        if lmax != 1:
            raise ValueError(f"SEGNN here implements lmax = 1 only, got lmax = {lmax}")
        n = weight_balanced_multiplicity(hidden_features)
        self.scalars = self.vectors = n
        # Input: |v_i| (0e); x_i - c and v_i (2x1o).
        self.embedding = L1TensorProduct(1, 2, n, n, NODE_SCALAR)
        self.layers = nn.ModuleList(SEGNNLayer(n, n) for _ in range(num_layers))
        self.head_1 = GatedL1TensorProduct(n, n, n, n, NODE_SCALAR)
        self.head_2 = L1TensorProduct(n, n, 0, 1, NODE_SCALAR)

    @property
    def hidden_irreps(self) -> str:
        """Irreps of the node features, e.g. ``"32x0e+32x1o"``."""
        return f"{self.scalars}x0e+{self.vectors}x1o"

    def forward(self, data: Any) -> dict[str, torch.Tensor]:
        pos, vel, charge, batch, n_graphs = read_system(data)
        graph = SystemGraph(batch)
        n = pos.shape[0]
        x = pos - graph_mean(pos, batch, n_graphs)
        relative = graph.pair(-x, x)  # x_j - x_i for the edge j -> i
        distance = relative.norm(dim=-1, keepdim=True)
        # Attributes (a0, a1): a0 is constant, SH0 on edges and NODE_SCALAR on nodes.
        edge_vector = SH1 * _directions(relative)
        degree = torch.bincount(graph.dst, minlength=n).clamp_min(1).to(pos.dtype).unsqueeze(-1)
        node_vector = graph.sum_at_target(edge_vector) / degree + SH1 * _directions(vel)
        charges = graph.at_target(charge, charge.index_select(0, graph.src), torch.mul)
        edge_scalars = torch.cat([distance, charges], dim=-1)

        s, v = self.embedding(vel.norm(dim=-1, keepdim=True), torch.stack([x, vel], -1),
                              node_vector)
        for layer in self.layers:
            s, v = layer(s, v, graph, edge_vector, edge_scalars, node_vector)
        s, v = self.head_1(s, v, node_vector)
        _, displacement = self.head_2(s, v, node_vector)
        return {"pos": pos + displacement[..., 0]}

    def relaxation_sites(self) -> list[RelaxationSite]:
        """The node update of every layer (METHODS.md: "SEGNN: the node-update layers")."""
        rep_in = IrrepsRep(f"{2 * self.scalars}x0e+{2 * self.vectors}x1o")
        rep_out = IrrepsRep(self.hidden_irreps)
        return [RelaxationSite(f"layers.{k}.update", rep_in, rep_out)
                for k in range(len(self.layers))]
