"""Equiformer for molecular energies and forces (Liao & Smidt, ICLR 2023, MD17 configuration).

Input: a PyG ``Batch`` with atomic numbers ``z``, positions ``pos`` (Å) and ``batch``.
Output: ``{"energy": [n_graphs] (eV, float64 whatever the model dtype), "forces": [n_atoms, 3]
(eV/Å)}``, forces the negative gradient of the energy (conservative).

Differences from the reference implementation, each for a reason:

- graphs and scatters in pure torch (no torch-cluster / torch-scatter wheels here);
- the cosine cutoff envelope also weights the attention softmax and the degree embedding, so the
  energy is smooth when atoms cross the 5 Å cutoff (needed for energy-conserving MD);
- the node attributes of the MD17 model are constant ones, so its fully connected tensor products
  with them are written as the equivalent linear layers;
- per-element reference energies and a scale/shift fitted on the training set are constructor
  arguments, stored in ``config.json``.
"""

from __future__ import annotations

from typing import Any

import torch
from e3nn import o3
from torch import nn

from zoo._registry import register_architecture
from zoo.errors import InputError
from zoo.models.base import GroupElement, RelaxationSite, SymmetryGroup, ZooModel
from zoo.models.equiformer_layers import (
    EquivariantLayerNorm,
    ExpNormalBasis,
    FeedForward,
    GraphAttention,
    IrrepsLinear,
    SeparableTensorProduct,
)
from zoo.models.graph import radius_graph, scatter_sum
from zoo.relax.representations import IrrepsRep

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's L_max = 2 MD17 configuration.
    "md17": dict(
        irreps_node="128x0e+64x1e+32x2e", num_layers=6, lmax=2, num_basis=32,
        radial_hidden=64, irreps_head="32x0e+16x1e+8x2e", num_heads=4,
        irreps_mlp_mid="384x0e+192x1e+96x2e", irreps_feature="512x0e",
    ),
    # Sized to train on a 2-core CPU: ~0.6 CPU-seconds per training step of 8 aspirin frames,
    # i.e. about an hour per 100 epochs of 950 frames on 2 cores (benchmarks/bench_equiformer.py).
    "small": dict(
        irreps_node="16x0e+8x1e+4x2e", num_layers=2, lmax=2, num_basis=16,
        radial_hidden=16, irreps_head="8x0e+4x1e+2x2e", num_heads=2,
        irreps_mlp_mid="32x0e+16x1e+8x2e", irreps_feature="64x0e",
    ),
    # Degree 1 only, twice the channels of ``small``: 72k parameters at ~0.6x the CPU cost per
    # frame of ``small`` (benchmarks/bench_equiformer.py), the better trade on a CPU budget.
    "small-l1": dict(
        irreps_node="32x0e+16x1e", num_layers=2, lmax=1, num_basis=16,
        radial_hidden=32, irreps_head="16x0e+8x1e", num_heads=2,
        irreps_mlp_mid="64x0e+32x1e", irreps_feature="64x0e",
    ),
    # ``small-l1`` at twice the width: 3.8x the parameters (277k) for ~1.9x the CPU per aspirin
    # epoch (80 s against 41 s on one thread), because the cost grows far slower than the
    # channels at these sizes. ``small-l1`` aspirin is capacity-bound (train force MAE 20.5
    # against test 23.5 after 258 epochs), see issue 13.
    "medium-l1": dict(
        irreps_node="64x0e+32x1e", num_layers=2, lmax=1, num_basis=16,
        radial_hidden=64, irreps_head="32x0e+16x1e", num_heads=2,
        irreps_mlp_mid="128x0e+64x1e", irreps_feature="128x0e",
    ),
    "tiny": dict(
        irreps_node="8x0e+4x1e+2x2e", num_layers=2, lmax=2, num_basis=8,
        radial_hidden=8, irreps_head="4x0e+2x1e+2x2e", num_heads=2,
        irreps_mlp_mid="8x0e+4x1e+2x2e", irreps_feature="8x0e",
    ),
}


def _symbols(numbers: Any) -> str:
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[int(z)] for z in numbers)


class EquiformerBlock(nn.Module):
    """Pre-norm transformer block: attention and a gated FFN, each with a residual."""

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_head: o3.Irreps,
        num_heads: int,
        irreps_mlp_mid: o3.Irreps,
        radial_sizes: list[int],
    ) -> None:
        super().__init__()
        self.norm_attention = EquivariantLayerNorm(irreps_in)
        self.attention = GraphAttention(irreps_in, irreps_sh, irreps_head, num_heads, radial_sizes)
        self.norm_ffn = EquivariantLayerNorm(irreps_in)
        self.ffn = FeedForward(irreps_in, irreps_mlp_mid, irreps_out)
        same = o3.Irreps(irreps_in) == o3.Irreps(irreps_out)
        self.shortcut = None if same else IrrepsLinear(irreps_in, irreps_out)

    def forward(self, x, edge_index, sh, basis, envelope):
        x = x + self.attention(self.norm_attention(x), edge_index, sh, basis, envelope)
        residual = x if self.shortcut is None else self.shortcut(x)
        return residual + self.ffn(self.norm_ffn(x))


@register_architecture("equiformer", presets=PRESETS, default_preset="small")
class Equiformer(ZooModel):
    """Equiformer energy/force model.

    Parameters
    ----------
    irreps_node
        Node feature irreps (SE(3): all even parity), e.g. ``"128x0e+64x1e+32x2e"``.
    num_layers
        Transformer blocks; the last maps to ``irreps_feature``.
    lmax
        Largest degree of the edge spherical harmonics.
    cutoff
        Radius graph cutoff in Å.
    num_basis
        Radial basis functions.
    radial_hidden
        Width of the two hidden layers of the radial MLPs.
    irreps_head, num_heads
        Irreps of one attention head and the number of heads.
    irreps_mlp_mid
        Hidden irreps of the feed-forward networks.
    irreps_feature
        Scalar irreps of the last block's output, read out to per-atom energies.
    max_atomic_number
        Largest atomic number embedded.
    avg_num_neighbors
        Normalisation of the degree embedding sum.
    atomic_energies
        Reference energy per element (eV), ``{atomic number: energy}``.
    energy_scale, energy_shift
        Per-atom energy ``= scale * readout + shift + reference``.
    compute_forces
        Return forces as ``-dE/dpos``.
    """

    symmetry = SymmetryGroup(rotations=True, reflections=False, translations=True,
                             permutations=True)
    input_kind = "atoms"

    def __init__(
        self,
        irreps_node: str = "128x0e+64x1e+32x2e",
        num_layers: int = 6,
        lmax: int = 2,
        cutoff: float = 5.0,
        num_basis: int = 32,
        radial_hidden: int = 64,
        irreps_head: str = "32x0e+16x1e+8x2e",
        num_heads: int = 4,
        irreps_mlp_mid: str = "384x0e+192x1e+96x2e",
        irreps_feature: str = "512x0e",
        max_atomic_number: int = 20,
        avg_num_neighbors: float = 15.0,
        atomic_energies: dict[int, float] | None = None,
        energy_scale: float = 1.0,
        energy_shift: float = 0.0,
        compute_forces: bool = True,
    ) -> None:
        super().__init__()
        self.irreps_node = o3.Irreps(irreps_node)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax, p=1)
        self.irreps_feature = o3.Irreps(irreps_feature)
        self.cutoff, self.avg_num_neighbors = cutoff, avg_num_neighbors
        self.max_atomic_number, self.compute_forces = max_atomic_number, compute_forces
        self.energy_scale, self.energy_shift = energy_scale, energy_shift
        radial_sizes = [num_basis, radial_hidden, radial_hidden]

        self.embedding = nn.Embedding(max_atomic_number + 1, self.irreps_node.count("0e"))
        n_scalars = self.irreps_node.count("0e")
        self.embedding_to_node = IrrepsLinear(f"{n_scalars}x0e", self.irreps_node)
        self.basis = ExpNormalBasis(num_basis, cutoff)
        self.degree_embedding = SeparableTensorProduct(
            o3.Irreps(f"{self.irreps_node.count('0e')}x0e"), self.irreps_sh, self.irreps_node,
            radial_sizes,
        )
        self.blocks = nn.ModuleList()
        for i in range(num_layers):
            last = i == num_layers - 1
            self.blocks.append(EquiformerBlock(
                self.irreps_node, self.irreps_feature if last else self.irreps_node,
                self.irreps_sh, o3.Irreps(irreps_head), num_heads, o3.Irreps(irreps_mlp_mid),
                radial_sizes,
            ))
        self.norm = EquivariantLayerNorm(self.irreps_feature)
        self.head = nn.Sequential(
            nn.Linear(self.irreps_feature.dim, self.irreps_feature.dim),
            nn.SiLU(),
            nn.Linear(self.irreps_feature.dim, 1),
        )
        self._set_references(atomic_energies or {})

    def _set_references(self, atomic_energies: dict[int, float]) -> None:
        # Built in float64 from the start (never through a float32 tensor, which would move
        # each reference by ~2e-5 eV and break the bitwise reload of an export), and kept in
        # float64 whatever the model's dtype, outside the state_dict (it is in config.json):
        # total energies of ~1e4 eV lose meV in float32.
        references = torch.zeros(self.max_atomic_number + 1, dtype=torch.float64)
        known = torch.zeros(self.max_atomic_number + 1, dtype=torch.bool)
        for z, energy in atomic_energies.items():
            if not 0 < int(z) <= self.max_atomic_number:
                raise ValueError(f"atomic number {z} outside 1..{self.max_atomic_number}")
            references[int(z)] = float(energy)
            known[int(z)] = True
        self._atomic_energies = references
        # The elements of the training data are those with a reference energy; a model built
        # without any (untrained) accepts every element up to max_atomic_number.
        self._known_elements = known if atomic_energies else None

    @property
    def elements(self) -> tuple[int, ...] | None:
        """Atomic numbers the model was trained on (those with a reference energy), or ``None``
        for a model without reference energies, which accepts 1..``max_atomic_number``."""
        if self._known_elements is None:
            return None
        return tuple(int(z) for z in torch.nonzero(self._known_elements).flatten())

    def set_atomic_energies(self, atomic_energies: dict[int, float]) -> None:
        """Replace the per-element reference energies (eV), e.g. refitted on the data a
        published model is fine-tuned on; recorded in ``model_args`` so exports carry them.

        Only the constant per-element offset changes: forces are unaffected. The keys become the
        model's :attr:`elements`.
        """
        self._set_references(atomic_energies)
        self.model_args["atomic_energies"] = {
            str(int(z)): float(e) for z, e in atomic_energies.items()
        }

    # --- forward ---------------------------------------------------------------------------
    def node_features(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor):
        """Final scalar node features ``[n_atoms, irreps_feature.dim]``."""
        if int(z.max()) > self.max_atomic_number or int(z.min()) < 1:
            raise ValueError(
                f"atomic numbers must be in 1..{self.max_atomic_number} for this model; "
                f"got {int(z.min())}..{int(z.max())}"
            )
        if self._known_elements is not None:
            unseen = ~self._known_elements.to(z.device)[z]
            if bool(unseen.any()):
                raise InputError(
                    f"elements {_symbols(torch.unique(z[unseen]).tolist())} were not in this "
                    f"model's training data (it knows {_symbols(self.elements)} only): its "
                    "energies and forces for them would be meaningless"
                )
        edge_index = radius_graph(pos, batch, self.cutoff)
        src, dst = edge_index
        vec = pos[src] - pos[dst]
        distance = vec.norm(dim=-1)
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        basis = self.basis(distance)
        envelope = self.basis.envelope(distance)

        scalars = self.embedding(z).to(pos.dtype)
        x = self.embedding_to_node(scalars)
        degree = self.degree_embedding(scalars[src], sh, basis) * envelope.unsqueeze(-1)
        x = x + scatter_sum(degree, dst, x.shape[0]) / self.avg_num_neighbors
        for block in self.blocks:
            x = block(x, edge_index, sh, basis, envelope)
        return self.norm(x)

    def forward(self, data: Any) -> dict[str, torch.Tensor]:
        z, pos = data.z, data.pos
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        n_graphs = int(batch.max()) + 1 if batch.numel() else 0
        with torch.enable_grad():
            if self.compute_forces and not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            features = self.node_features(z, pos, batch)
            atom_energy = self.head(features).squeeze(-1) * self.energy_scale + self.energy_shift
            energy = scatter_sum(atom_energy, batch, n_graphs)
            references = self._atomic_energies.to(z.device)[z]
            total = energy.to(torch.float64) + scatter_sum(references, batch, n_graphs)
            # Energies are float64 even for a float32 model (see __init__); forces keep the
            # model's dtype.
            out = {"energy": total}
            if self.compute_forces:
                # The graph is kept only in training, where the force loss is backpropagated.
                (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=self.training)
                out["forces"] = -grad
        return out

    # --- relaxation and symmetry -----------------------------------------------------------
    def relaxation_sites(self) -> list[RelaxationSite]:
        """The feed-forward network of every block (METHODS.md: parallel to the FFN)."""
        sites = []
        for i, block in enumerate(self.blocks):
            irreps_out = self.irreps_feature if block.shortcut is not None else self.irreps_node
            sites.append(RelaxationSite(
                f"blocks.{i}.ffn", IrrepsRep(str(self.irreps_node)), IrrepsRep(str(irreps_out))
            ))
        return sites

    def example_inputs(self, generator: torch.Generator, dtype: torch.dtype = torch.float64):
        from torch_geometric.data import Batch, Data

        graphs = []
        for n_atoms in (5, 7):
            if self.elements is None:
                z = torch.randint(1, min(self.max_atomic_number, 9) + 1, (n_atoms,),
                                  generator=generator)
            else:  # a trained model refuses other elements
                elements = torch.tensor(self.elements)
                z = elements[torch.randint(len(elements), (n_atoms,), generator=generator)]
            pos = torch.randn(n_atoms, 3, generator=generator, dtype=torch.float64) * 1.2
            graphs.append(Data(z=z, pos=pos.to(dtype)))
        return Batch.from_data_list(graphs)

    def set_size(self, inputs: Any) -> torch.Tensor | None:
        batch = getattr(inputs, "batch", None)
        return batch if batch is not None else torch.zeros_like(inputs.z)

    def act_on_inputs(self, inputs: Any, g: GroupElement) -> Any:
        out = inputs.clone()
        pos = inputs.pos @ g.rotation.T.to(inputs.pos.dtype)
        if g.translation is not None:
            pos = pos + g.translation.to(pos.dtype)
        if g.permutation is not None:
            pos, out.z = pos[g.permutation], inputs.z[g.permutation]
        out.pos = pos
        return out

    def act_on_outputs(self, outputs: dict[str, torch.Tensor], g: GroupElement):
        result = {"energy": outputs["energy"]}
        if "forces" in outputs:
            forces = outputs["forces"] @ g.rotation.T.to(outputs["forces"].dtype)
            if g.permutation is not None:
                forces = forces[g.permutation]
            result["forces"] = forces
        return result
