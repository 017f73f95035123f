"""Random group elements: Haar-random rotations and set permutations.

The one home of the random transformations that training (rotation augmentation), data
(ModelNet40's evaluation rotations) and :mod:`zoo.testing` (equivariance checks) all draw, as
e3nn keeps ``rand_matrix`` below its test helpers. Every function draws from the generator it is
given (global seeds are untouched) and in float64, whatever dtype it returns.

This module imports nothing from zoo.
"""

from __future__ import annotations

import torch

__all__ = [
    "random_permutation",
    "random_rotation",
    "random_rotations",
    "sample_generator",
    "sample_rotations",
]


def random_rotation(
    generator: torch.Generator, dtype: torch.dtype = torch.float64, reflect: bool = False
) -> torch.Tensor:
    """A Haar-random rotation matrix (``det = +1``), or an improper one (``det = -1``).

    Parameters
    ----------
    generator
        Source of the random numbers.
    dtype
        dtype of the result (the matrix is drawn in float64).
    reflect
        Return ``-R`` (an improper rotation, Haar-distributed on ``O(3) \\ SO(3)``).

    Returns
    -------
    torch.Tensor
        ``[3, 3]``.
    """
    gaussian = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))  # makes the QR factor Haar-distributed
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflect:
        q = -q
    return q.to(dtype)


def random_rotations(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``n`` Haar-random rotation matrices ``[n, 3, 3]`` (``det = +1``), drawn in float64.

    QR of Gaussian matrices with the signs of ``R``'s diagonal moved into ``Q`` (Haar on O(3)),
    then one column flipped where the determinant is negative (Haar on SO(3)). Deterministic for
    a seeded ``generator``. (One batched draw: not the same matrices as ``n`` calls of
    :func:`random_rotation`.)
    """
    gaussian = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    flip = torch.where(torch.linalg.det(q) < 0, -1.0, 1.0).to(torch.float64)
    q[:, :, 0] = q[:, :, 0] * flip[:, None]
    return q.to(dtype)


def random_permutation(set_index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random permutation that keeps every element inside its own set (graph).

    Parameters
    ----------
    set_index
        ``[n]``: the set (graph, cloud) each element belongs to.
    generator
        Source of the random numbers.

    Returns
    -------
    torch.Tensor
        ``[n]`` indices: ``perm[i]`` is the element that goes to position ``i``.
    """
    perm = torch.arange(set_index.numel())
    for value in torch.unique(set_index):
        members = torch.nonzero(set_index == value).flatten()
        perm[members] = members[torch.randperm(members.numel(), generator=generator)]
    return perm


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A private generator that is a pure function of (run seed, epoch, sample index).

    Per-sample augmentation drawn from it is the same whatever the batching, device count or
    resumption, so distributed and resumed runs see exactly the data of a plain run.
    """
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + index)


def sample_rotations(
    samples: torch.Tensor, epoch: int, seed: int, dtype: torch.dtype
) -> torch.Tensor:
    """``[n, 3, 3]`` Haar-random rotations, a pure function of (seed, epoch, sample index).

    The same sample gets the same rotation in an epoch whatever the batch, device count or
    resumption, so distributed and resumed runs see exactly the data of a plain run.
    """
    rotations = []
    for sample in samples.tolist():
        generator = sample_generator(seed, epoch, sample)
        rotations.append(random_rotation(generator, torch.float64))
    return torch.stack(rotations).to(dtype)
