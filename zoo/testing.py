"""Equivariance checks for users and tests.

::

    from zoo.testing import assert_equivariant, equivariance_error
    err = equivariance_error(model)            # largest relative error, float64, random inputs
    assert_equivariant(model, tolerance=1e-10)

The model is cloned and cast (the caller's model is left as it was); random group elements are
drawn from a private generator (global seeds are untouched). The measurement lives in
:mod:`zoo.equivariance` (training and ``zoo verify`` use it too), random group elements in
:mod:`zoo.symmetry`; both are re-exported here, where they were first published.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.equivariance import (
    cast_inputs,
    equivariance_error,
    equivariance_report,
    group_elements,
)
from zoo.symmetry import random_permutation, random_rotation

__all__ = [
    "assert_equivariant",
    "cast_inputs",
    "equivariance_error",
    "equivariance_report",
    "group_elements",
    "random_permutation",
    "random_rotation",
]


def assert_equivariant(
    model: nn.Module,
    inputs: Any = None,
    dtype: torch.dtype = torch.float64,
    tolerance: float | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Raise ``AssertionError`` listing the failing transformations if the model is not equivariant.

    ``tolerance`` defaults to 1e-9 in float64 and 1e-4 in float32.
    """
    if tolerance is None:
        tolerance = 1e-9 if dtype == torch.float64 else 1e-4
    report = equivariance_report(model, inputs, dtype, seed)
    failing = {k: v for k, v in report.items() if v > tolerance}
    if failing:
        raise AssertionError(f"not equivariant to {tolerance:g} in {dtype}: {failing}")
    return report
