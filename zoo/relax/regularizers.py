"""Regularisers of constraint relaxation (METHODS.md section 1).

``L = L_task + lambda_reg * sum_layers (||g(x)|| + sum_A ||L_A(W) x||)`` with the Lie derivative
``L_A(W) = W drho_in(A) - drho_out(A) W``. The functional forms here take a dense ``W`` (for
tests, analysis and users' own layers); :func:`relaxation_penalty` sums the terms that the
branches of a relaxed model computed during its last forward pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.relax.representations import rotate_kernel


def lie_derivative_penalty(
    weight: torch.Tensor, x: torch.Tensor, rep_in: Any, rep_out: Any
) -> torch.Tensor:
    """``sum_A mean_n ||(W drho_in(A) - drho_out(A) W) x_n||`` for a dense ``W``.

    Parameters
    ----------
    weight
        ``[D_out, D_in]``, acting as ``y = W x`` on flattened features.
    x
        ``[N, D_in]`` inputs.
    rep_in, rep_out
        Representations with an ``act`` method giving ``[3, ..., D]`` (e.g.
        :class:`~zoo.relax.representations.IrrepsRep`).

    Returns
    -------
    torch.Tensor
        A scalar; zero (to rounding) exactly when ``W`` is an intertwiner on the span of ``x``.
    """
    lie = rep_in.act(x) @ weight.T - rep_out.act(x @ weight.T)
    return lie.norm(dim=-1).mean(dim=-1).sum()


def finite_group_penalty(
    weight: torch.Tensor, x: torch.Tensor, rep_in: Any, rep_out: Any
) -> torch.Tensor:
    """``sum_h mean_n ||(rho_out(h) W - W rho_in(h)) x_n||`` over a finite group's generators."""
    violation = rep_out.act(x @ weight.T) - rep_in.act(x) @ weight.T
    return violation.norm(dim=-1).mean(dim=-1).sum()


def conv_kernel_penalties(
    weight: torch.Tensor, bias: torch.Tensor | None, rep_in: Any, rep_out: Any
) -> dict[str, torch.Tensor]:
    """Norm and C4 violation of a convolution ``(W, b)`` between planar feature maps.

    ``{"norm": ||(W, b)||, "lie": ||(T W - W, rho_out(g) b - b)||}`` (Frobenius norms), with
    ``T W = rho_out(g) W(g^-1 .) rho_in(g)^-1`` for the quarter turn ``g`` that generates C4
    (:func:`~zoo.relax.representations.rotate_kernel`). The violation is zero exactly when the
    convolution is C4-equivariant: SMOKE.md's ``||W - rot90(W)||`` with the fibers transformed.

    Parameters
    ----------
    weight
        ``[C_out, C_in, kh, kw]``.
    bias
        ``[C_out]`` or ``None``.
    rep_in, rep_out
        :class:`~zoo.relax.representations.C4FieldRep` of the input and output maps.
    """
    norm2 = weight.square().sum()
    violation2 = (rotate_kernel(weight, rep_in, rep_out) - weight).square().sum()
    if bias is not None:
        norm2 = norm2 + bias.square().sum()
        turned = rep_out.transform_channels(bias, 1, axis=-1)
        violation2 = violation2 + (turned - bias).square().sum()
    # sqrt has an infinite derivative at 0: a zero-initialised branch would get NaN gradients.
    tiny = torch.finfo(weight.dtype).tiny
    return {"norm": (norm2 + tiny).sqrt(), "lie": (violation2 + tiny).sqrt()}


def branch_norm_penalty(branch: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``mean_n ||g(x_n)||``: keeps the non-equivariant branch small."""
    return branch(x.reshape(-1, x.shape[-1])).norm(dim=-1).mean()


def relaxation_penalty(model: nn.Module) -> dict[str, torch.Tensor]:
    """Sum over the model's branches of the terms computed in its last forward pass.

    Branches must have ``regularize = True`` (set by :func:`zoo.relax.relax`). Returns
    ``{"norm": ..., "lie": ..., "total": norm + lie}``, zeros for a projected model.
    """
    from zoo.relax import branches

    terms = {"norm": None, "lie": None}
    for branch in branches(model):
        if branch.last_penalty is None:
            continue
        for key in terms:
            value = branch.last_penalty[key]
            terms[key] = value if terms[key] is None else terms[key] + value
    reference = next(model.parameters())
    zero = torch.zeros((), dtype=reference.dtype, device=reference.device)
    result = {k: (zero if v is None else v) for k, v in terms.items()}
    result["total"] = result["norm"] + result["lie"]
    return result
