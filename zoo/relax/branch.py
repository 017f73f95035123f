"""The non-equivariant branch ``g`` of a relaxed layer, ``f(x) = f_e(x) + s * g(x)``.

A branch is attached to a site module as the submodule ``relaxation_branch``; how the site adds
its output (a forward hook, in another column order, or fused into a convolution) is
:mod:`zoo.relax.sites`. The base module's parameters keep their names, so a relaxed model's
``state_dict`` is the base one plus ``*.relaxation_branch.*`` keys, and removing the branch
(projection) leaves exactly the base architecture.

A site whose first input ends with columns that are equal along a set axis may say how many
(``relaxation_shared_columns(args) -> int``); the branch then computes their part once per set.
A branch can also read and write columns permuted from the declared layout (``columns_in`` /
``columns_out``): it permutes its small weight matrices instead of the features.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn

BRANCH_ATTRIBUTE = "relaxation_branch"
FORMS = ("linear", "mlp", "lowrank", "conv")

# Defaults of the regulariser's estimate (see RelaxedBranch). Both terms are means over rows
# (set elements x batch) of per-row norms, so a uniform random subset of rows estimates them
# without bias; with 1024 rows the sampling error is about 3 % of the spread of the per-row
# norms, while a point-cloud site has 1e4-2e5 rows. N-body and molecule batches stay below it.
PENALTY_ROWS = 1024
PENALTY_EVERY = 1
LOWRANK_RANK = 16
# Outputs of a branch's first layer from which computing set-shared input columns once per set
# pays for the extra passes over the input (RelaxedBranch._first).
_SHARED_MIN_OUTPUTS = 64


def _gelu_derivative(h: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * h * h) / math.sqrt(2.0 * math.pi)
    return cdf + h * pdf


@functools.lru_cache(maxsize=256)
def _column_index(columns: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(columns, dtype=torch.long, device=device)


@functools.lru_cache(maxsize=256)
def _inverse_index(columns: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Where each declared column sits in a tensor whose column ``k`` is ``columns[k]``."""
    inverse = [0] * len(columns)
    for position, column in enumerate(columns):
        inverse[column] = position
    return torch.tensor(inverse, dtype=torch.long, device=device)


def _moving(rep: Any) -> tuple[tuple[int, ...] | None, Any]:
    """``rep.moving()`` where the representation has it (else: every column moves)."""
    moving = getattr(rep, "moving", None)
    return (None, rep) if moving is None else moving()


class RelaxedBranch(nn.Module):
    """A dense branch on the flattened features of a site, scaled by its level.

    Parameters
    ----------
    rep_in, rep_out
        Representations of the site's input and output (:mod:`zoo.relax.representations`).
    form
        ``"linear"`` (an unconstrained ``W`` mixing every irrep, channel and component),
        ``"mlp"`` (``Linear(d, hidden_factor * d)``, GELU, ``Linear(., d_out)``),
        ``"lowrank"`` (``W = U V`` of rank ``rank``: ``Linear(d, r, bias=False)``,
        ``Linear(r, d_out)``; the linear form at ``r (d + d_out)`` instead of ``d d_out`` weights
        and multiply-adds per row) or, for sites on planar feature maps
        (:class:`~zoo.relax.representations.C4FieldRep`), ``"conv"`` (an unconstrained
        ``kernel_size`` convolution). On feature maps the dense forms act on the channels at
        every pixel (1 x 1 convolutions).
    hidden_factor
        Width multiplier of the MLP form.
    kernel_size
        Kernel size of the conv form.
    level
        Initial scale ``s``.
    learnable_level
        Whether the scale receives gradients (ACE's ``gamma``, RECM's demand signal).
    rank
        Rank of the low-rank form (at most ``min(d, d_out)``).
    penalty_rows
        Rows (set elements x batch) the regulariser terms are computed on: above it, a uniform
        random subset of that many rows, an unbiased estimate of the means over every row.
        ``None``: every row (exact).
    penalty_every
        Compute the regulariser terms in every ``k``-th regularised training forward pass only,
        multiplied by ``k`` (nothing in the others): their expectation over a uniformly random
        step, and so the regulariser's mean gradient, is that of computing them every step
        (over ``k`` steps on one input, exactly the same sum). ``1``: every step. Worth it
        where a step is small enough that the regulariser's fixed cost per site matters
        (N-body graphs).

    Notes
    -----
    The output layer starts at zero by default (``init_scale = 0``), so a freshly relaxed model
    computes exactly the function of the equivariant one whatever its level; gradients still
    reach the output layer, and through it the rest of the branch after the first step.
    ``init_scale > 0`` keeps PyTorch's default initialisation of the output layer times that
    factor (the constraint-relaxation paper's Equiformer code uses 0.01): the branch then starts
    away from the kink of the norm regulariser at ``g = 0``.

    Cost of the regulariser per site: with at most ``penalty_rows`` rows the norm term reuses
    the forward pass's ``g(x)``; above, both terms are computed on the subset (``g`` evaluated
    again there). The violation term costs about three branch evaluations on its rows. The conv
    form's terms are properties of its kernel (cheap, always exact). The ``penalty_every``
    cycle restarts with every new branch (its position is not saved with the model).
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
        rank: int = LOWRANK_RANK,
        penalty_rows: int | None = PENALTY_ROWS,
        penalty_every: int = PENALTY_EVERY,
        init_scale: float = 0.0,
    ) -> None:
        super().__init__()
        self.field = getattr(rep_in, "kind", None) == "field"
        if form not in FORMS:
            raise ValueError(f"branch form must be one of {FORMS} ('linear', 'mlp', 'lowrank' "
                             f"or 'conv'), got {form!r}")
        if form == "conv" and not self.field:
            raise ValueError("branch form 'conv' needs a site on feature maps (C4FieldRep); "
                             "use 'linear', 'mlp' or 'lowrank' for flattened features")
        if self.field != (getattr(rep_out, "kind", None) == "field"):
            raise ValueError("a site's input and output must both be feature maps or neither")
        if penalty_rows is not None and penalty_rows < 1:
            raise ValueError(f"penalty_rows must be a positive count or None, got {penalty_rows}")
        if penalty_every < 1:
            raise ValueError(f"penalty_every must be at least 1, got {penalty_every}")
        if init_scale < 0:
            raise ValueError(f"init_scale must be 0 or positive, got {init_scale}")
        if form == "lowrank" and rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        self.rep_in, self.rep_out, self.form = rep_in, rep_out, form
        d_in, d_out = rep_in.dim, rep_out.dim
        if form == "conv":
            self.layers = nn.ModuleList([
                nn.Conv2d(d_in, d_out, kernel_size, padding=(kernel_size - 1) // 2)
            ])
        elif form == "linear":
            self.layers = nn.ModuleList([nn.Linear(d_in, d_out)])
        elif form == "lowrank":
            rank = min(rank, d_in, d_out)
            self.layers = nn.ModuleList([nn.Linear(d_in, rank, bias=False),
                                         nn.Linear(rank, d_out)])
        else:
            hidden = hidden_factor * d_in
            self.layers = nn.ModuleList([nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)])
        # Scaling the default initialisation draws no extra random numbers: a run's other
        # weights are the same whatever init_scale is.
        with torch.no_grad():
            self.layers[-1].weight.mul_(init_scale)
            self.layers[-1].bias.mul_(init_scale)
        self.scale = nn.Parameter(torch.tensor(float(level)), requires_grad=learnable_level)
        self.penalty_rows, self.penalty_every = penalty_rows, penalty_every
        self.regularize = False
        self.fused = False  # set by zoo.relax.relax where the site folds the branch in
        self.last_penalty: dict[str, torch.Tensor] | None = None
        self._penalty_calls = 0

    @property
    def level(self) -> float:
        """The relaxation level ``s`` (``0`` is exactly the equivariant layer)."""
        return float(self.scale.detach())

    @level.setter
    def level(self, value: float) -> None:
        with torch.no_grad():
            self.scale.fill_(float(value))

    @property
    def rank(self) -> int | None:
        """Rank of the low-rank form (``None`` for the other forms)."""
        return self.layers[0].out_features if self.form == "lowrank" else None

    def forward(
        self,
        x: torch.Tensor,
        shared_columns: int = 0,
        *,
        columns_in: tuple[int, ...] | None = None,
        columns_out: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """The unscaled branch output ``g(x)``: ``[..., rep_out.dim]``, or ``[..., C_out, H, W]``
        on feature maps.

        ``shared_columns``: number of trailing input columns equal along dim ``-2`` (a set
        axis), e.g. a cloud's mean feature concatenated to each of its points; their part of the
        first layer is computed once per set and broadcast (the same result, cheaper).

        ``columns_in``, ``columns_out`` (dense forms): ``x`` holds the declared input's columns
        permuted, ``x[..., k]`` being column ``columns_in[k]``, and ``g(x)`` is returned in the
        order ``columns_out`` likewise. The weights are permuted instead of ``x`` (the same
        products, summed in another order); ``shared_columns`` is then not used (every column
        is computed, the same result).
        """
        if self.field:
            return self._forward_field(x)
        if columns_in is None and columns_out is None:
            return self._dense(x, shared_columns)
        params = self._ordered_parameters(columns_in, columns_out, x.device)
        weight, bias = params[0]
        hidden = nn.functional.linear(x, weight, bias)
        if self.form == "linear":
            return hidden
        if self.form == "mlp":
            hidden = nn.functional.gelu(hidden)
        return nn.functional.linear(hidden, *params[1])

    def _ordered_parameters(
        self,
        columns_in: tuple[int, ...] | None,
        columns_out: tuple[int, ...] | None,
        device: torch.device,
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """``(weight, bias)`` of each dense layer, the first one's input columns in the order
        ``columns_in`` and the last one's outputs in the order ``columns_out``: permuting a
        weight's columns is permuting its input (``W P^T P x = W x``). Small gathers of the
        weights, whose gradients flow back to the branch's own parameters."""
        params = [(layer.weight, layer.bias) for layer in self.layers]
        if columns_in is not None:
            weight, bias = params[0]
            params[0] = (weight.index_select(1, _column_index(columns_in, device)), bias)
        if columns_out is not None:
            index = _column_index(columns_out, device)
            weight, bias = params[-1]
            params[-1] = (weight.index_select(0, index), bias.index_select(0, index))
        return params

    def reads_any_order(self, shared_columns: int = 0) -> bool:
        """Whether ``g`` on permuted columns (``columns_in``) costs what it costs in the declared
        layout: a dense form whose first layer does not use ``shared_columns`` (see
        :meth:`_first`), so that a site may skip copying its input into the declared order."""
        if self.field or self.fused:
            return False
        return shared_columns <= 0 or self.layers[0].out_features < _SHARED_MIN_OUTPUTS

    def _first(self, x: torch.Tensor, shared_columns: int = 0) -> torch.Tensor:
        layer = self.layers[0]
        # Below ~64 outputs the saved multiply-adds do not pay for the extra passes over x
        # (the low-rank form's first layer).
        if shared_columns <= 0 or x.dim() < 2 or layer.out_features < _SHARED_MIN_OUTPUTS:
            return layer(x)
        weight_head, weight_tail = layer.weight.split(
            [x.shape[-1] - shared_columns, shared_columns], dim=1
        )
        head, tail = x.split([x.shape[-1] - shared_columns, shared_columns], dim=-1)
        # The mean of equal rows is that row (to rounding); unlike taking row 0, its gradient
        # is a broadcast, so the backward pass writes no zero-filled copy of x.
        tail = tail.mean(dim=-2, keepdim=True)
        return nn.functional.linear(head, weight_head, layer.bias) + tail @ weight_tail.T

    def _dense(self, x: torch.Tensor, shared_columns: int = 0) -> torch.Tensor:
        hidden = self._first(x, shared_columns)
        if self.form == "linear":
            return hidden
        if self.form == "lowrank":
            return self.layers[1](hidden)
        return self.layers[1](nn.functional.gelu(hidden))

    def _forward_field(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        maps = x.reshape(-1, *x.shape[-3:])
        if self.form == "conv":
            out = self.layers[0](maps)
        else:  # the dense map on the channels of every pixel
            out = self._dense(maps.movedim(-3, -1)).movedim(-1, -3)
        return out.reshape(*lead, *out.shape[-3:])

    def add_to(
        self,
        output: torch.Tensor,
        x: torch.Tensor,
        shared_columns: int = 0,
        *,
        columns_in: tuple[int, ...] | None = None,
        columns_out: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """``output + s * g(x)`` for a dense branch on flattened features (``x`` and ``output``
        in the column orders ``columns_in`` and ``columns_out``, see :meth:`forward`).

        The low-rank form does it in one matrix product that starts from ``output``
        (``[V x, 1] [s U, s b]^T`` added to it): one pass over the site's output, forward and
        backward, instead of writing ``g(x)`` and adding it (its size is that of the output,
        while ``V x`` is ``rank`` wide).
        """
        order = {"columns_in": columns_in, "columns_out": columns_out}
        if self.form != "lowrank":
            return torch.addcmul(output, self.scale, self(x, shared_columns, **order))
        if columns_in is None:
            hidden = self._first(x, shared_columns)
        else:
            weight = self._ordered_parameters(columns_in, None, x.device)[0][0]
            hidden = nn.functional.linear(x, weight)
        return self._add_up(output, hidden, columns_out)

    def _add_up(
        self, output: torch.Tensor, hidden: torch.Tensor, columns_out: tuple[int, ...] | None
    ) -> torch.Tensor:
        """The low-rank form's ``output + s (U hidden + b)``, ``hidden = V x`` (see
        :meth:`add_to`)."""
        up_weight, up_bias = self._ordered_parameters(None, columns_out, output.device)[-1]
        hidden = hidden.reshape(-1, hidden.shape[-1])
        weight = torch.cat([up_weight, up_bias.unsqueeze(1)], dim=1) * self.scale
        augmented = torch.cat([hidden, hidden.new_ones(hidden.shape[0], 1)], dim=1)
        flat = output.reshape(-1, output.shape[-1])
        return torch.addmm(flat, augmented, weight.T).view(output.shape)

    def lie_derivative(self, x: torch.Tensor, gx: torch.Tensor | None = None) -> torch.Tensor:
        """``L_A g(x) = J_g(x) drho_in(A) x - drho_out(A) g(x)`` for every generator ``A``.

        Returns ``[k, ..., d_out]``; zero for every ``A`` exactly when ``g`` is equivariant. For
        the linear form this is ``(W drho_in(A) - drho_out(A) W) x - drho_out(A) b``.
        """
        if gx is None:
            gx = self(x)
        rows = self._lie_rows(x.reshape(-1, x.shape[-1]), gx.reshape(-1, gx.shape[-1]))
        return rows.movedim(1, 0).reshape(rows.shape[1], *x.shape[:-1], rows.shape[-1])

    def _lie_rows(self, x: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
        """The Lie derivative on rows ``x`` ``[n, d]`` (``gx = g(x)``), as ``[n, 3, d_out]``.

        The generators are applied to the weights rather than to the rows where the branch is
        linear in ``x`` (``W drho(A)`` costs ``O(d d_out)`` once, then one matrix product per
        batch instead of a ``[3, n, d]`` tangent tensor), and only to the input columns that
        rotations move (scalars do not): the same value at a fraction of the cost on sites
        made mostly of scalar channels. This uses ``drho(A)^T = -drho(A)`` (every
        representation here is orthogonal), so that ``W drho_in(A) = -(rep_in.act(W))``.
        """
        if self.form == "linear":
            return self._lie_linear(x)
        if self.form == "lowrank":
            return self._lie_lowrank(x)
        return self._lie_mlp(x, gx)

    def _input_side(
        self, x: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(x restricted to the moving input columns, [3, h, d_moving] = W drho_in(A))`` for
        a weight ``W`` ``[h, d]`` acting on ``x``; ``None`` for an invariant input."""
        columns, moving = _moving(self.rep_in)
        if moving is None:
            return None
        if columns is not None:
            index = _column_index(columns, x.device)
            x, weight = x.index_select(1, index), weight.index_select(1, index)
        return x, -moving.act(weight)

    def _lie_linear(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.layers[0].weight, self.layers[0].bias
        n, d_out = x.shape[0], weight.shape[0]
        if _moving(self.rep_out)[1] is None:  # invariant output: only W drho_in(A) x
            side = self._input_side(x, weight)
            if side is None:
                return x.new_zeros((n, 3, d_out))
            x, turned = side
            return (x @ turned.reshape(-1, turned.shape[-1]).T).view(n, 3, d_out)
        # M_A = W drho_in(A) - drho_out(A) W, with (drho_out(A) W)^T = rep_out.act(W^T).
        lie = -self.rep_in.act(weight) - self.rep_out.act(weight.T).transpose(-1, -2)
        out = (x @ lie.reshape(-1, x.shape[-1]).T).view(n, 3, d_out)
        return out - self.rep_out.act(bias)

    def _lie_lowrank(self, x: torch.Tensor) -> torch.Tensor:
        down, up = self.layers  # g(x) = U (V x) + b
        n, rank, d_out = x.shape[0], down.weight.shape[0], up.weight.shape[0]
        side = self._input_side(x, down.weight)
        if side is None:
            out = x.new_zeros((n, 3, d_out))
        else:  # U V drho_in(A) x
            moved, turned = side
            out = (moved @ turned.reshape(-1, turned.shape[-1]).T).view(n, 3, rank) @ up.weight.T
        if _moving(self.rep_out)[1] is None:
            return out
        # drho_out(A) g(x) = (drho_out(A) U) (V x) + drho_out(A) b
        turned_up = self.rep_out.act(up.weight.T)  # [3, r, d_out] = (drho_out(A) U)^T
        hidden = down(x)
        out = out - (hidden @ turned_up.transpose(0, 1).reshape(rank, -1)).view(n, 3, d_out)
        return out - self.rep_out.act(up.bias)

    def _lie_mlp(self, x: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
        first, last = self.layers
        n, hidden = x.shape[0], first.weight.shape[0]
        side = self._input_side(x, first.weight)
        if side is None:
            out = gx.new_zeros((n, 3, gx.shape[-1]))
        else:
            moved, turned = side
            tangent = (moved @ turned.reshape(-1, turned.shape[-1]).T).view(n, 3, hidden)
            out = (_gelu_derivative(first(x)).unsqueeze(1) * tangent) @ last.weight.T
        columns, moving = _moving(self.rep_out)
        if moving is None:
            return out
        if columns is None:
            return out - moving.act(gx).movedim(0, 1)
        index = _column_index(columns, gx.device)
        acted = moving.act(gx.index_select(-1, index)).movedim(0, 1)
        return out.index_add(-1, index, acted, alpha=-1)

    def finite_violation(self, x: torch.Tensor, gx: torch.Tensor | None = None) -> torch.Tensor:
        """``rho_out(h) g(x) - g(rho_in(h) x)`` for every generator ``h`` of a finite group."""
        if gx is None:
            gx = self(x)
        return self.rep_out.act(gx) - self(self.rep_in.act(x))

    def penalties(
        self,
        x: torch.Tensor,
        gx: torch.Tensor | None = None,
        *,
        exact: bool = False,
        columns_in: tuple[int, ...] | None = None,
        columns_out: tuple[int, ...] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The CR regulariser terms on input ``x``: branch norm and symmetry violation.

        Both are means over the leading (set/batch) dimensions of per-sample Euclidean norms;
        the violation is summed over generators. On feature maps the samples are the pixels,
        except for the conv form, whose terms are those of its kernel (SMOKE.md):
        ``||W||`` and ``||rho_out(g) W(g^-1 .) rho_in(g)^-1 - W||`` (bias included), zero
        exactly for an equivariant convolution.

        With more rows than ``penalty_rows`` (and ``exact=False``), both terms are estimated on
        a uniform random subset of ``penalty_rows`` rows (drawn from torch's global random
        generator): unbiased estimates of the means over every row. ``exact=True`` uses every
        row.

        ``columns_in``, ``columns_out``: ``x`` and ``gx`` hold their columns in these orders
        (see :meth:`forward`). The terms are those of the declared layout: the same rows are
        drawn, then put back in the declared order.
        """
        if self.field:
            return self._field_penalties(x, gx)
        x = x.reshape(-1, x.shape[-1])
        rows = None if exact else self._penalty_rows(x.shape[0], x.device)
        if rows is not None:
            x = x.index_select(0, rows)
            # g on the subset is recomputed rather than gathered from the forward pass: the
            # gradient of a gather is a zero-filled copy of the whole output.
            gx = None
        return self._penalties_on_rows(x, gx, columns_in, columns_out)

    def _penalty_rows(self, n: int, device: torch.device) -> torch.Tensor | None:
        """The random subset of ``n`` rows the terms are estimated on (``None``: every row)."""
        if self.penalty_rows is None or n <= self.penalty_rows:
            return None
        # Without replacement: lower variance than independent draws, still unbiased (every
        # row is in the subset with the same probability).
        return torch.randperm(n, device=device)[: self.penalty_rows]

    def _penalties_on_rows(
        self,
        x: torch.Tensor,
        gx: torch.Tensor | None,
        columns_in: tuple[int, ...] | None,
        columns_out: tuple[int, ...] | None,
    ) -> dict[str, torch.Tensor]:
        """:meth:`penalties` on the rows ``x`` ``[n, d]`` it averages over."""
        if columns_in is not None:
            x = x.index_select(1, _inverse_index(columns_in, x.device))
        if gx is not None:
            gx = gx.reshape(-1, gx.shape[-1])
            if columns_out is not None:
                gx = gx.index_select(1, _inverse_index(columns_out, gx.device))
        gx = self(x) if gx is None else gx
        norm = gx.norm(dim=-1).mean()
        if self.rep_in.kind == "finite":
            lie = self.finite_violation(x, gx).norm(dim=-1).mean(dim=-1).sum()
        else:
            lie = self._lie_rows(x, gx).norm(dim=-1).mean(dim=0).sum()
        return {"norm": norm, "lie": lie}

    def step_penalties(
        self,
        x: torch.Tensor | None,
        gx: torch.Tensor | None,
        *,
        columns_in: tuple[int, ...] | None = None,
        columns_out: tuple[int, ...] | None = None,
    ) -> dict[str, torch.Tensor] | None:
        """What a regularised training forward pass records: :meth:`penalties` in every
        ``penalty_every``-th call, multiplied by that number, and ``None`` (nothing to add) in
        the others. The conv form's kernel terms are cheap and computed in every call."""
        order = {"columns_in": columns_in, "columns_out": columns_out}
        if self.field and self.form == "conv":
            return self.penalties(x, gx, **order)
        if not self._penalty_due():
            return None
        return self._times_every(self.penalties(x, gx, **order))

    def _penalty_due(self) -> bool:
        """Whether this regularised pass computes the terms (advances the cycle)."""
        if self.penalty_every == 1:
            return True
        due = self._penalty_calls % self.penalty_every == 0
        self._penalty_calls += 1
        return due

    def _times_every(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        every = self.penalty_every
        return terms if every == 1 else {key: value * every for key, value in terms.items()}

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
        rank = f", rank={self.rank}" if self.form == "lowrank" else ""
        fused = ", fused" if self.fused else ""
        return f"form={self.form}{rank}, level={self.level:.4g}{fused}"
