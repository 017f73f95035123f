"""Registered architectures. Importing this package registers every architecture file."""

from zoo.models.base import GroupElement, RelaxationSite, SymmetryGroup, ZooModel

__all__ = ["GroupElement", "RelaxationSite", "SymmetryGroup", "ZooModel"]

# Architecture files register themselves on import.
from zoo.models import (  # noqa: E402,F401
    egnn,
    equiformer,
    segnn,
    smoke_cnn,
    vn_dgcnn,
    vn_pointnet,
)
