"""EGNN for the charged N-body task (Satorras, Hoogeboom & Welling, "E(n) Equivariant Graph
Neural Networks", ICML 2021; the ``EGNN_vel`` model of their N-body experiment).

Per layer, on the fully connected graph of each system (``i`` receives from ``j``)::

    m_ij = phi_e(h_i, h_j, |x_i - x_j|^2, q_i q_j, |x0_i - x0_j|^2)
    x_i <- x_i + C sum_j (x_i - x_j) phi_x(m_ij) + phi_v(h_i) v_i        C = 1 / (n_i - 1)
    h_i <- h_i + phi_h(h_i, sum_j m_ij)

with ``h_i`` initialised as an embedding of the speed ``|v_i|`` and ``x0`` the input positions
(the reference feeds both the current and the initial squared distance to ``phi_e``).
The output is the final ``x``. It is exactly E(3) x S_n equivariant: only distances, speeds,
charges and the vectors ``x_i - x_j`` and ``v_i`` enter.

Differences from the reference implementation (vgsatorras/egnn), each for a reason:

- positions are centred per system before the layers and the centroid added back (exact
  translation equivariance by construction; the reference relies on the update's form);
- the reference clamps every component of ``(x_i - x_j) phi_x`` to +-100 ("never activated");
  a component-wise clamp is not rotation equivariant, so it is dropped;
- the first layer of ``phi_e`` is applied to ``h`` per node before gathering to edges (the
  same linear map, fewer operations);
- the last layer has no feature update ``phi_h``: the reference computes it and discards it
  (only positions are output), so its weights would never be trained.

Relaxation sites: a dense branch on purely invariant inputs would itself be invariant, so each
site's first input carries the geometric vectors the branch may use (METHODS.md):

- ``layers.{k}.node_update`` (``phi_h``, every layer but the last): input
  ``[h_i, m_i, x_i - c, v_i]`` (``Hx0e+Hx0e+1x1o+1x1o``, ``c`` the system's centroid), output
  ``Hx0e``;
- ``layers.{k}.coord_update`` (``phi_v`` and the displacement sum): input
  ``[h_i, C sum_j (x_i - x_j) phi_x(m_ij), x_i - c, v_i]`` (``Hx0e+1x1o+1x1o+1x1o``), output the
  displacement of ``x_i`` (``1x1o``).

The base modules read only their equivariant part of the input, so with a zero branch (or after
projection) the model is exactly the base EGNN. Branch inputs are translation invariant and
per particle, so a relaxed model stays translation and permutation equivariant.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo._registry import register_architecture
from zoo.models.base import RelaxationSite
from zoo.models.nbody_common import NBodyModel, SystemGraph, graph_mean, read_system
from zoo.relax.representations import IrrepsRep

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's N-body configuration: 64 features, 4 layers.
    "nbody": dict(hidden_features=64, num_layers=4),
    "tiny": dict(hidden_features=8, num_layers=2),
}

EDGE_SCALARS = 3  # |x_i - x_j|^2 (current), q_i q_j, |x0_i - x0_j|^2 (input positions)


def _mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class EGNNNodeUpdate(nn.Module):
    """``phi_h(h_i, m_i)``, the residual update of the node features.

    The first input packs ``[h_i, m_i, x_i - c, v_i]`` (``[N, 2H + 6]``) so that a relaxation
    branch sees the particle's position and velocity; ``phi_h`` reads only ``[h_i, m_i]``.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.mlp = _mlp([2 * hidden, hidden, hidden])

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.mlp(packed[..., : 2 * self.hidden])


class EGNNCoordinateUpdate(nn.Module):
    """The displacement of ``x_i``: ``C sum_j (x_i - x_j) phi_x(m_ij) + phi_v(h_i) v_i``.

    The first input packs ``[h_i, C sum_j (x_i - x_j) phi_x(m_ij), x_i - c, v_i]``
    (``[N, H + 9]``); the base reads ``h_i``, the summed displacement and ``v_i``.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.velocity_mlp = _mlp([hidden, hidden, 1])

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        h = packed[..., : self.hidden]
        displacement = packed[..., self.hidden : self.hidden + 3]
        velocity = packed[..., self.hidden + 6 : self.hidden + 9]
        return displacement + self.velocity_mlp(h) * velocity


class EGNNLayer(nn.Module):
    """One ``E_GCL_vel`` layer (recurrent node update, mean coordinate aggregation).

    ``update_features=False`` (the last layer) leaves ``h`` as it is: only positions are output.
    """

    def __init__(self, hidden: int, coords_weight: float = 1.0,
                 update_features: bool = True) -> None:
        super().__init__()
        self.hidden, self.coords_weight = hidden, coords_weight
        self.edge_mlp = _mlp([2 * hidden + EDGE_SCALARS, hidden, hidden], final_activation=True)
        self.coord_mlp = _mlp([hidden, hidden, 1])
        # As in the reference: no bias on the last layer of phi_x, and a tiny initial gain so
        # that the first steps barely move the particles.
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.coord_mlp[-1] = last
        self.node_update = EGNNNodeUpdate(hidden) if update_features else None
        self.coord_update = EGNNCoordinateUpdate(hidden)

    def messages(self, h, x, graph, edge_scalars):
        """``m_ij = phi_e(h_i, h_j, |x_i - x_j|^2, scalars_ij)`` and ``x_i - x_j`` per edge.

        ``phi_e``'s first layer is linear in ``[h_i, h_j, ...]``: it is applied per node and
        gathered, instead of per edge on the concatenation (4x fewer rows).
        """
        hidden = self.hidden
        weight, bias = self.edge_mlp[0].weight, self.edge_mlp[0].bias
        diff = graph.pair(x, -x)
        radial = diff.pow(2).sum(-1, keepdim=True)
        pre = torch.addmm(
            graph.pair(torch.addmm(bias, h, weight[:, :hidden].T),
                       h @ weight[:, hidden : 2 * hidden].T),
            torch.cat([radial, edge_scalars], dim=-1), weight[:, 2 * hidden :].T,
        )
        return self.edge_mlp[1:](pre), diff

    def forward(self, h, x, vel, centroid, graph, edge_scalars, inv_degree):
        message, diff = self.messages(h, x, graph, edge_scalars)
        trans = diff * self.coord_mlp(message)
        displacement = graph.sum_at_target(trans) * inv_degree * self.coords_weight
        relative = x - centroid
        x_new = x + self.coord_update(torch.cat([h, displacement, relative, vel], dim=-1))

        if self.node_update is None:
            return h, x_new
        aggregated = graph.sum_at_target(message)
        h_new = h + self.node_update(torch.cat([h, aggregated, relative, vel], dim=-1))
        return h_new, x_new


@register_architecture("egnn", presets=PRESETS, default_preset="nbody")
class EGNN(NBodyModel):
    """E(n)-equivariant graph network with velocities, predicting future N-body positions.

    Parameters
    ----------
    hidden_features
        Width ``H`` of the node features and of every MLP.
    num_layers
        Message-passing layers (weights not shared).
    coords_weight
        Extra factor on the mean coordinate message (1 in the reference).

    Notes
    -----
    Reference: V. G. Satorras, E. Hoogeboom, M. Welling, "E(n) Equivariant Graph Neural
    Networks", ICML 2021 (code: vgsatorras/egnn, ``EGNN_vel``, ``recurrent=True``).
    """

    def __init__(
        self, hidden_features: int = 64, num_layers: int = 4, coords_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.hidden_features = hidden_features
        self.embedding = nn.Linear(1, hidden_features)
        self.layers = nn.ModuleList(
            EGNNLayer(hidden_features, coords_weight, update_features=k < num_layers - 1)
            for k in range(num_layers)
        )

    def forward(self, data: Any) -> dict[str, torch.Tensor]:
        pos, vel, charge, batch, n_graphs = read_system(data)
        graph = SystemGraph(batch)
        src, dst = graph.edge_index
        mean = graph_mean(pos, batch, n_graphs)
        x = pos - mean
        initial = graph.pair(x, -x).pow(2).sum(-1, keepdim=True)
        charges = graph.at_target(charge, charge.index_select(0, src), torch.mul)
        edge_scalars = torch.cat([charges, initial], dim=-1)
        degree = torch.bincount(dst, minlength=pos.shape[0]).clamp_min(1)
        inv_degree = degree.to(pos.dtype).reciprocal().unsqueeze(-1)

        h = self.embedding(vel.norm(dim=-1, keepdim=True))
        for layer in self.layers:
            centroid = graph_mean(x, batch, n_graphs)
            h, x = layer(h, x, vel, centroid, graph, edge_scalars, inv_degree)
        return {"pos": x + mean}

    def relaxation_sites(self) -> list[RelaxationSite]:
        """The coordinate update of every layer and the node update ``phi_h`` of every layer but
        the last (whose features are not used)."""
        hidden = self.hidden_features
        node_in = IrrepsRep(f"{hidden}x0e+{hidden}x0e+1x1o+1x1o")
        coord_in = IrrepsRep(f"{hidden}x0e+1x1o+1x1o+1x1o")
        sites = []
        for k, layer in enumerate(self.layers):
            if layer.node_update is not None:
                sites.append(RelaxationSite(f"layers.{k}.node_update", node_in,
                                            IrrepsRep(f"{hidden}x0e")))
            sites.append(RelaxationSite(f"layers.{k}.coord_update", coord_in,
                                        IrrepsRep("1x1o")))
        return sites
