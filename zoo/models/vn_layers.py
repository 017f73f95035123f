"""Vector Neuron layers (Deng et al., ICCV 2021, "Vector Neurons: A General Framework for
SO(3)-Equivariant Networks"), written for the zoo's relaxation interface.

A VN feature is a list of ``C`` 3D vectors per point, stored channel-major as ``[..., C, 3]``.
Every linear map of the network mixes channels only (``y_o = sum_c W_oc x_c``), so it commutes
with any rotation acting on the 3-axis.

Relaxation sites are the modules deriving from :class:`VNSite` (every VN linear layer and every
learned direction map). Their first input is the *flattened* feature ``[..., 3 * C_in]``
(``x.flatten(-2)`` of ``[..., C_in, 3]``, index ``3 * c + i``) and their output is
``[..., 3 * C_out]``, so a relaxed model's dense branch acts on the flattened ``C x 3`` features
with :class:`~zoo.relax.representations.VectorChannelsRep` on both sides, whose Lie derivative
vanishes exactly for ``W = A kron I_3`` (the VN layers themselves).

Differences from the reference code (``FlyingGiraffe/vnn``), each for a reason:

- features are ``[B, N, C, 3]`` instead of ``[B, C, 3, N]`` (the site layout above; the
  neighbour axis of edge features comes before the channels); the networks themselves run
  *component-major* ``[B, N, 3, C]`` (``component_major=True`` on the layers, see
  :mod:`zoo.models.vn_kernels`), where a VN linear map is one matrix product without copies. A
  site whose only observer is its relaxation branch adds the branch itself on the
  component-major features (the branch permutes its weights instead,
  :func:`~zoo.relax.sites.add_branch_output_in_order`); a site observed by any other hook
  (diagnostics, a user's) is called on its channel-major input; otherwise it is bypassed. All
  three ways run the same product on the same contiguous component-major tensor, so a relaxed
  model whose branches output zero computes bitwise what the base model does;
- a linear layer whose input ends with channels that are the same for every point (the cloud
  mean concatenated to each point) takes ``shared_tail`` and applies that part of the weight once
  per cloud instead of once per point: the same function at half the cost in the invariant layer;
- edge convolutions (DGCNN) apply their linear maps per point (:class:`VNEdgeLinear`), and the
  batch norm + LeakyReLU tails run in fused kernels (:mod:`zoo.models.vn_kernels`): the same
  function and gradients, several times faster on a CPU;
- :class:`VNStdFeature` returns its invariants frame-axis first, a fixed permutation of the
  reference's order (the head's first linear layer absorbs it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.models.base import GroupElement, RelaxationSite, ZooModel
from zoo.models.vn_kernels import (
    EPS,
    gather_neighbours,
    knn,
    vn_batchnorm_leaky_relu,
    vn_leaky_relu,
    vn_matmul,
)
from zoo.relax.representations import VectorChannelsRep
from zoo.relax.sites import (
    add_branch_output_in_order,
    add_branch_outputs_in_order,
    branch_reads_any_order,
    has_hooks,
)


def _columns(channels: int) -> tuple[int, ...]:
    """The site layout's column at each position of component-major features."""
    return VectorChannelsRep(channels).component_major_columns()


def _needs_channel_major(site: nn.Module, shared_tail: int = 0) -> bool:
    """Whether an observed site must be called on its channel-major input: something other
    than its relaxation branch observes it, or the branch would cost more on permuted columns
    (:func:`~zoo.relax.sites.branch_reads_any_order`)."""
    return not branch_reads_any_order(site, 3 * shared_tail)


class VNSite(nn.Module):
    """Base of the modules that are relaxation sites (see the module docstring)."""

    in_channels: int
    out_channels: int

    def matrix(self) -> torch.Tensor:
        """The channel map ``[out_channels, in_channels]`` the site applies to each component."""
        return self.weight

    def forward(
        self,
        x: torch.Tensor,
        shared_tail: int = 0,
        *,
        component_major_input: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[..., 3 * C_in] -> [..., 3 * C_out]`` (flattened channel-major vectors); see
        :func:`vn_matmul` for ``shared_tail``. ``component_major_input``: the same features as
        a contiguous ``[..., 3, C_in]`` tensor, where the caller has one (saves a copy)."""
        v = component_major_input
        if v is None:
            v = x.unflatten(-1, (self.in_channels, 3)).transpose(-1, -2).contiguous()
        out = vn_matmul(self.matrix(), v, shared_tail, component_major=True)
        return out.transpose(-1, -2).flatten(-2)

    def component_major(
        self, v: torch.Tensor, shared_tail: int = 0, flat: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The site on component-major features ``[..., 3, C_in]`` -> ``[..., 3, C_out]``
        (contiguous).

        One matrix product. A relaxation branch that is the site's only observer is added here,
        on the component-major features (:func:`~zoo.relax.sites.add_branch_output_in_order`
        with :meth:`VectorChannelsRep.component_major_columns`): no channel-major copies of
        the input and output, forward or backward. When another hook observes the site, the
        site is called on its flattened channel-major input ``flat`` (made here if not given),
        so every hook sees the site's declared input; the product is the same, bitwise.
        """
        v = v.contiguous()
        if not has_hooks(self):
            return vn_matmul(self.matrix(), v, shared_tail, component_major=True)
        if not _needs_channel_major(self, shared_tail):
            out = vn_matmul(self.matrix(), v, shared_tail, component_major=True)
            result = add_branch_output_in_order(
                self, out.flatten(-2), v.flatten(-2), _columns(self.in_channels),
                _columns(self.out_channels), 3 * shared_tail,
            )
            return result.view(out.shape)
        if flat is None:
            flat = v.transpose(-1, -2).flatten(-2)
        args = (flat, shared_tail) if shared_tail else (flat,)
        out = self(*args, component_major_input=v)
        return out.unflatten(-1, (-1, 3)).transpose(-1, -2).contiguous()

    def site_reps(self) -> tuple[VectorChannelsRep, VectorChannelsRep]:
        """Representations of the flattened first input and of the output."""
        return VectorChannelsRep(self.in_channels), VectorChannelsRep(self.out_channels)

    def relaxation_shared_columns(self, args: tuple) -> int:
        """Trailing columns of the flattened input that are equal along the set axis (the
        ``shared_tail`` channels, 3 columns each): a relaxation branch computes their part once
        per set, as the layer does (:class:`zoo.relax.RelaxedBranch`)."""
        return 3 * int(args[1]) if len(args) > 1 else 0


class VNLinear(VNSite):
    """VN linear layer ``[..., 3 * C_in] -> [..., 3 * C_out]`` (flattened channel-major vectors).

    Parameters
    ----------
    in_channels, out_channels
        Numbers of vector channels. No bias: a bias vector would break equivariance.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        # The reference's nn.Linear(bias=False) initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


class VNEdgeLinear(VNSite):
    """VN linear layer of the edge feature ``[x_j - x_i, x_i]`` (VN-DGCNN), evaluated per point.

    ``W [x_j - x_i, x_i] = W1 x_j + (W2 - W1) x_i``, so the map runs once per point instead of
    once per edge (``k`` times cheaper). Holds the reference's weight ``W = [W1, W2]``
    (``[C_out, 2 C_in]``); for point features ``[..., 3 C_in]`` returns ``[..., 3 * 2 C_out]``:
    ``W1 x`` (neighbour part) then ``(W2 - W1) x`` (centre part), and edge ``(i, j)`` gets
    ``out[j, :C_out] + out[i, C_out:]``.

    A relaxed model's branch here reads ``x_i`` and writes both parts, so the edge receives
    ``g_nb(x_j) + g_ctr(x_i)``: for the linear branch form exactly the dense maps of the
    flattened edge feature, at a ``k``-th of their cost.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.edge_out_channels = in_channels, out_channels
        self.out_channels = 2 * out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, 2 * in_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def matrix(self) -> torch.Tensor:
        """``[W1; W2 - W1]`` (``[2 C_out, C_in]``): the neighbour part, then the centre part."""
        w_nb, w_ctr = self.weight.split(self.in_channels, dim=1)
        return torch.cat([w_nb, w_ctr - w_nb], dim=0)

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The neighbour and centre parts of an output ``[B, N, 3 * 2 C_out]``, each
        component-major ``[B, N, 3, C_out]`` and contiguous (the layout of the edge kernel)."""
        component_major = out.unflatten(-1, (self.out_channels, 3)).transpose(-1, -2)
        nb, ctr = component_major.split(self.edge_out_channels, dim=-1)
        return nb.contiguous(), ctr.contiguous()

    def extra_repr(self) -> str:
        return f"{2 * self.in_channels}, {self.edge_out_channels} (per point)"


def apply_sites(
    sites: tuple[VNSite, ...], v: torch.Tensor, shared_tail: int = 0
) -> list[torch.Tensor]:
    """Sites reading the same component-major input ``[..., 3, C_in]``, each output
    ``[..., 3, C_out]``; those called on the channel-major input (see
    :meth:`VNSite.component_major`) share one copy of it."""
    v = v.contiguous()
    if all(has_hooks(s) and not _needs_channel_major(s, shared_tail) for s in sites):
        # Every site adds its own branch: together, so that low-rank branches share one
        # product with the input (see add_branch_outputs_in_order).
        outputs = [vn_matmul(s.matrix(), v, shared_tail, component_major=True) for s in sites]
        results = add_branch_outputs_in_order(
            list(sites), [out.flatten(-2) for out in outputs], v.flatten(-2),
            _columns(sites[0].in_channels), [_columns(s.out_channels) for s in sites],
            3 * shared_tail,
        )
        return [r.view(out.shape) for r, out in zip(results, outputs, strict=True)]
    copy = any(has_hooks(s) and _needs_channel_major(s, shared_tail) for s in sites)
    flat = v.transpose(-1, -2).flatten(-2) if copy else None
    return [site.component_major(v, shared_tail, flat) for site in sites]


class VNBatchNorm(nn.Module):
    """Batch normalisation of the vector norms; directions are kept.

    Statistics are per channel over every leading position (batch, points, neighbours), like
    the reference's ``BatchNorm1d``/``BatchNorm2d`` on ``[B, C, (N, (k))]`` norms. Plain
    autograd, the reference of the fused kernels: the networks run its ``bn`` through
    :func:`~zoo.models.vn_kernels.vn_batchnorm` (alone) or the fused tails.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.bn = nn.BatchNorm1d(num_features)

    def forward(self, v: torch.Tensor, component_major: bool = False) -> torch.Tensor:
        """``[..., C, 3]`` (or ``[..., 3, C]`` with ``component_major``), the same layout out."""
        axis = -2 if component_major else -1
        norm = torch.linalg.vector_norm(v, dim=axis) + EPS
        normed = self.bn(norm.reshape(-1, self.num_features)).view_as(norm)
        return v * (normed / norm).unsqueeze(axis)


class VNLeakyReLU(nn.Module):
    """Standalone VN LeakyReLU with a learned direction map (a relaxation site)."""

    def __init__(
        self, in_channels: int, share_nonlinearity: bool = False, negative_slope: float = 0.2
    ) -> None:
        super().__init__()
        self.map_to_dir = VNLinear(in_channels, 1 if share_nonlinearity else in_channels)
        self.negative_slope = negative_slope

    def forward(self, v: torch.Tensor, component_major: bool = False) -> torch.Tensor:
        """``[..., C, 3]`` (or ``[..., 3, C]`` with ``component_major``), the same layout out."""
        if component_major:
            d = self.map_to_dir.component_major(v)
        else:
            d = self.map_to_dir(v.flatten(-2)).unflatten(-1, (-1, 3))
        return vn_leaky_relu(v, d, self.negative_slope, component_major)


class VNLinearLeakyReLU(nn.Module):
    """VN linear layer, VN batch norm and VN LeakyReLU, the reference's building block.

    The direction map reads the block's *input* (as in the reference), not the linear output.

    Parameters
    ----------
    in_channels, out_channels
        Vector channels.
    share_nonlinearity
        One direction for every output channel instead of one each.
    negative_slope
        LeakyReLU slope (0 is the VN ReLU).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        share_nonlinearity: bool = False,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.map_to_feat = VNLinear(in_channels, out_channels)
        self.batchnorm = VNBatchNorm(out_channels)
        self.map_to_dir = VNLinear(in_channels, 1 if share_nonlinearity else out_channels)

    def forward(
        self, v: torch.Tensor, shared_tail: int = 0, component_major: bool = False
    ) -> torch.Tensor:
        """``[..., C_in, 3] -> [..., C_out, 3]`` (``[..., 3, C_in] -> [..., 3, C_out]`` with
        ``component_major``); see :func:`vn_matmul` for ``shared_tail``."""
        if not component_major:
            return self.forward(v.transpose(-1, -2), shared_tail, True).transpose(-1, -2)
        p, d = apply_sites((self.map_to_feat, self.map_to_dir), v, shared_tail)
        return vn_batchnorm_leaky_relu(
            p, d, self.batchnorm.bn, self.negative_slope, component_major=True
        )


class VNMaxPool(nn.Module):
    """Max pooling over the set axis (dim ``-3``), per channel, of the vector that points
    furthest along a learned direction (``argmax <v, d>``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.map_to_dir = VNLinear(channels, channels)

    def forward(self, v: torch.Tensor, component_major: bool = False) -> torch.Tensor:
        """``[..., S, C, 3]`` -> ``[..., C, 3]`` (``[..., S, 3, C]`` -> ``[..., 3, C]`` with
        ``component_major``)."""
        if not component_major:
            return self.forward(v.transpose(-1, -2), True).transpose(-1, -2)
        d = self.map_to_dir.component_major(v)
        best = (v * d).sum(-2).argmax(dim=-2, keepdim=True)  # [..., 1, C]
        index = best.unsqueeze(-2).expand(*best.shape[:-1], 3, best.shape[-1])
        return v.gather(-3, index).squeeze(-3)


def mean_pool(v: torch.Tensor) -> torch.Tensor:
    """Mean over the set axis (dim ``-3``) of ``[..., S, C, 3]`` features."""
    return v.mean(dim=-3)


class VNStdFeature(nn.Module):
    """Invariant features: coordinates of every vector in a learned equivariant frame.

    Two VN blocks (``C -> C/2 -> C/4``) and a VN linear layer give three vectors ``z_k`` per
    point; the output is ``<v_c, z_k>`` for every channel ``c`` and ``k``, invariant under
    rotations (and reflections, which flip both).

    Parameters
    ----------
    in_channels
        ``C``.
    normalize_frame
        Orthonormalise the frame (Gram-Schmidt on two predicted vectors, then their cross
        product). The classifiers use ``False``, as in the reference.
    share_nonlinearity, negative_slope
        Of the two VN blocks.
    """

    def __init__(
        self,
        in_channels: int,
        normalize_frame: bool = False,
        share_nonlinearity: bool = False,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.normalize_frame = normalize_frame
        self.vn1 = VNLinearLeakyReLU(
            in_channels, in_channels // 2, share_nonlinearity, negative_slope
        )
        self.vn2 = VNLinearLeakyReLU(
            in_channels // 2, in_channels // 4, share_nonlinearity, negative_slope
        )
        self.vn_lin = VNLinear(in_channels // 4, 2 if normalize_frame else 3)

    def forward(
        self, v: torch.Tensor, shared_tail: int = 0, component_major: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[..., C, 3]`` (``[..., 3, C]`` with ``component_major``) -> (invariant
        ``[..., 3, C]``: ``<z_k, v_c>`` at ``[..., k, c]``; frame ``[..., 3, 3]`` with rows
        ``z_k``).

        The invariants come out frame-axis first (the reference orders them ``[c, k]``): one
        product ``frame @ v`` per point in the component-major layout, without a transpose of
        the large feature tensor. Flattened, they are a fixed permutation of the reference's
        features.
        """
        if not component_major:
            v = v.transpose(-1, -2)
        z = self.vn2(self.vn1(v, shared_tail, component_major=True), component_major=True)
        frame = self.vn_lin.component_major(z).transpose(-1, -2)
        if self.normalize_frame:
            u1 = frame[..., 0, :]
            u1 = u1 / (torch.linalg.vector_norm(u1, dim=-1, keepdim=True) + EPS)
            v2 = frame[..., 1, :]
            v2 = v2 - (v2 * u1).sum(-1, keepdim=True) * u1
            u2 = v2 / (torch.linalg.vector_norm(v2, dim=-1, keepdim=True) + EPS)
            frame = torch.stack([u1, u2, torch.linalg.cross(u1, u2, dim=-1)], dim=-2)
        return torch.matmul(frame, v), frame


def graph_feature_cross(
    points: torch.Tensor, k: int, component_major: bool = False
) -> torch.Tensor:
    """VN-PointNet's first-layer edge features ``[B, N, k, 3, 3]`` of a cloud ``[B, N, 3]``
    (channels then components, or the transpose with ``component_major``).

    Channels per edge ``(i, j)``, ``j`` among the ``k`` nearest neighbours of ``i``:
    ``x_j - x_i``, ``x_i`` and ``x_j x x_i`` (the reference's order; the cross product makes
    the network equivariant to rotations but not to reflections).
    """
    idx = knn(points, k)
    neighbours = gather_neighbours(points, idx)
    centre = points.unsqueeze(2).expand_as(neighbours)
    cross = torch.linalg.cross(neighbours, centre, dim=-1)
    return torch.stack([neighbours - centre, centre, cross], dim=-1 if component_major else -2)


def classifier_head(
    in_features: int,
    hidden: tuple[int, ...],
    num_classes: int,
    negative_slope: float,
    dropout: float,
    dropout_before_norm: bool,
) -> nn.Sequential:
    """The invariant MLP head: ``Linear -> BatchNorm -> (Leaky)ReLU`` per hidden width, then a
    linear layer to the logits.

    ``dropout_before_norm``: VN-PointNet's head (dropout between the linear layer and the norm,
    every hidden layer but the first); otherwise VN-DGCNN's (dropout after each activation).
    """
    layers: list[nn.Module] = []
    width_in = in_features
    for i, width in enumerate(hidden):
        layers.append(nn.Linear(width_in, width))
        if dropout_before_norm and i > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.BatchNorm1d(width), nn.LeakyReLU(negative_slope)]
        if not dropout_before_norm:
            layers.append(nn.Dropout(dropout))
        width_in = width
    layers.append(nn.Linear(width_in, num_classes))
    return nn.Sequential(*layers)


def drop_running_stats(module: nn.Module) -> None:
    """Freeze the running statistics of every batch norm inside ``module`` at mean 0 and
    variance 1: training mode normalises with the batch's statistics and never updates them.

    For the ``tiny`` test presets: the shared architecture suite compares ``state_dict`` tensors
    before and after training-mode forward passes, which updated statistics would change. In
    eval mode each norm is then a fixed affine map, as with any running statistics, so a model
    in eval mode predicts a single cloud, and a cloud's prediction does not depend on the
    clouds batched with it (normalising with batch statistics in eval mode would do neither).
    """
    for bn in module.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            # Not tracking, but with running_mean / running_var kept (zeros, ones): torch then
            # uses batch statistics in training mode only, and never updates the buffers.
            bn.track_running_stats = False
            bn.register_buffer("num_batches_tracked", None)


class PointCloudClassifier(ZooModel):
    """What the VN classifiers share: point-cloud input ``[B, N, 3]``, invariant logits, the
    group action for :mod:`zoo.testing` and the relaxation sites (every :class:`VNSite`)."""

    input_kind = "point_cloud"
    k: int

    @property
    def num_classes(self) -> int:
        """Number of output logits (classes)."""
        return int(self.model_args["num_classes"])

    def check_points(self, points: torch.Tensor) -> None:
        """Raise a clear error for anything but ``[B, N, 3]`` floats with ``N >= k``."""
        if points.dim() != 3 or points.shape[-1] != 3 or not points.is_floating_point():
            raise ValueError(
                f"expected float points [batch, points, 3], got {tuple(points.shape)} "
                f"{points.dtype}"
            )
        if points.shape[1] < self.k:
            raise ValueError(f"need at least k={self.k} points per cloud, got {points.shape[1]}")

    def relaxation_sites(self) -> list[RelaxationSite]:
        """Every VN linear layer and learned direction map, in module order."""
        return [
            RelaxationSite(name, *module.site_reps())
            for name, module in self.named_modules()
            if isinstance(module, VNSite)
        ]

    def example_inputs(
        self, generator: torch.Generator, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """Two clouds of ``max(24, k + 8)`` Gaussian points (no kNN ties, almost surely)."""
        n = max(24, self.k + 8)
        return torch.randn(2, n, 3, generator=generator, dtype=torch.float64).to(dtype)

    def set_size(self, inputs: torch.Tensor) -> torch.Tensor:
        batch, points = inputs.shape[:2]
        return torch.arange(batch, device=inputs.device).repeat_interleave(points)

    def act_on_inputs(self, inputs: torch.Tensor, g: GroupElement) -> torch.Tensor:
        out = inputs @ g.rotation.T.to(inputs.dtype)
        if g.translation is not None:
            out = out + g.translation.to(inputs.dtype)
        if g.permutation is not None:
            out = out.reshape(-1, 3)[g.permutation].reshape(inputs.shape)
        return out

    def act_on_outputs(self, outputs: dict[str, torch.Tensor], g: GroupElement):
        return {"logits": outputs["logits"]}  # invariant
