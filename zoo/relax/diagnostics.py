"""How much each relaxation branch contributes, next to the equivariant layer it relaxes.

For monitoring training (per layer and per epoch): :func:`branch_contributions` runs one batch
and returns, per relaxed site, the size of ``s g(x)`` relative to the base output ``f_e(x)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.relax.branch import BRANCH_ATTRIBUTE, RelaxedBranch


@torch.no_grad()
def branch_contributions(model: nn.Module, inputs: Any) -> dict[str, dict[str, float]]:
    """Per relaxed site, on one batch: the branch's output against the base layer's output.

    The model runs once, in evaluation mode (restored afterwards) and without gradients, so
    batch-norm statistics, dropout and the recorded regulariser terms are left as they were.

    Parameters
    ----------
    model
        A relaxed model (:func:`zoo.relax.relax`).
    inputs
        One batch, as the model's forward takes it.

    Returns
    -------
    dict
        Site name (the relaxed submodule's dotted path) -> ``{"level": s, "base": ||f_e(x)||,
        "branch": ||s g(x)||, "unscaled": ||g(x)||, "relative": ||s g(x)|| / ||f_e(x)||}``,
        Frobenius norms over the whole batch (a site called several times in one forward pass
        is summed over its calls). ``f_e(x)`` is the site's output without the branch; for a
        fused branch it is recovered as the output minus ``s g(x)``. Empty for a model with no
        branches.
    """
    sites = {name: module for name, module in model.named_modules()
             if isinstance(getattr(module, BRANCH_ATTRIBUTE, None), RelaxedBranch)}
    squares = {name: torch.zeros(3, dtype=torch.float64) for name in sites}

    def recorder(name: str):
        @torch.no_grad()  # also inside a forward that enables gradients (forces)
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            branch: RelaxedBranch = getattr(module, BRANCH_ATTRIBUTE)
            shared = getattr(module, "relaxation_shared_columns", None)
            g = branch(args[0], 0 if shared is None else shared(args))
            contribution = branch.scale * g
            base = output - contribution  # this hook runs after the branch's own
            squares[name] += torch.stack([
                base.double().square().sum(), contribution.double().square().sum(),
                g.double().square().sum(),
            ]).cpu()

        return record

    handles = [module.register_forward_hook(recorder(name)) for name, module in sites.items()]
    was_training = model.training
    try:
        model.eval()
        model(inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    result = {}
    for name, module in sites.items():
        base, branch, unscaled = squares[name].sqrt().tolist()
        result[name] = {
            "level": getattr(module, BRANCH_ATTRIBUTE).level,
            "base": base,
            "branch": branch,
            "unscaled": unscaled,
            "relative": branch / base if base > 0 else float("inf") if branch > 0 else 0.0,
        }
    return result
