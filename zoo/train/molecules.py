"""Molecular energy/force data for training: splits, normalisation fit, deterministic rotations."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from zoo.testing import random_rotation


def rows_to_data(dataset: Any, dtype: torch.dtype) -> list[Data]:
    """PyG graphs from rMD17 rows; ``energy`` stays float64 (totals of ~1e4 eV), and every graph
    carries its ``sample`` index (for deterministic per-sample augmentation)."""
    graphs = []
    for i, row in enumerate(dataset):
        graphs.append(Data(
            z=torch.as_tensor(row["z"], dtype=torch.long),
            pos=torch.as_tensor(row["pos"], dtype=dtype).reshape(-1, 3),
            energy=torch.as_tensor([row["energy"]], dtype=torch.float64),
            forces=torch.as_tensor(row["forces"], dtype=dtype).reshape(-1, 3),
            sample=torch.tensor([i]),
        ))
    return graphs


def fit_normalization(graphs: list[Data], max_atomic_number: int) -> dict[str, Any]:
    """Per-element reference energies (least squares on composition) and the force RMS as scale.

    With one molecule the composition never changes, so the minimum-norm least-squares solution
    spreads the mean energy over the elements in proportion to their counts: what matters is that
    the reference absorbs the mean, leaving the network the (small) fluctuations.
    """
    counts = np.zeros((len(graphs), max_atomic_number + 1))
    energies = np.zeros(len(graphs))
    for i, g in enumerate(graphs):
        counts[i] = np.bincount(g.z.numpy(), minlength=max_atomic_number + 1)
        energies[i] = float(g.energy)
    present = counts.sum(0) > 0
    solution, *_ = np.linalg.lstsq(counts[:, present], energies, rcond=None)
    atomic_energies = {
        int(z): float(e) for z, e in zip(np.nonzero(present)[0], solution, strict=True)
    }
    forces = torch.cat([g.forces.double() for g in graphs])
    scale = float(forces.pow(2).mean().sqrt())
    return {"atomic_energies": atomic_energies, "energy_scale": scale, "energy_shift": 0.0}


def sample_rotations(
    samples: torch.Tensor, epoch: int, seed: int, dtype: torch.dtype
) -> torch.Tensor:
    """``[n, 3, 3]`` Haar-random rotations, a pure function of (seed, epoch, sample index).

    The same sample gets the same rotation in an epoch whatever the batch, device count or
    resumption, so distributed and resumed runs see exactly the data of a plain run.
    """
    rotations = []
    for sample in samples.tolist():
        generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + sample)
        rotations.append(random_rotation(generator, torch.float64))
    return torch.stack(rotations).to(dtype)


def rotate_batch(batch: Any, rotations: torch.Tensor) -> Any:
    """Rotate positions and forces of every graph of a batch by its own rotation."""
    out = batch.clone()
    per_atom = rotations.to(batch.pos.device)[batch.batch]
    out.pos = torch.einsum("nij,nj->ni", per_atom, batch.pos)
    out.forces = torch.einsum("nij,nj->ni", per_atom, batch.forces)
    return out
