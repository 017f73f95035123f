"""The non-equivariant branch ``g`` of a relaxed layer, ``f(x) = f_e(x) + s * g(x)``.

A branch is attached to a site module as the submodule ``relaxation_branch`` and a forward hook
adds ``scale * g(first input)`` to the site's output. The base module's parameters keep their
names, so a relaxed model's ``state_dict`` is the base one plus ``*.relaxation_branch.*`` keys,
and removing the branch (projection) leaves exactly the base architecture.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

BRANCH_ATTRIBUTE = "relaxation_branch"


def _gelu_derivative(h: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * h * h) / math.sqrt(2.0 * math.pi)
    return cdf + h * pdf


# Rows (set elements x batch) above which the symmetry-violation penalty is estimated on an
# evenly strided subset. Molecules and N-body batches stay below it (computed exactly).
PENALTY_MAX_ROWS = 4096


class RelaxedBranch(nn.Module):
    """A dense branch on the flattened features of a site, scaled by its level.

    Parameters
    ----------
    rep_in, rep_out
        Representations of the site's input and output (:mod:`zoo.relax.representations`).
    form
        ``"linear"`` (an unconstrained ``W`` mixing every irrep, channel and component),
        ``"mlp"`` (``Linear(d, hidden_factor * d)``, GELU, ``Linear(., d_out)``) or, for sites
        on planar feature maps (:class:`~zoo.relax.representations.C4FieldRep`), ``"conv"``
        (an unconstrained ``kernel_size`` convolution). On feature maps ``"linear"`` and
        ``"mlp"`` act on the channels at every pixel (1 x 1 convolutions).
    hidden_factor
        Width multiplier of the MLP form.
    kernel_size
        Kernel size of the conv form.
    level
        Initial scale ``s``.
    learnable_level
        Whether the scale receives gradients (ACE's ``gamma``, RECM's demand signal).

    Notes
    -----
    The output layer starts at zero, so a freshly relaxed model computes exactly the function of
    the equivariant one whatever its level; gradients still reach the output layer, and through
    it the rest of the branch after the first step.
    """

    def __init__(
        self,
        rep_in: Any,
        rep_out: Any,
        form: str = "linear",
        hidden_factor: int = 4,
        level: float = 0.0,
        learnable_level: bool = False,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.field = getattr(rep_in, "kind", None) == "field"
        if form not in ("linear", "mlp", "conv"):
            raise ValueError(f"branch form must be 'linear', 'mlp' or 'conv', got {form!r}")
        if form == "conv" and not self.field:
            raise ValueError("branch form 'conv' needs a site on feature maps (C4FieldRep); "
                             "use 'linear' or 'mlp' for flattened features")
        if self.field != (getattr(rep_out, "kind", None) == "field"):
            raise ValueError("a site's input and output must both be feature maps or neither")
        self.rep_in, self.rep_out, self.form = rep_in, rep_out, form
        d_in, d_out = rep_in.dim, rep_out.dim
        if form == "conv":
            self.layers = nn.ModuleList([
                nn.Conv2d(d_in, d_out, kernel_size, padding=(kernel_size - 1) // 2)
            ])
        elif form == "linear":
            self.layers = nn.ModuleList([nn.Linear(d_in, d_out)])
        else:
            hidden = hidden_factor * d_in
            self.layers = nn.ModuleList([nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)])
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)
        self.scale = nn.Parameter(torch.tensor(float(level)), requires_grad=learnable_level)
        self.regularize = False
        self.last_penalty: dict[str, torch.Tensor] | None = None

    @property
    def level(self) -> float:
        """The relaxation level ``s`` (``0`` is exactly the equivariant layer)."""
        return float(self.scale.detach())

    @level.setter
    def level(self, value: float) -> None:
        with torch.no_grad():
            self.scale.fill_(float(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The unscaled branch output ``g(x)``: ``[..., rep_out.dim]``, or ``[..., C_out, H, W]``
        on feature maps."""
        if self.field:
            return self._forward_field(x)
        return self._dense(x)

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "linear":
            return self.layers[0](x)
        return self.layers[1](nn.functional.gelu(self.layers[0](x)))

    def _forward_field(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        maps = x.reshape(-1, *x.shape[-3:])
        if self.form == "conv":
            out = self.layers[0](maps)
        else:  # the dense map on the channels of every pixel
            out = self._dense(maps.movedim(-3, -1)).movedim(-1, -3)
        return out.reshape(*lead, *out.shape[-3:])

    def lie_derivative(self, x: torch.Tensor, gx: torch.Tensor | None = None) -> torch.Tensor:
        """``L_A g(x) = J_g(x) drho_in(A) x - drho_out(A) g(x)`` for every generator ``A``.

        Returns ``[k, ..., d_out]``; zero for every ``A`` exactly when ``g`` is equivariant. For
        the linear form this is ``(W drho_in(A) - drho_out(A) W) x - drho_out(A) b``.
        """
        tangent = self.rep_in.act(x)
        if self.form == "linear":
            jvp = tangent @ self.layers[0].weight.T
        else:
            first, last = self.layers
            pre = first(x)
            jvp = (_gelu_derivative(pre) * (tangent @ first.weight.T)) @ last.weight.T
        if gx is None:
            gx = self(x)
        return jvp - self.rep_out.act(gx)

    def finite_violation(self, x: torch.Tensor, gx: torch.Tensor | None = None) -> torch.Tensor:
        """``rho_out(h) g(x) - g(rho_in(h) x)`` for every generator ``h`` of a finite group."""
        if gx is None:
            gx = self(x)
        return self.rep_out.act(gx) - self(self.rep_in.act(x))

    def penalties(
        self, x: torch.Tensor, gx: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The CR regulariser terms on input ``x``: branch norm and symmetry violation.

        Both are means over the leading (set/batch) dimensions of per-sample Euclidean norms;
        the violation is summed over generators. On feature maps the samples are the pixels,
        except for the conv form, whose terms are those of its kernel (SMOKE.md):
        ``||W||`` and ``||rho_out(g) W(g^-1 .) rho_in(g)^-1 - W||`` (bias included), zero
        exactly for an equivariant convolution.
        """
        if self.field:
            return self._field_penalties(x, gx)
        x = x.reshape(-1, x.shape[-1])
        gx = self(x) if gx is None else gx.reshape(-1, gx.shape[-1])
        norm = gx.norm(dim=-1).mean()
        if x.shape[0] > PENALTY_MAX_ROWS:
            # The violation is a mean over rows: an evenly strided subset estimates it at a
            # fraction of the cost (a point-cloud batch has ~1e4-1e5 rows per site).
            stride = -(-x.shape[0] // PENALTY_MAX_ROWS)
            x, gx = x[::stride], gx[::stride]
        if self.rep_in.kind == "finite":
            violation = self.finite_violation(x, gx)
        else:
            violation = self.lie_derivative(x, gx)
        return {"norm": norm, "lie": violation.norm(dim=-1).mean(dim=-1).sum()}

    def _field_penalties(self, x: torch.Tensor, gx: torch.Tensor | None) -> dict:
        if self.form == "conv":
            from zoo.relax.regularizers import conv_kernel_penalties

            conv = self.layers[0]
            return conv_kernel_penalties(conv.weight, conv.bias, self.rep_in, self.rep_out)
        gx = self(x) if gx is None else gx
        norm = gx.norm(dim=-3).mean()
        violation = self.finite_violation(x, gx)  # [1, ..., C, H, W]
        return {"norm": norm, "lie": violation.norm(dim=-3).flatten(1).mean(dim=1).sum()}

    def extra_repr(self) -> str:
        return f"form={self.form}, level={self.level:.4g}"


def add_branch_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of a relaxed site: ``output + scale * g(first input)``.

    A module-level function that looks the branch up on the module at call time, so a deep copy
    of a relaxed model (e.g. cast to float64 for a test) uses its own copy of the branch.
    """
    branch: RelaxedBranch = getattr(module, BRANCH_ATTRIBUTE)
    x = args[0]
    gx = branch(x)
    if branch.regularize and branch.training and torch.is_grad_enabled():
        # Computed inside forward so that distributed data parallel sees every use of the
        # branch's parameters during the forward pass.
        branch.last_penalty = branch.penalties(x, gx)
    return output + branch.scale * gx
