"""C4-steerable convolutions on planar feature maps, in plain torch (the layers of
:mod:`zoo.models.smoke_cnn`).

A steerable convolution between fields of fibers ``rho_in`` and ``rho_out`` (see
:class:`~zoo.relax.representations.C4FieldRep`) has a kernel with
``W(g x) = rho_out(g) W(x) rho_in(g)^-1`` for every quarter turn ``g``. Its kernels form a
linear space; :func:`c4_kernel_basis` builds a basis of it on the ``k x k`` pixel grid, and a
layer's kernel is a learned combination of the basis kernels, per pair of fields.

The *relaxed* steerable convolution of Wang, Walters & Yu (ICML 2022) lets the coefficients of
the combination depend on the kernel pixel as well: ``W(x) = sum_b w_b(x) B_b(x)``. Equal
coefficients at every pixel give back an equivariant kernel; their regulariser
(:meth:`SteerableConv2d.coefficient_variation`) pulls the coefficients of neighbouring pixels
together.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

from zoo.relax.representations import C4_FIBERS, C4FieldRep, rotate_kernel
from zoo.relax.sites import fold_branch


@functools.cache
def _basis_float64(fiber_in: str, fiber_out: str, kernel_size: int) -> torch.Tensor:
    d_in, d_out = C4_FIBERS[fiber_in], C4_FIBERS[fiber_out]
    rep_in, rep_out = C4FieldRep(fiber_in, 1), C4FieldRep(fiber_out, 1)
    size = d_out * d_in * kernel_size * kernel_size
    elementary = torch.eye(size, dtype=torch.float64).reshape(
        size, d_out, d_in, kernel_size, kernel_size
    )
    # The projector onto equivariant kernels, applied to every elementary kernel. C4 acts on
    # the elementary kernels by signed permutations (all fibers are monomial), so each image is
    # an orbit average: equal magnitudes on the orbit, exact multiples of 1/4.
    projected = sum(rotate_kernel(elementary, rep_in, rep_out, k) for k in range(4)) / 4
    projected = projected.reshape(size, size)
    covered = torch.zeros(size, dtype=torch.bool)
    basis = []
    for column in projected:
        support = column != 0
        if not support.any() or covered[support].any():
            continue
        covered |= support
        basis.append(column / column.abs().max())  # entries exactly 0 or +-1
    return torch.stack(basis).reshape(len(basis), d_out, d_in, kernel_size, kernel_size)


def c4_kernel_basis(fiber_in: str, fiber_out: str, kernel_size: int,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A basis of the C4-equivariant ``kernel_size`` kernels from one field to another.

    Returns ``[n_basis, d_out, d_in, k, k]``: orbit sums of elementary kernels, entries
    exactly 0 or +-1 (so exactly equivariant in every dtype), with disjoint supports. For
    ``k = 3``: regular -> regular 36, vector <-> regular 18, vector -> vector 10 kernels.
    """
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd (a centred kernel), got {kernel_size}")
    return _basis_float64(fiber_in, fiber_out, kernel_size).to(dtype, copy=True)


class SteerableConv2d(nn.Module):
    """A C4-steerable convolution, or its relaxed form (Wang et al. 2022).

    Parameters
    ----------
    rep_in, rep_out
        Field types of the input and output maps.
    kernel_size
        Odd kernel size; ``padding = kernel_size // 2`` keeps the map size (zero padding is
        rotation invariant, so equivariance is exact up to the border).
    bias
        A learned bias per output field where the fiber has an invariant part (regular:
        one value shared by the field's 4 channels; trivial: one; vector: none).
    relaxed
        Coefficients per kernel pixel (relaxed steerable convolution) instead of one per
        basis kernel.
    equivariant_init
        For a relaxed layer: start with equal coefficients at every pixel (an equivariant
        kernel). The authors start from independent random coefficients per pixel.

    Notes
    -----
    Weights ``[out fields, n_basis, in fields]`` (``[..., k, k]`` when relaxed), initialised
    ``N(0, 2 / fan_in)`` per kernel entry (He, for the ReLUs in between).
    """

    def __init__(self, rep_in: C4FieldRep, rep_out: C4FieldRep, kernel_size: int = 3,
                 bias: bool = True, relaxed: bool = False, equivariant_init: bool = False) -> None:
        super().__init__()
        self.rep_in, self.rep_out = rep_in, rep_out
        self.kernel_size, self.relaxed = kernel_size, relaxed
        basis = c4_kernel_basis(rep_in.fiber, rep_out.fiber, kernel_size, torch.float32)
        # Rebuilt by the constructor, so not saved; exact in every dtype it is cast to.
        self.register_buffer("basis", basis, persistent=False)
        n_basis = basis.shape[0]
        shape = (rep_out.multiplicity, n_basis, rep_in.multiplicity)
        if relaxed:
            shape = (*shape, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        std = math.sqrt(2.0 / (rep_in.dim * kernel_size * kernel_size))
        with torch.no_grad():
            if relaxed and equivariant_init:
                self.weight.copy_(torch.randn(shape[:3]).mul_(std)[..., None, None]
                                  .expand(shape))
            else:
                self.weight.normal_(0.0, std)
        invariant = {"regular": True, "trivial": True, "vector": False}[rep_out.fiber]
        self.bias = nn.Parameter(torch.zeros(rep_out.multiplicity)) if bias and invariant else None

    def kernel(self) -> torch.Tensor:
        """The convolution kernel ``[C_out, C_in, k, k]``."""
        if self.relaxed:
            full = torch.einsum("obiyx,bpqyx->opiqyx", self.weight, self.basis)
        else:
            full = torch.einsum("obi,bpqyx->opiqyx", self.weight, self.basis)
        o, p, i, q, k, _ = full.shape
        return full.reshape(o * p, i * q, k, k)

    def expanded_bias(self) -> torch.Tensor | None:
        """The bias per output channel (each field's value on all of its channels)."""
        if self.bias is None:
            return None
        return self.bias.repeat_interleave(self.rep_out.fiber_dim)

    # A relaxation site whose conv branch folds into this convolution (zoo.relax.fold_branch):
    # the relaxed layer then costs what the base layer does.
    fuses_relaxation_branch = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, bias = fold_branch(self, self.kernel(), self.expanded_bias())
        return F.conv2d(x, kernel, bias, padding=self.kernel_size // 2)

    def coefficient_variation(self) -> torch.Tensor:
        """The authors' regulariser of a relaxed layer: mean ``|w(x_{n+1}) - w(x_n)|`` over
        consecutive pixels ``x_n`` of the flattened kernel grid; zero for an equivariant one."""
        if not self.relaxed:
            return self.weight.new_zeros(())
        flat = self.weight.flatten(-2)
        return (flat[..., 1:] - flat[..., :-1]).abs().mean()

    def extra_repr(self) -> str:
        return (f"{self.rep_in.multiplicity}x{self.rep_in.fiber} -> "
                f"{self.rep_out.multiplicity}x{self.rep_out.fiber}, "
                f"kernel_size={self.kernel_size}, relaxed={self.relaxed}")


class FieldBatchNorm(nn.Module):
    """Batch normalisation with statistics and affine parameters shared by each field's
    channels (e2cnn's ``InnerBatchNorm``): equivariant for permutation fibers (regular).

    ``running_stats=False`` always normalises with the batch's statistics (no buffers)."""

    def __init__(self, rep: C4FieldRep, running_stats: bool = True) -> None:
        super().__init__()
        if rep.fiber == "vector":
            raise ValueError("FieldBatchNorm needs a regular or trivial fiber")
        self.rep = rep
        self.norm = nn.BatchNorm3d(rep.multiplicity, track_running_stats=running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        fields = x.reshape(b, self.rep.multiplicity, self.rep.fiber_dim, h, w)
        return self.norm(fields).reshape(x.shape)
