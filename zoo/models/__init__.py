"""Registered architectures. Importing this package registers every architecture file."""

from zoo.models.base import GroupElement, RelaxationSite, SymmetryGroup, ZooModel

__all__ = ["GroupElement", "RelaxationSite", "SymmetryGroup", "ZooModel"]

# Architecture files register themselves on import.
from zoo.models import egnn, equiformer, segnn  # noqa: E402,F401
