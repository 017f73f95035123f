"""VN-DGCNN classifier (Deng et al. 2021), ModelNet40 configuration of the reference code
(``FlyingGiraffe/vnn``, ``models/vn_dgcnn_cls.py``).

Input: centred point clouds ``[B, N, 3]`` (float). Output: ``{"logits": [B, num_classes]}``,
invariant to rotations of the clouds and to permutations of their points. The network is not
translation invariant (centre the clouds). Its first layer uses the edge features
``[x_j - x_i, x_i]`` without a cross product, as the reference: every layer then commutes with
reflections too, and :attr:`VNDGCNN.symmetry` declares O(3).

Four dynamic-graph VN edge convolutions (kNN recomputed on each layer's features), a VN layer
on their concatenation, the invariant :class:`~zoo.models.vn_layers.VNStdFeature` on
``[features, cloud mean]``, max and mean pooling over the points, and an MLP head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo._registry import register_architecture
from zoo.models.base import SymmetryGroup
from zoo.models.vn_kernels import knn, vn_edge_activations, vn_edge_mean
from zoo.models.vn_layers import (
    PointCloudClassifier,
    VNBatchNorm,
    VNEdgeLinear,
    VNLinearLeakyReLU,
    VNMaxPool,
    VNStdFeature,
    apply_sites,
    classifier_head,
    drop_running_stats,
    mean_pool,
)

PRESETS: dict[str, dict[str, Any]] = {
    # The reference's channel counts: 64//3, 64//3, 128//3, 256//3 and 1024//3.
    "modelnet40": dict(
        conv_channels=(21, 21, 42, 85), embed_channels=341, head_channels=(512, 256), k=20,
    ),
    # Narrower (about 1/2.5 of the reference widths, k = 10): what CPU training allows.
    "small": dict(
        conv_channels=(8, 8, 16, 32), embed_channels=128, head_channels=(256, 128), k=10,
    ),
    # Deterministic in training mode (the shared suite compares outputs and state bitwise).
    "tiny": dict(
        conv_channels=(4, 4, 6, 8), embed_channels=12, head_channels=(16, 16), k=4,
        dropout=0.0, running_stats=False,
    ),
}


class VNEdgeConv(nn.Module):
    """One VN-DGCNN layer: VN linear + batch norm + LeakyReLU on the edge features
    ``[x_j - x_i, x_i]`` of the given kNN graph, pooled over the neighbours.

    The linear maps are :class:`~zoo.models.vn_layers.VNEdgeLinear` (evaluated per point);
    with mean pooling the per-edge tail is the fused :func:`~zoo.models.vn_kernels.vn_edge_mean`.
    """

    def __init__(
        self, in_channels: int, out_channels: int, negative_slope: float = 0.2,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        self.out_channels, self.negative_slope = out_channels, negative_slope
        self.map_to_feat = VNEdgeLinear(in_channels, out_channels)
        self.batchnorm = VNBatchNorm(out_channels)
        self.map_to_dir = VNEdgeLinear(in_channels, out_channels)
        self.pool = VNMaxPool(out_channels) if pooling == "max" else None

    def forward(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Component-major ``[B, N, 3, C_in]`` and neighbours ``[B, N, k]`` ->
        ``[B, N, 3, C_out]``."""
        # Each map's output holds the neighbour part, then the centre part (VNEdgeLinear).
        feat, direction = apply_sites((self.map_to_feat, self.map_to_dir), v)
        pa, pb = feat.split(self.out_channels, dim=-1)
        da, db = direction.split(self.out_channels, dim=-1)
        if self.pool is None:
            return vn_edge_mean(pa, pb, da, db, idx, self.batchnorm.bn, self.negative_slope)
        edges = vn_edge_activations(
            pa, pb, da, db, idx, self.batchnorm, self.negative_slope, component_major=True
        )
        return self.pool(edges, component_major=True)


@register_architecture("vn-dgcnn", presets=PRESETS, default_preset="modelnet40")
class VNDGCNN(PointCloudClassifier):
    """VN-DGCNN point-cloud classifier.

    Parameters
    ----------
    num_classes
        Output logits.
    conv_channels
        Vector channels of the four edge convolutions (reference: 21, 21, 42, 85).
    embed_channels
        Vector channels of the layer on their concatenation (reference: 341); the invariant
        layer sees twice as many (features and their cloud mean) and outputs ``3x`` that many
        scalars per point, max- and mean-pooled.
    head_channels
        Hidden widths of the MLP head (reference: 512, 256).
    k
        Neighbours of the kNN graphs (reference: 20).
    pooling
        ``"mean"`` (the paper's reported setting) or ``"max"`` (learned-direction VN max pool)
        over the neighbours.
    negative_slope
        Of the VN LeakyReLUs and of the head's LeakyReLUs.
    dropout
        Of the head.
    running_stats
        Batch norms keep running statistics for eval mode (``False``: batch statistics in
        training, running statistics frozen at mean 0 and variance 1, see
        :func:`~zoo.models.vn_layers.drop_running_stats`).
    """

    symmetry = SymmetryGroup(rotations=True, reflections=True, translations=False,
                             permutations=True)

    def __init__(
        self,
        num_classes: int = 40,
        conv_channels: tuple[int, int, int, int] = (21, 21, 42, 85),
        embed_channels: int = 341,
        head_channels: tuple[int, ...] = (512, 256),
        k: int = 20,
        pooling: str = "mean",
        negative_slope: float = 0.2,
        dropout: float = 0.5,
        running_stats: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', got {pooling!r}")
        self.k, self.embed_channels = k, embed_channels
        self.convs = nn.ModuleList()
        channels = 1
        for width in conv_channels:
            self.convs.append(VNEdgeConv(channels, width, negative_slope, pooling))
            channels = width
        self.conv_embed = VNLinearLeakyReLU(
            sum(conv_channels), embed_channels, share_nonlinearity=True,
            negative_slope=negative_slope,
        )
        self.std_feature = VNStdFeature(2 * embed_channels, negative_slope=negative_slope)
        self.head = classifier_head(
            2 * 3 * 2 * embed_channels, head_channels, num_classes, negative_slope, dropout,
            dropout_before_norm=False,
        )
        if not running_stats:
            drop_running_stats(self)

    def forward(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_points(points)
        v = points.unsqueeze(-1)  # component-major [B, N, 3, 1] throughout (see vn_layers)
        features = []
        for conv in self.convs:
            # kNN of the channel-major flattening (a small copy): distances summed in the order
            # the published checkpoints were trained with, so near-ties resolve as they did.
            v = conv(v, knn(v.transpose(-1, -2).flatten(-2), self.k))
            features.append(v)
        v = self.conv_embed(torch.cat(features, dim=-1), component_major=True)
        v = torch.cat([v, mean_pool(v).unsqueeze(1).expand_as(v)], dim=-1)
        invariant, _ = self.std_feature(v, shared_tail=self.embed_channels, component_major=True)
        invariant = invariant.flatten(-2)  # [B, N, 3 * 2 * embed]
        pooled = torch.cat([invariant.amax(dim=1), invariant.mean(dim=1)], dim=-1)
        return {"logits": self.head(pooled)}
