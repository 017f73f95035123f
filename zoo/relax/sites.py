"""How a relaxed site adds its branch's output ``scale * g(x)`` to its own.

- The default: a forward hook, :func:`add_branch_output`, on the site's first input.
- A site that holds its features with columns permuted from the declared layout (Vector
  Neurons run component-major) may add the branch itself instead: :func:`branch_reads_any_order`
  says when, :func:`add_branch_output_in_order` (one site) and
  :func:`add_branch_outputs_in_order` (sites reading the same input) add it. The branch then
  applies its weights with columns and rows permuted to match, the same function and gradients,
  to rounding, without copying the features into the declared layout.
- A site whose forward is a single convolution may instead *fuse* a ``conv`` branch: it declares
  ``fuses_relaxation_branch = True`` and builds its kernel with :func:`fold_branch`, so that
  ``conv(x, K) + s conv(x, W) + s b`` runs as one ``conv(x, K + s W) + s b`` (the same function,
  to rounding, at the cost of the base layer).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as _module

from zoo.relax.branch import BRANCH_ATTRIBUTE, RelaxedBranch


def _records_penalty(branch: RelaxedBranch) -> bool:
    return branch.regularize and branch.training and torch.is_grad_enabled()


def add_branch_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of a relaxed site: ``output + scale * g(first input)``.

    A module-level function that looks the branch up on the module at call time, so a deep copy
    of a relaxed model (e.g. cast to float64 for a test) uses its own copy of the branch.
    A fused branch was already folded into the site's own computation: nothing to add.
    """
    branch: RelaxedBranch = getattr(module, BRANCH_ATTRIBUTE)
    if branch.fused:
        return output
    shared = getattr(module, "relaxation_shared_columns", None)
    shared = 0 if shared is None else shared(args)
    return add_branch_output_in_order(module, output, args[0], shared_columns=shared)


def add_branch_output_in_order(
    module: nn.Module,
    output: torch.Tensor,
    x: torch.Tensor,
    columns_in: tuple[int, ...] | None = None,
    columns_out: tuple[int, ...] | None = None,
    shared_columns: int = 0,
) -> torch.Tensor:
    """What :func:`add_branch_output` adds, for a site holding its first input ``x`` and its
    ``output`` with the declared columns permuted (``x[..., k]`` is declared column
    ``columns_in[k]``, likewise ``output``): ``output + s g(x)`` in ``output``'s order, and the
    branch's regulariser terms recorded as the hook records them (the same rows, the same
    random numbers). ``None``: the declared order.

    For a site that computes in another layout than the one it declares: it adds its branch
    here, without calling itself through the hook on a copy of its features in the declared
    layout, where :func:`branch_reads_any_order` allows it.
    """
    branch: RelaxedBranch = getattr(module, BRANCH_ATTRIBUTE)
    order = {"columns_in": columns_in, "columns_out": columns_out}
    if branch.form == "lowrank" and not branch.field:
        gx, result = None, branch.add_to(output, x, shared_columns, **order)
    else:
        gx = branch(x, shared_columns, **order)
        result = torch.addcmul(output, branch.scale, gx)  # one op: output + s * g(x)
    if _records_penalty(branch):
        # Computed inside forward so that distributed data parallel sees every use of the
        # branch's parameters during the forward pass.
        branch.last_penalty = branch.step_penalties(x, gx, **order)
    return result


def add_branch_outputs_in_order(
    modules: list[nn.Module],
    outputs: list[torch.Tensor],
    x: torch.Tensor,
    columns_in: tuple[int, ...] | None,
    columns_out: list[tuple[int, ...] | None],
    shared_columns: int = 0,
) -> list[torch.Tensor]:
    """:func:`add_branch_output_in_order` for several sites that read the same input ``x``,
    in that order (``outputs[i]`` in the order ``columns_out[i]``).

    Where every branch is low-rank, their first layers run as one product ``[V_1; V_2; ...] x``
    (one pass over ``x`` forward, and one product and no sum of separate gradients for ``x``
    backward, instead of one each); each branch then adds ``s U h + s b`` from its own columns
    of it. The regulariser terms are recorded site after site, as the hooks would record them
    (the same random numbers: the forward products draw none).
    """
    branches = [getattr(module, BRANCH_ATTRIBUTE) for module in modules]
    if len(branches) < 2 or any(b.form != "lowrank" or b.field for b in branches):
        return [
            add_branch_output_in_order(module, output, x, columns_in, order, shared_columns)
            for module, output, order in zip(modules, outputs, columns_out, strict=True)
        ]
    weights = [b._ordered_parameters(columns_in, None, x.device)[0][0] for b in branches]
    hidden = nn.functional.linear(x, torch.cat(weights)).split([w.shape[0] for w in weights], -1)
    results = [
        branch._add_up(output, part, order)
        for branch, output, part, order in zip(branches, outputs, hidden, columns_out, strict=True)
    ]
    _record_shared_input_penalties(branches, x, columns_in)
    return results


def _record_shared_input_penalties(
    branches: list[RelaxedBranch], x: torch.Tensor, columns_in: tuple[int, ...] | None
) -> None:
    """Each branch's ``step_penalties(x, None)``, branch after branch (the same random rows),
    with the row subsets of ``x`` gathered in one ``index_select``: its gradient is a
    zero-filled tensor the size of ``x`` added to ``x``'s gradient, once instead of once per
    branch."""
    x = x.reshape(-1, x.shape[-1])
    due = [b for b in branches if _records_penalty(b) and b._penalty_due()]
    for branch in branches:
        if branch not in due and _records_penalty(branch):
            branch.last_penalty = None
    rows = [b._penalty_rows(x.shape[0], x.device) for b in due]
    drawn = [r for r in rows if r is not None]
    gathered = iter(x.index_select(0, torch.cat(drawn)).split([len(r) for r in drawn]) if drawn
                    else ())
    for branch, subset in zip(due, rows, strict=True):
        part = x if subset is None else next(gathered)
        terms = branch._penalties_on_rows(part, None, columns_in, None)
        branch.last_penalty = branch._times_every(terms)


def has_hooks(module: nn.Module, *, besides_own_forward_hooks: bool = False) -> bool:
    """Whether calling ``module`` runs any hook: its forward hooks (unless told to leave them
    out), its pre-forward or backward hooks, or global ones. A site with hooks must be called as
    declared, not bypassed."""
    own = () if besides_own_forward_hooks else (module._forward_hooks,)
    return any(bool(hooks) for hooks in (
        *own, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks,
        _module._global_forward_hooks, _module._global_forward_pre_hooks,
        _module._global_backward_hooks, _module._global_backward_pre_hooks,
    ))


def branch_reads_any_order(module: nn.Module, shared_columns: int = 0) -> bool:
    """Whether a site may add its branch itself with :func:`add_branch_output_in_order`
    instead of being called with its hooks: the branch's :func:`add_branch_output` is the only
    hook that observes ``module`` (no other forward, pre-forward, backward or global hook),
    and the branch costs no more on permuted columns (:meth:`RelaxedBranch.reads_any_order`)."""
    branch = getattr(module, BRANCH_ATTRIBUTE, None)
    if not isinstance(branch, RelaxedBranch) or not branch.reads_any_order(shared_columns):
        return False
    hooks = module._forward_hooks.values()
    return (not has_hooks(module, besides_own_forward_hooks=True) and len(hooks) == 1
            and next(iter(hooks)) is add_branch_output)


def can_fuse(module: nn.Module, branch: RelaxedBranch) -> bool:
    """Whether ``module`` can fold ``branch`` into its own convolution (see :func:`fold_branch`):
    the module declares ``fuses_relaxation_branch`` and "same"-padded odd ``kernel_size`` at
    least the branch's (a smaller kernel is zero-padded to it)."""
    if branch.form != "conv" or not getattr(module, "fuses_relaxation_branch", False):
        return False
    size, own = getattr(module, "kernel_size", None), branch.layers[0].kernel_size
    return isinstance(size, int) and size % 2 == 1 and own[0] == own[1] <= size


def fold_branch(
    module: nn.Module, kernel: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Kernel and bias of a convolution site with its fused conv branch folded in.

    For a site module that declares ``fuses_relaxation_branch = True`` and computes
    ``conv2d(x, kernel, bias, padding=kernel_size // 2)``: returns
    ``(kernel + s W, bias + s b)`` where ``(W, b)`` is the attached branch's convolution (zero
    padded to the site's kernel size), so that one convolution computes
    ``f_e(x) + s g(x)``; the kernel and bias unchanged when no fused branch is attached (a
    projected model computes exactly the base function). Records the branch's kernel
    penalties in regularised training passes, as the forward hook does for other branches.
    """
    branch = getattr(module, BRANCH_ATTRIBUTE, None)
    if branch is None or not branch.fused:
        return kernel, bias
    conv = branch.layers[0]
    if _records_penalty(branch):
        branch.last_penalty = branch.step_penalties(None, None)
    weight = conv.weight
    pad = (kernel.shape[-1] - weight.shape[-1]) // 2
    if pad:
        weight = nn.functional.pad(weight, (pad, pad, pad, pad))
    kernel = kernel + branch.scale * weight
    if conv.bias is not None:
        bias = branch.scale * conv.bias if bias is None else bias + branch.scale * conv.bias
    return kernel, bias
