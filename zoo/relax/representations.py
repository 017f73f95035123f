"""Group representations of the flattened features at a relaxation site.

The regularisers need, for a feature vector of dimension ``D``, either the Lie-algebra
representation ``drho(A_a)`` (``[k, D, D]``, continuous groups) or the matrices of the group's
generators (``[k, D, D]``, finite groups). Each class here builds them for one feature layout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from e3nn import o3


def _su2_generators(j: int) -> torch.Tensor:
    """Complex su(2) generators of spin ``j`` in float64 (e3nn builds them in the default
    dtype, which in float32 limits its Wigner matrices to ~1e-7)."""
    m = torch.arange(-j, j, dtype=torch.float64)
    raising = torch.diag(-torch.sqrt(j * (j + 1) - m * (m + 1)), diagonal=-1)
    m = torch.arange(-j + 1, j + 1, dtype=torch.float64)
    lowering = torch.diag(torch.sqrt(j * (j + 1) - m * (m - 1)), diagonal=1)
    m = torch.arange(-j, j + 1, dtype=torch.float64)
    return torch.stack(
        [0.5 * (raising + lowering), torch.diag(1j * m), -0.5j * (raising - lowering)]
    ).to(torch.complex128)


@functools.cache
def _irrep_generators_float64(l: int) -> torch.Tensor:  # noqa: E741
    from e3nn.o3._wigner import change_basis_real_to_complex

    q = change_basis_real_to_complex(l, dtype=torch.float64)
    return torch.real(torch.conj(q.T) @ _su2_generators(l) @ q)


def irrep_generators(l: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:  # noqa: E741
    """``[3, 2l+1, 2l+1]`` real so(3) generators of degree ``l`` in e3nn's basis, exact in
    float64; index ``a`` generates rotations about axis ``a`` (x, y, z). Cached (the regulariser
    applies them every step); the returned tensor is a fresh copy."""
    return _irrep_generators_float64(l).to(dtype, copy=True)


@functools.cache
def _shared_generators(l: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:  # noqa: E741
    # The regulariser applies the generators at every site and step: one cast and copy per
    # (degree, dtype, device), shared (callers must not modify it).
    return _irrep_generators_float64(l).to(dtype=dtype, device=device, copy=True)


@functools.cache
def _irreps_segments(irreps: str) -> tuple[tuple[int, int, int], ...]:
    """``(start, multiplicity, l)`` of the runs of equal degree in ``irreps``, parsed once per
    layout. Neighbours of one degree merge whatever their parity (which the Lie algebra does
    not see): ``1x1o+1x1e`` is one run of two, one product instead of two per use."""
    segments: list[tuple[int, int, int]] = []
    start = 0
    for mul, ir in o3.Irreps(irreps):
        if segments and segments[-1][2] == ir.l:
            first, count, _ = segments[-1]
            segments[-1] = (first, count + mul, ir.l)
        else:
            segments.append((start, mul, ir.l))
        start += mul * ir.dim
    return tuple(segments)


def so3_generators(irreps: str | o3.Irreps, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Lie-algebra representation of so(3) on an e3nn irreps space.

    Parameters
    ----------
    irreps
        e3nn irreps, e.g. ``"128x0e+64x1e+32x2e"``.
    dtype
        Floating dtype of the result (float64 makes ``matrix_exp`` exact to ~1e-14).

    Returns
    -------
    torch.Tensor
        ``[3, D, D]``: block diagonal over the irreps, one ``(2l+1)``-block per multiplicity copy,
        so that ``matrix_exp(t * A[a])`` equals ``irreps.D_from_matrix`` of the rotation by ``t``
        about axis ``a`` (x, y, z). Parity does not enter: it is not reachable by generators.
    """
    irreps = o3.Irreps(irreps)
    out = torch.zeros(3, irreps.dim, irreps.dim, dtype=dtype)
    start = 0
    for mul, ir in irreps:
        block = irrep_generators(ir.l, dtype)
        size = 2 * ir.l + 1
        for _ in range(mul):
            out[:, start : start + size, start : start + size] = block
            start += size
    return out


@dataclass(frozen=True)
class IrrepsRep:
    """Features laid out as an e3nn irreps vector (e.g. ``[N, irreps.dim]``)."""

    irreps: str

    @property
    def dim(self) -> int:
        return o3.Irreps(self.irreps).dim

    kind = "lie"

    def lie_algebra(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return so3_generators(self.irreps, dtype)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """``[3, ..., D]``: each so(3) generator applied to ``x`` (``[..., D]``), block by block.

        Applying the ``(2l+1)``-blocks one irrep type at a time costs ``O(D)`` per generator
        instead of the ``O(D^2)`` of the dense ``[3, D, D]`` matrix.
        """
        parts = []
        for start, mul, l in _irreps_segments(self.irreps):  # noqa: E741
            size = 2 * l + 1
            chunk = x[..., start : start + mul * size]
            if l == 0:
                parts.append(torch.zeros((3, *chunk.shape), dtype=x.dtype, device=x.device))
                continue
            gens = _shared_generators(l, x.dtype, x.device)
            blocks = chunk.reshape(*chunk.shape[:-1], mul, size)
            acted = torch.einsum("aij,...mj->a...mi", gens, blocks)
            parts.append(acted.reshape(3, *chunk.shape))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def moving(self) -> tuple[tuple[int, ...] | None, IrrepsRep | None]:
        """The feature columns that rotations move (every ``l > 0`` irrep) and the
        representation on them: ``(None, self)`` when that is every column, ``((), None)``
        when there is none (invariant features).

        The Lie derivative of a map only needs its input's moving columns (the generators are
        zero on scalars): for a site mostly made of scalar channels this is most of its cost.
        """
        return _irreps_moving(self.irreps)


@dataclass(frozen=True)
class VectorChannelsRep:
    """``C`` 3D vectors flattened channel-major: index ``3 * c + i`` is component ``i`` of ``c``.

    This is the layout of a ``[..., C, 3]`` tensor reshaped to ``[..., 3C]`` (Vector Neurons).
    The generators act on the 3-axis: ``I_C kron L_a`` (the research code's ``(D, 3)`` reshape
    of a ``(3, D)`` layout gets this wrong; an intertwiner must give zero).
    """

    channels: int

    @property
    def dim(self) -> int:
        return 3 * self.channels

    kind = "lie"

    def lie_algebra(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        eye = torch.eye(self.channels, dtype=dtype)
        return torch.stack([torch.kron(eye, g) for g in irrep_generators(1, dtype)])

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """``[3, ..., 3C]``: each generator applied to every channel's 3-vector."""
        gens = _shared_generators(1, x.dtype, x.device)
        vectors = x.reshape(*x.shape[:-1], self.channels, 3)
        return torch.einsum("aij,...cj->a...ci", gens, vectors).reshape(3, *x.shape)

    def moving(self) -> tuple[None, VectorChannelsRep]:
        """Every column moves (see :meth:`IrrepsRep.moving`)."""
        return None, self

    def component_major_columns(self) -> tuple[int, ...]:
        """The column of this layout held at each position of the *component-major*
        flattening (``[..., 3, C]`` reshaped to ``[..., 3C]``): position ``C i + c`` holds
        column ``3 c + i``. The ``columns_in`` / ``columns_out`` of a branch reading such
        features (:func:`~zoo.relax.sites.add_branch_output_in_order`)."""
        return _component_major_columns(self.channels)


@functools.cache
def _component_major_columns(channels: int) -> tuple[int, ...]:
    # Cached: a site asks for it in every forward pass, and branches key their index tensors
    # on it.
    return tuple(3 * c + i for i in range(3) for c in range(channels))


@dataclass(frozen=True)
class FiniteGroupRep:
    """A representation of a finite group given by the matrices of its generators.

    Parameters
    ----------
    generator_matrices
        Nested tuples ``[k][D][D]`` (plain numbers, so the object is hashable and JSON-friendly).
    """

    generator_matrices: tuple

    @classmethod
    def from_tensor(cls, matrices: torch.Tensor) -> FiniteGroupRep:
        """Build from a ``[k, D, D]`` tensor of generator matrices."""
        return cls(tuple(tuple(tuple(row) for row in m) for m in matrices.tolist()))

    @property
    def dim(self) -> int:
        return len(self.generator_matrices[0])

    kind = "finite"

    def group_generators(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.tensor(self.generator_matrices, dtype=dtype)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """``[k, ..., D]``: each generator's matrix applied to ``x``."""
        mats = self.group_generators(x.dtype).to(x.device)
        return torch.einsum("kij,...j->k...i", mats, x)


@dataclass(frozen=True)
class TrivialRep:
    """Invariant features (every group element acts as the identity)."""

    size: int
    kind = "lie"

    @property
    def dim(self) -> int:
        return self.size

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((3, *x.shape), dtype=x.dtype, device=x.device)

    def moving(self) -> tuple[tuple[int, ...], None]:
        """No column moves (see :meth:`IrrepsRep.moving`)."""
        return (), None


@functools.cache
def _irreps_moving(irreps: str) -> tuple[tuple[int, ...] | None, IrrepsRep | None]:
    columns: list[int] = []
    moving = []
    for start, mul, l in _irreps_segments(irreps):  # noqa: E741
        if l > 0:
            columns.extend(range(start, start + mul * (2 * l + 1)))
            moving.append(f"{mul}x{l}")
    if not columns:
        return (), None
    if len(columns) == o3.Irreps(irreps).dim:
        return None, IrrepsRep(irreps)
    # Parity does not enter the Lie algebra's action, so the sub-layout may drop it.
    return tuple(columns), IrrepsRep("+".join(f"{m}e" for m in moving))


def wigner_matrix(irreps: str | o3.Irreps, rotation: torch.Tensor) -> torch.Tensor:
    """Block-diagonal representation matrix of ``rotation`` on ``irreps``, exact in float64.

    Computed as ``matrix_exp(angle * sum_a axis_a A_a)`` from the rotation's axis and angle.
    Parity acts as ``p`` when ``det(rotation) = -1``.
    """
    rotation = rotation.to(torch.float64)
    det = torch.det(rotation)
    proper = rotation * det
    axis, angle = o3.matrix_to_axis_angle(proper)
    generators = so3_generators(irreps)
    matrix = torch.linalg.matrix_exp(angle * torch.einsum("a,aij->ij", axis, generators))
    if det < 0:
        parities = []
        for mul, ir in o3.Irreps(irreps):
            parities += [float(ir.p)] * (mul * ir.dim)
        matrix = matrix * torch.tensor(parities, dtype=torch.float64)[:, None]
    return matrix


# --- C4 on planar feature maps ------------------------------------------------------------

C4_FIBERS = {"trivial": 1, "vector": 2, "regular": 4}
"""Fibers of a C4-steerable feature map and their dimensions: an invariant scalar, a planar
vector ``(x, y)`` (the rotation matrix itself) and the regular representation (4 channels,
cyclically shifted by a quarter turn)."""


def c4_fiber_matrix(fiber: str, k: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Matrix of the rotation by ``k`` quarter turns (counter-clockwise) on one fiber.

    ``"vector"``: ``[[0, -1], [1, 0]]^k``; ``"regular"``: the cyclic shift ``e_i -> e_{i+k}``;
    ``"trivial"``: ``[[1]]``. Entries are 0 and +-1, exact in every dtype.
    """
    if fiber not in C4_FIBERS:
        raise ValueError(f"unknown C4 fiber {fiber!r}; choose one of {sorted(C4_FIBERS)}")
    k %= 4
    if fiber == "trivial":
        return torch.ones(1, 1, dtype=dtype)
    if fiber == "vector":
        quarter = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=dtype)
        return torch.linalg.matrix_power(quarter, k)
    return torch.roll(torch.eye(4, dtype=dtype), k, dims=0)


def rotate_plane(x: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Turn the last two axes ``(y, x)`` of ``x`` by ``k`` quarter turns counter-clockwise.

    With the row index as ``y`` and the column index as ``x``, the point ``(x, y)`` (about the
    centre of the grid) goes to ``(-y, x)``: ``out[..., i, j] = x[..., n-1-j, i]`` for ``k = 1``.
    Exact (a permutation of the pixels).
    """
    return torch.rot90(x, k % 4, dims=(-1, -2))


@dataclass(frozen=True)
class C4FieldRep:
    """A planar feature map ``[..., C, H, W]`` of ``multiplicity`` copies of a C4 fiber.

    Channel ``d * m + i`` is component ``i`` of field ``m`` (``d`` the fiber dimension).
    A quarter turn ``g`` acts as ``(g f)(p) = rho(g) f(g^-1 p)``: the plane is turned
    (:func:`rotate_plane`) and every fiber transformed by :func:`c4_fiber_matrix`.

    Parameters
    ----------
    fiber
        ``"trivial"``, ``"vector"`` or ``"regular"``.
    multiplicity
        Number of fields.
    """

    fiber: str
    multiplicity: int

    kind = "field"

    def __post_init__(self) -> None:
        if self.fiber not in C4_FIBERS:
            raise ValueError(f"unknown C4 fiber {self.fiber!r}; choose one of {sorted(C4_FIBERS)}")

    @property
    def fiber_dim(self) -> int:
        return C4_FIBERS[self.fiber]

    @property
    def dim(self) -> int:
        """Number of channels."""
        return self.multiplicity * self.fiber_dim

    def matrix(self, k: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``[C, C]``: the fiber matrix of ``k`` quarter turns on every field (block diagonal)."""
        return torch.kron(torch.eye(self.multiplicity, dtype=dtype),
                          c4_fiber_matrix(self.fiber, k, dtype))

    def transform_channels(self, x: torch.Tensor, k: int = 1, axis: int = -3) -> torch.Tensor:
        """Apply the fiber matrix of ``k`` quarter turns to the channel ``axis`` only."""
        matrix = c4_fiber_matrix(self.fiber, k, x.dtype).to(x.device)
        moved = x.movedim(axis, -1)
        fields = moved.reshape(*moved.shape[:-1], self.multiplicity, self.fiber_dim)
        out = torch.einsum("ij,...mj->...mi", matrix, fields).reshape(moved.shape)
        return out.movedim(-1, axis)

    def rotate(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """The field ``x`` (``[..., C, H, W]``) turned by ``k`` quarter turns."""
        return self.transform_channels(rotate_plane(x, k), k)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """``[1, ..., C, H, W]``: the group's generator (a quarter turn) applied to ``x``."""
        return self.rotate(x, 1).unsqueeze(0)


def rotate_kernel(weight: torch.Tensor, rep_in: C4FieldRep, rep_out: C4FieldRep,
                  k: int = 1) -> torch.Tensor:
    """``rho_out(g) W(g^-1 .) rho_in(g)^-1`` for a convolution kernel ``W`` and ``g`` = ``k``
    quarter turns.

    ``weight`` is ``[..., C_out, C_in, kh, kw]`` as used by ``torch.nn.functional.conv2d``. The
    convolution is equivariant (``conv(g x) = g conv(x)`` with zero or no padding) exactly
    when ``rotate_kernel(W) == W``; averaging over ``k = 0..3`` projects onto such kernels.
    """
    turned = rotate_plane(weight, k)
    turned = rep_out.transform_channels(turned, k, axis=-4)
    return rep_in.transform_channels(turned, k, axis=-3)
