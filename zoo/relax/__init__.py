"""Relaxation: train through a non-equivariant hypothesis space, then project back exactly.

::

    from zoo import relax
    relax.relax(model, "cr", form="mlp")        # attach branches at the declared sites
    controller = relax.make_controller("cr")     # sets the levels during training
    controller.attach(model)
    ...
    relax.project(model)                         # exactly the base architecture again
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.relax.branch import (
    BRANCH_ATTRIBUTE,
    LOWRANK_RANK,
    PENALTY_EVERY,
    PENALTY_ROWS,
    RelaxedBranch,
)
from zoo.relax.controllers import (
    ACEController,
    CRController,
    LevelController,
    RECMController,
    make_controller,
    triangle_level,
)
from zoo.relax.diagnostics import branch_contributions
from zoo.relax.regularizers import (
    branch_norm_penalty,
    conv_kernel_penalties,
    finite_group_penalty,
    lie_derivative_penalty,
    relaxation_penalty,
)
from zoo.relax.representations import (
    C4FieldRep,
    FiniteGroupRep,
    IrrepsRep,
    TrivialRep,
    VectorChannelsRep,
    so3_generators,
)
from zoo.relax.sites import add_branch_output, can_fuse, fold_branch

METHODS = ("cr", "ace", "recm")
# Starting level per method: CR's triangle starts at 0, ACE's gamma at 1 (paper), RECM's level
# starts open so that the branch can learn and the demand signal is informative.
_INITIAL_LEVEL = {"cr": 0.0, "ace": 1.0, "recm": 1.0}


def relax(
    model: nn.Module,
    method: str = "cr",
    *,
    form: str = "linear",
    hidden_factor: int = 4,
    rank: int = LOWRANK_RANK,
    level: float | None = None,
    regularize: bool = True,
    penalty_rows: int | None = PENALTY_ROWS,
    penalty_every: int = PENALTY_EVERY,
    init_scale: float = 0.0,
    fuse: bool = True,
    **recipe: Any,
) -> nn.Module:
    """Attach a non-equivariant branch at every relaxation site of ``model`` (in place).

    Parameters
    ----------
    model
        A :class:`zoo.models.ZooModel` that is not relaxed yet.
    method
        ``"cr"``, ``"ace"`` or ``"recm"``: sets the starting level and whether the level gets
        gradients (ACE and RECM read ``dL/ds``).
    form
        ``"linear"``, ``"mlp"`` or ``"lowrank"`` (a linear branch ``W = U V`` of rank ``rank``)
        branches, or ``"conv"`` (an unconstrained 3 x 3 convolution) for sites on planar
        feature maps (:class:`~zoo.relax.branch.RelaxedBranch`).
    hidden_factor
        Width multiplier of MLP branches.
    rank
        Rank of low-rank branches (capped at each site's smaller dimension).
    level
        Starting level, overriding the method's default.
    regularize
        Whether branches compute the CR regularisers in training forward passes.
    penalty_rows
        Rows per site on which the symmetry-violation term is computed: above it, an unbiased
        estimate on that many random rows (``None``: every row, exact).
    penalty_every
        Compute the violation term every ``k``-th training step only, times ``k`` (``1``:
        every step). See :class:`~zoo.relax.branch.RelaxedBranch` for both estimates.
    init_scale
        The branches' output layers start at PyTorch's default initialisation times this
        factor (``0``: at zero, so the relaxed model computes the same function as before).
    fuse
        Let sites that support it fold a ``conv`` branch into their own convolution
        (:func:`~zoo.relax.sites.fold_branch`): the same function and gradients, to rounding,
        for the cost of the base layer. ``False``: the branch runs beside the layer.
    **recipe
        Further recipe entries (controller and regulariser hyperparameters), recorded on the
        model as ``model.relaxation_recipe`` so exports can state how the model was trained.

    Returns
    -------
    torch.nn.Module
        The same model. With ``init_scale = 0`` (the default) it computes exactly the same
        function as before: branches start at zero.
    """
    if method not in METHODS:
        raise ValueError(f"unknown relaxation method {method!r}; choose one of {METHODS}")
    if branches(model):
        raise ValueError("model is already relaxed; call zoo.relax.project first")
    sites = model.relaxation_sites()
    if not sites:
        name = getattr(model, "architecture", type(model).__name__)
        raise ValueError(f"{name} declares no relaxation sites (it has no symmetry to relax)")
    reference = next(model.parameters())
    start = _INITIAL_LEVEL[method] if level is None else level
    for site in sites:
        module = model.get_submodule(site.module)
        branch = RelaxedBranch(
            site.rep_in,
            site.rep_out,
            form=form,
            hidden_factor=hidden_factor,
            level=start,
            learnable_level=method in ("ace", "recm"),
            rank=rank,
            penalty_rows=penalty_rows,
            penalty_every=penalty_every,
            init_scale=init_scale,
        ).to(dtype=reference.dtype, device=reference.device)
        branch.regularize = regularize
        branch.fused = fuse and can_fuse(module, branch)
        module.add_module(BRANCH_ATTRIBUTE, branch)
        # Fused branches keep the hook too (it adds nothing for them): one removal path.
        module.register_forward_hook(add_branch_output)
    model.relaxation_recipe = {
        "method": method,
        "form": form,
        "hidden_factor": hidden_factor,
        **({"rank": rank} if form == "lowrank" else {}),
        "regularize": regularize,
        "penalty_rows": penalty_rows,
        "penalty_every": penalty_every,
        **({"init_scale": init_scale} if init_scale else {}),
        "fuse": fuse,
        **recipe,
    }
    return model


def branches(model: nn.Module) -> list[RelaxedBranch]:
    """The attached branches, in site order (empty for a projected model)."""
    return [m for m in model.modules() if isinstance(m, RelaxedBranch)]


def branch_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Weights of the branches (trained by the optimiser), without the level scales."""
    return [p for b in branches(model) for name, p in b.named_parameters() if name != "scale"]


def level_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The level scales (owned by the controller: keep them out of the optimiser)."""
    return [b.scale for b in branches(model)]


def project(model: nn.Module) -> nn.Module:
    """Remove every branch (``s = 0``), in place: exactly the base architecture again.

    The result has the base model's ``state_dict`` keys, parameter count and forward cost.
    """
    for module in list(model.modules()):
        if isinstance(getattr(module, BRANCH_ATTRIBUTE, None), RelaxedBranch):
            delattr(module, BRANCH_ATTRIBUTE)
            for key, hook in list(module._forward_hooks.items()):
                if hook is add_branch_output:
                    del module._forward_hooks[key]
    if hasattr(model, "relaxation_recipe"):
        del model.relaxation_recipe
    return model


def set_levels(model: nn.Module, level: float) -> None:
    """Set every branch's level."""
    for branch in branches(model):
        branch.level = level


def randomize_branches(model: nn.Module, generator: torch.Generator, std: float = 0.1) -> None:
    """Fill every branch weight with Gaussian noise (tests: a live, non-equivariant branch)."""
    with torch.no_grad():
        for p in branch_parameters(model):
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64) * std
            p.copy_(noise.to(p.dtype))


__all__ = [
    "ACEController",
    "C4FieldRep",
    "CRController",
    "FiniteGroupRep",
    "IrrepsRep",
    "LevelController",
    "METHODS",
    "RECMController",
    "RelaxedBranch",
    "TrivialRep",
    "VectorChannelsRep",
    "branch_contributions",
    "branch_norm_penalty",
    "branch_parameters",
    "branches",
    "conv_kernel_penalties",
    "finite_group_penalty",
    "fold_branch",
    "level_parameters",
    "lie_derivative_penalty",
    "make_controller",
    "project",
    "randomize_branches",
    "relax",
    "relaxation_penalty",
    "set_levels",
    "so3_generators",
    "triangle_level",
]
