"""VN-PointNet classifier (Deng et al. 2021), ModelNet40 configuration of the reference code
(``FlyingGiraffe/vnn``, ``models/vn_pointnet.py`` and ``models/vn_pointnet_cls.py``).

Input: centred point clouds ``[B, N, 3]`` (float). Output: ``{"logits": [B, num_classes]}``,
invariant to rotations of the clouds and to permutations of their points (not to reflections:
the first layer's cross product flips sign under them; not to translations: centre the clouds).

A first VN layer on the kNN edge features ``[x_j - x_i, x_i, x_j x x_i]`` pooled over the
neighbours, then per-point VN layers with a global VN feature transform concatenated to each
point, the invariant :class:`~zoo.models.vn_layers.VNStdFeature` on ``[features, cloud mean]``,
max pooling over the points, and an MLP head. All VN nonlinearities are ReLUs (slope 0) and
the head uses ReLU, as in the reference.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo._registry import register_architecture
from zoo.models.base import SymmetryGroup
from zoo.models.vn_kernels import vn_batchnorm
from zoo.models.vn_layers import (
    PointCloudClassifier,
    VNBatchNorm,
    VNLinear,
    VNLinearLeakyReLU,
    VNMaxPool,
    VNStdFeature,
    classifier_head,
    drop_running_stats,
    graph_feature_cross,
    mean_pool,
)

PRESETS: dict[str, dict[str, Any]] = {
    # The reference's channel counts: 64//3, 128//3, 1024//3; feature transform
    # 64//3 -> 128//3 -> 1024//3 -> 512//3 -> 256//3 -> 64//3.
    "modelnet40": dict(
        point_channels=21, hidden_channels=42, embed_channels=341,
        transform_channels=(21, 42, 341, 170, 85), head_channels=(512, 256), k=20,
    ),
    # Narrower (about 1/2.5 of the reference widths, k = 10): what CPU training allows.
    "small": dict(
        point_channels=8, hidden_channels=16, embed_channels=128,
        transform_channels=(8, 16, 128, 64, 32), head_channels=(256, 128), k=10,
    ),
    # Deterministic in training mode (the shared suite compares outputs and state bitwise).
    "tiny": dict(
        point_channels=4, hidden_channels=6, embed_channels=12,
        transform_channels=(4, 6, 12, 8, 6), head_channels=(16, 16), k=4,
        dropout=0.0, running_stats=False,
    ),
}


def _pool(pooling: str, channels: int) -> nn.Module | None:
    return VNMaxPool(channels) if pooling == "max" else None


def _apply_pool(pool: nn.Module | None, v: torch.Tensor) -> torch.Tensor:
    return mean_pool(v) if pool is None else pool(v, component_major=True)


class VNFeatureTransform(nn.Module):
    """The reference's ``STNkd``: a global VN feature (``C`` vectors per cloud) computed from the
    per-point features, concatenated to every point."""

    def __init__(self, channels: int, widths: tuple[int, ...], pooling: str = "mean") -> None:
        super().__init__()
        c1, c2, c3, f1, f2 = widths
        self.conv1 = VNLinearLeakyReLU(channels, c1, negative_slope=0.0)
        self.conv2 = VNLinearLeakyReLU(c1, c2, negative_slope=0.0)
        self.conv3 = VNLinearLeakyReLU(c2, c3, negative_slope=0.0)
        self.pool = _pool(pooling, c3)
        self.fc1 = VNLinearLeakyReLU(c3, f1, negative_slope=0.0)
        self.fc2 = VNLinearLeakyReLU(f1, f2, negative_slope=0.0)
        self.fc3 = VNLinear(f2, channels)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """Component-major ``[B, N, 3, C]`` -> ``[B, 3, C]``."""
        for conv in (self.conv1, self.conv2, self.conv3):
            v = conv(v, component_major=True)
        v = _apply_pool(self.pool, v)
        v = self.fc2(self.fc1(v, component_major=True), component_major=True)
        return self.fc3.component_major(v)


@register_architecture("vn-pointnet", presets=PRESETS, default_preset="modelnet40")
class VNPointNet(PointCloudClassifier):
    """VN-PointNet point-cloud classifier.

    Parameters
    ----------
    num_classes
        Output logits.
    point_channels
        Vector channels of the first two layers (reference: 21).
    hidden_channels
        Of the third layer (reference: 42).
    embed_channels
        Of the last per-point layer (reference: 341); the invariant layer sees twice as many
        (features and their cloud mean) and outputs ``3x`` that many scalars per point.
    transform_channels
        Widths of the feature transform: three per-point layers and two global ones (reference:
        21, 42, 341, 170, 85); ``None`` disables it.
    head_channels
        Hidden widths of the MLP head (reference: 512, 256).
    k
        Neighbours of the first layer's kNN graph (reference: 20).
    pooling
        ``"mean"`` (the paper's reported setting) or ``"max"`` (learned-direction VN max pool)
        over neighbours and, in the feature transform, over points.
    dropout
        Of the head.
    running_stats
        Batch norms keep running statistics for eval mode (``False``: batch statistics in
        training, running statistics frozen at mean 0 and variance 1, see
        :func:`~zoo.models.vn_layers.drop_running_stats`).
    """

    symmetry = SymmetryGroup(rotations=True, reflections=False, translations=False,
                             permutations=True)

    def __init__(
        self,
        num_classes: int = 40,
        point_channels: int = 21,
        hidden_channels: int = 42,
        embed_channels: int = 341,
        transform_channels: tuple[int, int, int, int, int] | None = (21, 42, 341, 170, 85),
        head_channels: tuple[int, ...] = (512, 256),
        k: int = 20,
        pooling: str = "mean",
        dropout: float = 0.4,
        running_stats: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', got {pooling!r}")
        self.k, self.point_channels, self.embed_channels = k, point_channels, embed_channels
        self.conv_pos = VNLinearLeakyReLU(3, point_channels, negative_slope=0.0)
        self.pool = _pool(pooling, point_channels)
        self.conv1 = VNLinearLeakyReLU(point_channels, point_channels, negative_slope=0.0)
        self.transform = (
            None if transform_channels is None
            else VNFeatureTransform(point_channels, tuple(transform_channels), pooling)
        )
        width = point_channels * (1 if transform_channels is None else 2)
        self.conv2 = VNLinearLeakyReLU(width, hidden_channels, negative_slope=0.0)
        self.conv3 = VNLinear(hidden_channels, embed_channels)
        self.bn3 = VNBatchNorm(embed_channels)
        self.std_feature = VNStdFeature(2 * embed_channels, negative_slope=0.0)
        self.head = classifier_head(
            3 * 2 * embed_channels, head_channels, num_classes, 0.0, dropout,
            dropout_before_norm=True,
        )
        if not running_stats:
            drop_running_stats(self)

    def forward(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_points(points)
        # Component-major features [B, N, (k,) 3, C] throughout (see vn_layers).
        edges = graph_feature_cross(points, self.k, component_major=True)
        v = _apply_pool(self.pool, self.conv_pos(edges, component_major=True))
        v = self.conv1(v, component_major=True)
        shared = 0
        if self.transform is not None:
            global_feature = self.transform(v).unsqueeze(1).expand_as(v)
            v, shared = torch.cat([v, global_feature], dim=-1), self.point_channels
        v = self.conv2(v, shared_tail=shared, component_major=True)
        v = vn_batchnorm(self.conv3.component_major(v), self.bn3.bn, component_major=True)
        v = torch.cat([v, mean_pool(v).unsqueeze(1).expand_as(v)], dim=-1)
        invariant, _ = self.std_feature(v, shared_tail=self.embed_channels, component_major=True)
        return {"logits": self.head(invariant.flatten(-2).amax(dim=1))}
