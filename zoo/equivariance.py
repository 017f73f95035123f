"""Measuring equivariance: apply group elements to a model's inputs and outputs, compare.

::

    from zoo.equivariance import equivariance_error, equivariance_report
    err = equivariance_error(model)                 # largest relative error, float64
    report = equivariance_report(model, inputs)     # {"rotation0/energy": 3e-16, ...}

The model is cloned and cast (the caller's model is left as it was); random group elements are
drawn from a private generator (global seeds are untouched). ``zoo verify`` and training measure
with these functions; :mod:`zoo.testing` re-exports them beside ``assert_equivariant``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.models.base import GroupElement, ZooModel
from zoo.symmetry import random_permutation, random_rotation

__all__ = ["cast_inputs", "equivariance_error", "equivariance_report", "group_elements"]


def group_elements(
    model: ZooModel,
    inputs: Any,
    generator: torch.Generator,
    dtype: torch.dtype,
    n_rotations: int = 3,
) -> list[tuple[str, GroupElement]]:
    """The transformations to check for ``model``'s symmetry group, labelled."""
    symmetry = model.symmetry
    if symmetry.discrete is not None:
        return [(f"{symmetry.discrete}[{i}]", g) for i, g in enumerate(model.group_elements(dtype))]
    eye = torch.eye(3, dtype=dtype)
    elements: list[tuple[str, GroupElement]] = []
    for i in range(n_rotations if symmetry.rotations else 0):
        elements.append((f"rotation{i}", GroupElement(random_rotation(generator, dtype))))
    if symmetry.reflections:
        rotation = random_rotation(generator, dtype, reflect=True)
        elements.append(("reflection", GroupElement(rotation)))
    if symmetry.translations:
        shift = torch.randn(3, generator=generator, dtype=torch.float64).to(dtype) * 2.0
        elements.append(("translation", GroupElement(eye, translation=shift)))
    set_index = model.set_size(inputs)
    if symmetry.permutations and set_index is not None:
        perm = random_permutation(set_index, generator)
        elements.append(("permutation", GroupElement(eye, permutation=perm)))
    if len(elements) > 1:  # everything at once, as a user's data would be transformed
        rotation = random_rotation(generator, dtype, reflect=symmetry.reflections)
        shift = (
            torch.randn(3, generator=generator, dtype=torch.float64).to(dtype)
            if symmetry.translations
            else None
        )
        perm = (
            random_permutation(set_index, generator)
            if symmetry.permutations and set_index is not None
            else None
        )
        elements.append(("combined", GroupElement(rotation, shift, perm)))
    return elements


def _as_dict(outputs: Any) -> dict[str, torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return {"output": outputs}
    return dict(outputs)


def cast_inputs(inputs: Any, dtype: torch.dtype) -> Any:
    """The input with its floating tensors cast (tensors, dicts and PyG batches)."""

    def cast(t: Any) -> Any:
        return t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t

    if isinstance(inputs, torch.Tensor):
        return cast(inputs)
    if isinstance(inputs, dict):
        return {k: cast(v) for k, v in inputs.items()}
    if hasattr(inputs, "apply"):  # torch_geometric Data / Batch
        return inputs.clone().apply(cast)
    return inputs


def equivariance_report(
    model: nn.Module,
    inputs: Any = None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    n_rotations: int = 3,
) -> dict[str, float]:
    """Relative error of every output under every transformation, ``{"<g>/<output>": err}``.

    The relative error is ``max|f(g x) - g f(x)| / max|f(x)|`` (max-norms).
    """
    if not isinstance(model, ZooModel):
        raise TypeError("equivariance checks need a zoo model (a zoo.models.ZooModel)")
    generator = torch.Generator().manual_seed(seed)
    checked = model.clone(dtype=dtype).eval()
    if inputs is None:
        inputs = checked.example_inputs(generator, dtype)
    else:
        inputs = cast_inputs(inputs, dtype)
    raw = checked(inputs)
    report: dict[str, float] = {}
    for label, g in group_elements(checked, inputs, generator, dtype, n_rotations):
        expected = _as_dict(checked.act_on_outputs(raw, g))
        actual = _as_dict(checked(checked.act_on_inputs(inputs, g)))
        for key, value in expected.items():
            scale = value.detach().abs().max().clamp_min(torch.finfo(dtype).tiny)
            error = (actual[key].detach() - value.detach()).abs().max() / scale
            report[f"{label}/{key}"] = float(error)
    return report


def equivariance_error(
    model: nn.Module,
    inputs: Any = None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    n_rotations: int = 3,
) -> float:
    """Largest relative equivariance error of ``model`` over its group.

    Parameters
    ----------
    model
        A zoo model (relaxed or not); it is copied and cast to ``dtype``, not modified.
    inputs
        An input for the model; ``None`` draws the architecture's own random example.
    dtype
        Precision of the check (float64 shows exact equivariance at ~1e-12).
    seed
        Seed of the private generator for group elements and example inputs.
    n_rotations
        Number of Haar-random rotations.

    Returns
    -------
    float
        The largest relative error over random rotations, reflections (where the group has
        them), translations and permutations, for every output.
    """
    return max(equivariance_report(model, inputs, dtype, seed, n_rotations).values())
