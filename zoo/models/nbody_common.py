"""What the charged N-body models share: input format, graph, symmetry actions.

Input: a PyG ``Batch`` (or ``Data``) with ``pos`` ``[N, 3]``, ``vel`` ``[N, 3]``, ``charge``
``[N, 1]`` (or ``[N]``) and ``batch`` ``[N]``, one graph per system (any sizes, mixed).
Output: ``{"pos": [N, 3]}``, the predicted positions after the simulated time interval.

The symmetry group is E(3) x S_n: rotations and reflections act on positions and velocities
(both polar vectors), translations on positions only (a velocity is a difference of positions),
and permutations of particles within a system act on every per-particle field.
"""

from __future__ import annotations

from typing import Any

import torch

from zoo.models.base import GroupElement, SymmetryGroup, ZooModel
from zoo.models.graph import scatter_sum

NODE_FIELDS = ("pos", "vel", "charge")


def fully_connected_edges(batch: torch.Tensor) -> torch.Tensor:
    """Every ordered pair ``(j, i)``, ``j != i``, of particles of the same system.

    Parameters
    ----------
    batch
        ``[N]`` system index of every particle, sorted (as in a PyG ``Batch``).

    Returns
    -------
    torch.Tensor
        ``[2, E]`` long tensor ``(source, target)``; messages flow from source to target.
    """
    n = batch.numel()
    device = batch.device
    if n == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=device)
    if n > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("particles must be sorted by system (as in a PyG Batch)")
    counts = torch.bincount(batch)
    starts = torch.cumsum(counts, 0) - counts
    per_node = counts[batch]
    target = torch.repeat_interleave(torch.arange(n, device=device), per_node)
    first = torch.cumsum(per_node, 0) - per_node
    local = torch.arange(target.numel(), device=device) - torch.repeat_interleave(first, per_node)
    source = starts[batch[target]] + local
    keep = source != target
    return torch.stack([source[keep], target[keep]])


class SystemGraph:
    """The fully connected graph of a batch of systems, with the gathers and sums on it.

    ``edge_index`` is ``(source, target)`` from :func:`fully_connected_edges`; messages flow from
    source ``j`` to target ``i``.
    """

    def __init__(self, batch: torch.Tensor) -> None:
        self.edge_index = fully_connected_edges(batch)
        self.src, self.dst = self.edge_index
        self.n_nodes = batch.numel()

    def at_target(self, node: torch.Tensor, edge: torch.Tensor, op=torch.add) -> torch.Tensor:
        """``op(edge, node[dst])`` for ``edge [E, ...]`` and ``node [N, ...]``."""
        return op(edge, node.index_select(0, self.dst))

    def pair(self, at_target: torch.Tensor, at_source: torch.Tensor) -> torch.Tensor:
        """``at_target[dst] + at_source[src]`` per edge."""
        return self.at_target(at_target, at_source.index_select(0, self.src))

    def sum_at_target(self, edge: torch.Tensor) -> torch.Tensor:
        """``[N, ...]`` sum of ``edge [E, ...]`` over the incoming edges of every node."""
        return scatter_sum(edge, self.dst, self.n_nodes)


def graph_mean(values: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """``[N, ...]`` mean of ``values`` over each particle's own system, broadcast to particles.

    Used to centre positions per system (a per-particle mean over x, y, z, as in the reference
    N-body data transform, is not rotation equivariant: METHODS.md defect (c)).
    """
    counts = torch.bincount(batch, minlength=n_graphs).clamp_min(1).to(values.dtype)
    means = scatter_sum(values, batch, n_graphs) / counts.view(-1, *([1] * (values.dim() - 1)))
    return means.index_select(0, batch)


def read_system(data: Any) -> tuple[torch.Tensor, ...]:
    """``pos, vel, charge [N, 1], batch, n_graphs`` from a PyG batch, in ``pos``'s dtype."""
    missing = [f for f in NODE_FIELDS if getattr(data, f, None) is None]
    if missing:
        raise ValueError(f"N-body input lacks {missing}: needs pos [N,3], vel [N,3], charge [N,1]")
    pos = data.pos
    vel = data.vel.to(pos.dtype)
    charge = data.charge.to(pos.dtype).reshape(-1, 1)
    if pos.shape != vel.shape or pos.dim() != 2 or pos.shape[1] != 3 or charge.shape[0] != len(pos):
        raise ValueError(
            f"expected pos, vel [N, 3] and charge [N, 1]; got {tuple(pos.shape)}, "
            f"{tuple(vel.shape)}, {tuple(data.charge.shape)}"
        )
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    n_graphs = int(batch.max()) + 1 if batch.numel() else 0
    return pos, vel, charge, batch, n_graphs


class NBodyModel(ZooModel):
    """Symmetry declarations and example inputs of the N-body position predictors."""

    symmetry = SymmetryGroup(rotations=True, reflections=True, translations=True,
                             permutations=True)
    input_kind = "nbody"

    def example_inputs(self, generator: torch.Generator, dtype: torch.dtype = torch.float64):
        """Two systems of 5 and 4 particles, Gaussian positions and velocities, charges +-1."""
        from torch_geometric.data import Batch, Data

        graphs = []
        for n in (5, 4):
            pos = torch.randn(n, 3, generator=generator, dtype=torch.float64)
            vel = torch.randn(n, 3, generator=generator, dtype=torch.float64) * 0.5
            charge = torch.randint(0, 2, (n, 1), generator=generator).to(torch.float64) * 2 - 1
            graphs.append(Data(pos=pos.to(dtype), vel=vel.to(dtype), charge=charge.to(dtype)))
        return Batch.from_data_list(graphs)

    def set_size(self, inputs: Any) -> torch.Tensor | None:
        batch = getattr(inputs, "batch", None)
        return batch if batch is not None else torch.zeros_like(inputs.pos[:, 0], dtype=torch.long)

    def act_on_inputs(self, inputs: Any, g: GroupElement) -> Any:
        out = inputs.clone()
        rotation = g.rotation.to(inputs.pos.dtype)
        pos = inputs.pos @ rotation.T
        if g.translation is not None:
            pos = pos + g.translation.to(pos.dtype)
        fields = {"pos": pos, "vel": inputs.vel @ rotation.T, "charge": inputs.charge}
        for name, value in fields.items():
            setattr(out, name, value if g.permutation is None else value[g.permutation])
        return out

    def act_on_outputs(self, outputs: dict[str, torch.Tensor], g: GroupElement):
        pos = outputs["pos"] @ g.rotation.to(outputs["pos"].dtype).T
        if g.translation is not None:
            pos = pos + g.translation.to(pos.dtype)
        if g.permutation is not None:
            pos = pos[g.permutation]
        return {"pos": pos}
