"""Controllers that set the relaxation levels during training.

Every controller has the same interface, called by the trainer (or by a hand-written loop):

- :meth:`LevelController.attach` once, with the relaxed model;
- :meth:`LevelController.on_epoch_start` at the start of every epoch;
- :meth:`LevelController.on_before_optimizer_step` after ``backward``, before the optimiser step
  (the branch scales must not be in the optimiser: the controller owns them);
- :meth:`LevelController.state_dict` / :meth:`LevelController.load_state_dict` to resume.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.relax.branch import RelaxedBranch


def triangle_level(epoch: int, n_epochs: int, peak: float = 1.0) -> float:
    """CR's triangle schedule: ``2i/N`` for ``i < N/2``, then ``2 - 2i/N`` (times ``peak``)."""
    if n_epochs <= 0:
        raise ValueError("n_epochs must be positive")
    i = min(max(epoch, 0), n_epochs)
    value = 2.0 * i / n_epochs if i < n_epochs / 2 else 2.0 - 2.0 * i / n_epochs
    return peak * value


class LevelController:
    """Base class: holds the branches; subclasses update their levels."""

    method = "base"

    def __init__(self) -> None:
        self.branches: list[RelaxedBranch] = []

    def attach(self, model: nn.Module) -> None:
        """Find the branches of a relaxed model (call after :func:`zoo.relax.relax`)."""
        from zoo.relax import branches

        self.branches = branches(model)
        if not self.branches:
            raise ValueError("the model has no relaxation branches: call zoo.relax.relax first")

    def levels(self) -> list[float]:
        """Current level of every branch, in site order."""
        return [b.level for b in self.branches]

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:  # noqa: B027 - optional hook
        """Called at the start of every epoch (0-based)."""

    def on_before_optimizer_step(self) -> None:  # noqa: B027 - optional hook
        """Called after ``backward``, before the optimiser step."""

    def state_dict(self) -> dict[str, Any]:
        return {"levels": self.levels()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for branch, level in zip(self.branches, state["levels"], strict=True):
            branch.level = level


class CRController(LevelController):
    """Constraint relaxation: a fixed schedule of the shared level.

    Parameters
    ----------
    schedule
        ``"triangle"`` (the paper's: starts and ends equivariant) or ``"constant"`` (ablation).
    peak
        Largest level (triangle) or the constant level.
    cooldown_epochs
        Last epochs trained at level 0, after the schedule (which then spans the
        ``n_epochs - cooldown_epochs`` epochs before them): the model that is projected at the
        end is the one these epochs trained. ``0`` (the default) keeps the plain per-epoch
        triangle, whose last epoch runs at ``2 peak / n_epochs``.
    """

    method = "cr"

    def __init__(
        self, schedule: str = "triangle", peak: float = 1.0, cooldown_epochs: int = 0
    ) -> None:
        super().__init__()
        if schedule not in ("triangle", "constant"):
            raise ValueError(f"CR schedule must be 'triangle' or 'constant', got {schedule!r}")
        if cooldown_epochs < 0:
            raise ValueError(f"cooldown_epochs must be >= 0, got {cooldown_epochs}")
        self.schedule, self.peak, self.cooldown_epochs = schedule, peak, int(cooldown_epochs)

    def level_at(self, epoch: int, n_epochs: int) -> float:
        """The level of ``epoch`` (0-based) in a run of ``n_epochs``."""
        active = n_epochs - self.cooldown_epochs
        if epoch >= active:
            return 0.0
        if self.schedule == "constant":
            return self.peak
        return triangle_level(epoch, active, self.peak)

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        level = self.level_at(epoch, n_epochs)
        for branch in self.branches:
            branch.level = level


class ACEController(LevelController):
    """Adaptive constrained equivariance: primal-dual updates of each branch's ``gamma``.

    Implements exactly, per step and per branch ``i`` (METHODS.md section 2)::

        gamma_i  <- gamma_i - eta_p * (dJ/dgamma_i + lambda_i)            (equality)
        lambda_i <- lambda_i + eta_d * gamma_i

    and in the resilient form, with relaxation cost ``(rho / 2) u_i^2``::

        gamma_i  <- gamma_i - eta_p * (dJ/dgamma_i + lambda_i * sign(gamma_i))
        u_i      <- u_i - eta_p * (rho * u_i - lambda_i)
        lambda_i <- max(0, lambda_i + eta_d * (|gamma_i| - u_i))

    The dual step uses the updated primal (alternating gradient descent-ascent). The network
    weights ``theta`` are stepped by the trainer's optimiser on ``J``.

    Once the regulariser has shrunk a branch, ``J`` hardly depends on ``gamma`` and nothing damps
    the exchange between ``gamma`` and ``lambda``: the pair is an undamped oscillator of angular
    frequency ``sqrt(eta_p eta_d)`` per step. With the paper's N-body step sizes (9e-4, 8e-4) its
    period is ~7400 steps, so a run of a few thousand steps ends wherever the cycle happens to be
    (our 80-epoch SEGNN runs ended at ``gamma = -0.45``). ``damping`` ``c`` is the augmented
    Lagrangian's quadratic term ``(c / 2) h(gamma)^2`` (``h = gamma``, resp.
    ``max(0, |gamma| - u)``): it adds ``c h`` to the primal gradient, which damps the cycle with
    ratio ``(c / 2) sqrt(eta_p / eta_d)`` and leaves the constrained optimum unchanged
    (``h = 0`` there). ``damping="critical"`` picks ``c = 2 sqrt(eta_d / eta_p)``: ``gamma``
    settles in about ``1 / sqrt(eta_p eta_d)`` steps without overshooting. The default ``0`` is
    the algorithm exactly as published.

    Parameters
    ----------
    eta_p, eta_d
        Primal (``gamma``, ``u``) and dual (``lambda``) step sizes.
    form
        ``"equality"`` (``gamma = 0``) or ``"resilient"`` (``|gamma| <= u``).
    rho
        Weight of the resilient relaxation cost ``(rho / 2) u^2``.
    u_init
        Initial slack of the resilient form.
    damping
        Augmented Lagrangian weight ``c >= 0``, or ``"critical"``.
    """

    method = "ace"

    def __init__(
        self,
        eta_p: float = 9e-4,
        eta_d: float = 8e-4,
        form: str = "equality",
        rho: float = 1.0,
        u_init: float = 0.0,
        damping: float | str = 0.0,
    ) -> None:
        super().__init__()
        if form not in ("equality", "resilient"):
            raise ValueError(f"ACE form must be 'equality' or 'resilient', got {form!r}")
        if eta_p <= 0 or eta_d <= 0:
            raise ValueError(f"ACE step sizes must be positive, got eta_p={eta_p}, eta_d={eta_d}")
        if damping == "critical":
            damping = 2.0 * (eta_d / eta_p) ** 0.5
        elif isinstance(damping, str) or damping < 0:
            raise ValueError(f"ACE damping must be a number >= 0 or 'critical', got {damping!r}")
        self.eta_p, self.eta_d, self.form, self.rho, self.u_init = eta_p, eta_d, form, rho, u_init
        self.damping = float(damping)
        self.duals: list[float] = []
        self.slacks: list[float] = []

    def attach(self, model: nn.Module) -> None:
        super().attach(model)
        self.duals = [0.0] * len(self.branches)
        self.slacks = [self.u_init] * len(self.branches)

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        for i, branch in enumerate(self.branches):
            grad = 0.0 if branch.scale.grad is None else float(branch.scale.grad)
            gamma, lam = branch.level, self.duals[i]
            if self.form == "equality":
                gamma = gamma - self.eta_p * (grad + lam + self.damping * gamma)
                lam = lam + self.eta_d * gamma
            else:
                sign = (gamma > 0) - (gamma < 0)
                violation = max(0.0, abs(gamma) - self.slacks[i])
                gamma = gamma - self.eta_p * (grad + (lam + self.damping * violation) * sign)
                u = self.slacks[i]
                self.slacks[i] = u - self.eta_p * (self.rho * u - lam)
                lam = max(0.0, lam + self.eta_d * (abs(gamma) - self.slacks[i]))
            branch.level, self.duals[i] = gamma, lam
            branch.scale.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"levels": self.levels(), "duals": list(self.duals), "slacks": list(self.slacks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.duals, self.slacks = list(state["duals"]), list(state["slacks"])


class RECMController(LevelController):
    """RECM-style recurrent level modulation (our documented reconstruction, METHODS.md 3).

    Per branch ``l`` and step, with the branch's demand ``d_l = -dL_task/ds_l``
    (``= -<dL/d out_l, g_l(x)>``, averaged over the batch)::

        h_l <- (1 - beta) h_l + beta d_l
        s_l <- clip(s_l + eta (h_l - kappa s_l), 0, s_max)

    On data whose distribution is symmetric (e.g. with Haar-random rotation augmentation) the
    expected demand vanishes where the equivariant trunk is stationary, so the pull
    ``kappa s_l`` takes the level to 0; a layer that needs symmetry breaking keeps a level
    where demand and pull balance.

    Parameters
    ----------
    beta
        Rate of the moving averages of the demand (and of its magnitude).
    eta
        Step size of the level.
    kappa
        Strength of the pull back to equivariance.
    s_max
        Upper clip of the level.
    demand
        ``"raw"`` (default): the demand itself drives the level, as above. ``"relative"``: its
        *consistency* ``h_l / m_l`` drives it, ``m_l`` the moving average of ``|d_l|``::

            m_l <- (1 - beta) m_l + beta |d_l|
            s_l <- clip(s_l + eta (h_l / m_l - threshold - kappa s_l), 0, s_max)

        The raw demand scales with the loss's gradient and with ``||g_l(x)||``, which the norm
        regulariser shrinks, so on a real task it is orders of magnitude below any fixed pull
        and the level dies within the first epoch whatever the data (SEGNN N-body: a factor
        ``(1 - eta kappa)`` a step, issue 17). The consistency is scale-free, in ``[-1, 1]``: 1
        when every recent batch asks for more branch, about 0 when the demand is noise around
        a zero mean, which is what a symmetric distribution gives once the trunk is
        stationary, so the theorem's property is kept. ``threshold`` is the consistency that
        noise alone is allowed (the level rises only above it); with rate ``beta`` a random
        sign averages to a standard deviation of ``sqrt(beta / (2 - beta))`` (0.1 at
        ``beta = 0.02``). The level settles at ``(consistency - threshold) / kappa``.
    threshold
        See ``demand``; only with ``"relative"``.
    """

    method = "recm"
    DEMANDS = ("raw", "relative")

    def __init__(
        self,
        beta: float = 0.1,
        eta: float = 0.25,
        kappa: float = 0.3,
        s_max: float = 1.0,
        demand: str = "raw",
        threshold: float = 0.0,
    ) -> None:
        super().__init__()
        if demand not in self.DEMANDS:
            raise ValueError(f"RECM demand must be one of {self.DEMANDS}, got {demand!r}")
        if threshold and demand != "relative":
            raise ValueError("RECM threshold applies to demand='relative' only")
        self.beta, self.eta, self.kappa, self.s_max = beta, eta, kappa, s_max
        self.demand, self.threshold = demand, threshold
        self.states: list[float] = []
        self.magnitudes: list[float] = []

    def attach(self, model: nn.Module) -> None:
        super().attach(model)
        self.states = [0.0] * len(self.branches)
        self.magnitudes = [0.0] * len(self.branches)

    def signal(self, i: int) -> float:
        """What drives branch ``i``'s level: the averaged demand, or its consistency."""
        if self.demand == "raw":
            return self.states[i]
        magnitude = self.magnitudes[i]
        return self.states[i] / magnitude - self.threshold if magnitude > 0 else -self.threshold

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        for i, branch in enumerate(self.branches):
            demand = 0.0 if branch.scale.grad is None else -float(branch.scale.grad)
            self.states[i] = (1.0 - self.beta) * self.states[i] + self.beta * demand
            self.magnitudes[i] = (1.0 - self.beta) * self.magnitudes[i] + self.beta * abs(demand)
            s = branch.level + self.eta * (self.signal(i) - self.kappa * branch.level)
            branch.level = min(max(s, 0.0), self.s_max)
            branch.scale.grad = None

    def state_dict(self) -> dict[str, Any]:
        state = {"levels": self.levels(), "states": list(self.states)}
        if self.demand == "relative":
            state["magnitudes"] = list(self.magnitudes)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.states = list(state["states"])
        if self.demand == "relative":
            if "magnitudes" not in state:
                raise ValueError("this RECM state has no 'magnitudes': it was saved by a run "
                                 "with demand='raw'; resume with the same controller options")
            self.magnitudes = list(state["magnitudes"])


CONTROLLERS: dict[str, type[LevelController]] = {
    "cr": CRController,
    "ace": ACEController,
    "recm": RECMController,
}


def make_controller(method: str, **options: Any) -> LevelController:
    """A controller by method name (``"cr"``, ``"ace"``, ``"recm"``) with its options."""
    try:
        cls = CONTROLLERS[method]
    except KeyError:
        raise ValueError(
            f"unknown relaxation method {method!r}; choose one of {sorted(CONTROLLERS)}"
        ) from None
    return cls(**options)
