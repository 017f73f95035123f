"""Level controllers: CR schedules, ACE primal-dual, RECM-style modulation, resume state.

The learning tests train a toy layer (an e3nn ``o3.Linear`` on ``4x1o``) on Gaussian inputs,
whose distribution is rotation invariant: with an equivariant target the data is exactly
symmetric, and adding a constant vector ``c e_z`` to the target plants a symmetry breaking that
only the branch (through its bias) can supply.

Measured with the settings below (float64, one thread, seed 0, 800 steps of batch 64):

- ACE equality, ``eta_p = 0.5``, ``eta_d = 0.05``, Adam lr 0.01: final ``gamma`` 0.0074,
  ``max |gamma|`` over the last 100 steps 0.013. With ``0.05 / 0.05`` the level never settles:
  once the regulariser has shrunk the branch, ``J`` has no curvature in ``gamma`` left to damp
  the alternating gradient descent-ascent on ``lambda * gamma``, which then cycles (here
  ``max |gamma|`` 0.30 in every 200-step window from step 600 to 3000). The damping ratio is
  about ``(a / 2) sqrt(eta_p / eta_d)`` with ``a = d2J/dgamma2``, hence the larger
  ``eta_p / eta_d``.
- ACE with the paper's N-body step sizes (9e-4 / 8e-4), 2400 steps: undamped ``gamma`` goes
  1 -> 1.14 -> 0.08 -> -0.29 (a slow cycle of ~7400 steps); with ``damping="critical"`` it falls
  monotonically to 0.01 at step 2000 and undershoots to -0.18 at 2400, as a critically damped
  oscillator started at rest does (minimum ``-e^-2`` at ``2 / sqrt(eta_p eta_d)`` steps), and
  settles within ~``5 / sqrt(eta_p eta_d)`` (~6000) steps.
- ACE resilient, same step sizes, ``rho = 1``, ``c = 1``: final ``|gamma|`` 0.44 against a
  slack ``u`` 0.46 (both still shrinking slowly).
- RECM-style, ``beta = 0.1``, ``eta = 0.25``, ``kappa = 0.3``, Adam lr 0.05, betas
  (0.9, 0.99): symmetric data drives the level from 1 to 0 (clipped) by step ~600; the planted
  breaking keeps it at 0.37 (now the defaults). With ``kappa = 1, eta = 0.05`` the level
  collapses to
  0 under the planted breaking too (see ``test_recm_keeps_level_under_planted_breaking``); with
  Adam's default betas the symmetric case is still at 0.05 after 800 steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
from e3nn import o3

from zoo import relax
from zoo.models.base import GroupElement, RelaxationSite, SymmetryGroup, ZooModel
from zoo.relax import (
    ACEController,
    CRController,
    IrrepsRep,
    RECMController,
    lie_derivative_penalty,
    make_controller,
    relaxation_penalty,
    triangle_level,
)
from zoo.relax.representations import wigner_matrix
from zoo.testing import equivariance_error

IRREPS = "4x1o"
DIM = 12
BATCH = 64
LAMBDA_REG = 0.01
STEPS = 800
ACE_OPTIONS = {"eta_p": 0.5, "eta_d": 0.05}
RECM_OPTIONS = {"beta": 0.1, "eta": 0.25, "kappa": 0.3}
# Shorter second-moment memory than Adam's default 0.999: the early, large gradients otherwise
# keep the steps that hand the branch's work over to the trunk small for ~1000 steps.
RECM_ADAM_BETAS = (0.9, 0.99)


class ToyVectorLinear(ZooModel):
    """``o3.Linear(4x1o -> 4x1o)`` and optionally more, each a relaxation site (not registered).

    Parameters
    ----------
    extra_layers
        Further ``o3.Linear`` layers after the first (more sites, for multi-branch tests).
    """

    architecture = "toy-vector-linear"
    symmetry = SymmetryGroup(rotations=True, reflections=True)

    def __init__(self, extra_layers: int = 0) -> None:
        super().__init__()
        self.linear = o3.Linear(IRREPS, IRREPS)
        self.extra = torch.nn.ModuleList(o3.Linear(IRREPS, IRREPS) for _ in range(extra_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        for layer in self.extra:
            x = layer(x)
        return x

    def relaxation_sites(self) -> list[RelaxationSite]:
        names = ["linear"] + [f"extra.{i}" for i in range(len(self.extra))]
        return [RelaxationSite(n, IrrepsRep(IRREPS), IrrepsRep(IRREPS)) for n in names]

    def example_inputs(self, generator: torch.Generator, dtype: torch.dtype = torch.float64):
        return torch.randn(8, DIM, generator=generator, dtype=torch.float64).to(dtype)

    def act_on_inputs(self, inputs: torch.Tensor, g: GroupElement) -> torch.Tensor:
        return inputs @ wigner_matrix(IRREPS, g.rotation).T.to(inputs.dtype)

    def act_on_outputs(self, outputs, g: GroupElement):
        # zoo.testing.equivariance_report hands over the outputs already wrapped as
        # {"output": tensor}, so accept both forms.
        if isinstance(outputs, dict):
            return {key: self.act_on_outputs(value, g) for key, value in outputs.items()}
        return outputs @ wigner_matrix(IRREPS, g.rotation).T.to(outputs.dtype)


def make_toy(method: str, seed: int = 0, extra_layers: int = 0, form: str = "linear"):
    """A relaxed float64 toy model with reproducible weights (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ToyVectorLinear(extra_layers).to(torch.float64)
        relax.relax(model, method, form=form)
    return model


def intertwiner(seed: int) -> torch.Tensor:
    """``W_true = kron(M, I_3)``: an equivariant map of ``4x1o`` (channel-major layout)."""
    mixing = torch.randn(4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.kron(mixing, torch.eye(3, dtype=torch.float64))


def toy_target(breaking: float, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """``y = W_true x + c e_z``, ``e_z`` the z component of the first vector channel."""
    weight = intertwiner(seed + 100)
    offset = torch.zeros(DIM, dtype=torch.float64)
    offset[2] = breaking  # e3nn 0.6 orders l=1 components (x, y, z)
    return lambda x: x @ weight.T + offset


def train(
    model: ZooModel,
    controller,
    target: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    lr: float,
    seed: int = 0,
    betas: tuple[float, float] = (0.9, 0.999),
) -> list[list[float]]:
    """Adam on base and branch weights (not the levels); loss = MSE + lambda * penalty.

    Returns the levels after every step.
    """
    generator = torch.Generator().manual_seed(seed)
    levels = {id(p) for p in relax.level_parameters(model)}
    weights = [p for p in model.parameters() if id(p) not in levels]
    optimizer = torch.optim.Adam(weights, lr=lr, betas=betas)
    history = []
    model.train()
    for _ in range(steps):
        x = torch.randn(BATCH, DIM, generator=generator, dtype=torch.float64)
        loss = (model(x) - target(x)).square().mean()
        loss = loss + LAMBDA_REG * relaxation_penalty(model)["total"]
        optimizer.zero_grad()
        loss.backward()
        controller.on_before_optimizer_step()
        optimizer.step()
        history.append(controller.levels())
    return history


def test_toy_target_is_equivariant_and_toy_model_too() -> None:
    """Sanity of the toy task: ``W_true`` is an intertwiner and the base layer is equivariant."""
    rep = IrrepsRep(IRREPS)
    x = torch.randn(16, DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert lie_derivative_penalty(intertwiner(100), x, rep, rep) < 1e-12
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ToyVectorLinear()
    assert equivariance_error(model) < 1e-12


# --- CR ------------------------------------------------------------------------------------


def test_triangle_schedule_values() -> None:
    """N = 10: 0, .2, .4, .6, .8, 1, .8, .6, .4, .2, 0 (starts and ends equivariant)."""
    expected = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
    assert [triangle_level(i, 10) for i in range(11)] == pytest.approx(expected, abs=1e-12)
    assert triangle_level(5, 10, peak=0.5) == pytest.approx(0.5)
    assert triangle_level(-3, 10) == 0.0 and triangle_level(12, 10) == 0.0  # clamped
    with pytest.raises(ValueError, match="positive"):
        triangle_level(0, 0)


def test_cr_constant_schedule() -> None:
    """The ablation's constant level, whatever the epoch."""
    controller = CRController("constant", peak=0.7)
    assert [controller.level_at(i, 10) for i in range(10)] == [0.7] * 10
    with pytest.raises(ValueError, match="triangle"):
        CRController("cosine")


def test_cr_controller_sets_every_branch_level() -> None:
    """``on_epoch_start`` sets the shared level on every branch, and the model uses it."""
    model = make_toy("cr", extra_layers=2)
    controller = make_controller("cr")
    assert isinstance(controller, CRController)
    controller.attach(model)
    assert len(controller.branches) == 3
    relax.randomize_branches(model, torch.Generator().manual_seed(0))
    x = torch.randn(4, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    outputs = []
    for epoch in range(10):
        controller.on_epoch_start(epoch, 10)
        expected = triangle_level(epoch, 10)
        assert controller.levels() == [expected] * 3
        assert [b.level for b in relax.branches(model)] == [expected] * 3
        outputs.append(model(x).detach())
    # Epoch 0 is exactly the equivariant model (level 0); the peak epoch differs from it.
    base = relax.project(make_toy("cr", extra_layers=2))
    torch.testing.assert_close(outputs[0], base(x), rtol=0, atol=0)
    assert (outputs[5] - outputs[0]).abs().max() > 1e-3


def test_attach_needs_a_relaxed_model() -> None:
    """A controller on a model without branches is an error."""
    with torch.random.fork_rng(devices=[]):
        model = ToyVectorLinear()
    for method in ("cr", "ace", "recm"):
        with pytest.raises(ValueError, match="no relaxation branches"):
            make_controller(method).attach(model)


# --- resume: state_dict / load_state_dict ----------------------------------------------------

CONTROLLER_CASES = {
    "cr": ("cr", {"schedule": "triangle", "peak": 0.8}),
    "ace": ("ace", {"eta_p": 0.05, "eta_d": 0.05}),
    "ace-resilient": ("ace", {"eta_p": 0.05, "eta_d": 0.05, "form": "resilient", "u_init": 0.1}),
    "recm": ("recm", {"beta": 0.3, "eta": 0.1, "kappa": 0.5}),
    "recm-relative": ("recm", {"beta": 0.3, "eta": 0.1, "kappa": 1.5, "demand": "relative",
                               "threshold": 0.1}),
}


@pytest.mark.parametrize("case", sorted(CONTROLLER_CASES))
def test_controller_state_round_trip(case: str) -> None:
    """Levels, duals, slacks and states survive JSON and restore into a freshly relaxed model.

    The resumed run then takes exactly the same step as the uninterrupted one.
    """
    method, options = CONTROLLER_CASES[case]
    target = toy_target(1.0)
    model = make_toy(method, extra_layers=1)
    controller = make_controller(method, **options)
    controller.attach(model)
    initial = controller.levels()
    if method == "cr":
        controller.on_epoch_start(3, 10)
    train(model, controller, target, steps=6, lr=0.01)
    state = json.loads(json.dumps(controller.state_dict()))
    assert all(a != b for a, b in zip(state["levels"], initial, strict=True))  # levels moved
    if method == "ace":
        assert set(state) == {"levels", "duals", "slacks"}
        assert all(d != 0 for d in state["duals"])
        if options.get("form") == "resilient":
            assert all(u != options["u_init"] for u in state["slacks"])
    if method == "recm":
        relative = options.get("demand") == "relative"
        assert set(state) == {"levels", "states"} | ({"magnitudes"} if relative else set())
        assert all(h != 0 for h in state["states"])

    fresh = make_toy(method, seed=1, extra_layers=1)
    weights = {k: v for k, v in model.state_dict().items() if not k.endswith(".scale")}
    fresh.load_state_dict(weights, strict=False)
    resumed = make_controller(method, **options)
    resumed.attach(fresh)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    assert [b.level for b in relax.branches(fresh)] == state["levels"]

    # One more step on both: identical controller state (same data, weights and optimiser).
    train(model, controller, target, steps=1, lr=0.01, seed=9)
    train(fresh, resumed, target, steps=1, lr=0.01, seed=9)
    assert resumed.state_dict() == controller.state_dict()


# --- ACE -----------------------------------------------------------------------------------


def test_ace_on_symmetric_data_returns_to_equivariance() -> None:
    """Equality-constrained ACE on exactly symmetric data: every ``|gamma| < 0.05`` at the end.

    Also over the whole last 100 steps (not a lucky zero crossing of an oscillation); the
    projected model fits the target and is exactly equivariant.
    """
    model = make_toy("ace")
    controller = ACEController(**ACE_OPTIONS)
    controller.attach(model)
    assert controller.levels() == [1.0]
    target = toy_target(0.0)
    history = train(model, controller, target, steps=STEPS, lr=0.01)
    last = torch.tensor(history[-100:]).abs().max()
    assert all(abs(level) < 0.05 for level in controller.levels()), controller.state_dict()
    assert last < 0.05, float(last)

    relax.project(model)
    x = torch.randn(256, DIM, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = target(x)
    assert (model(x) - y).square().mean() < 0.01 * y.square().mean()
    assert equivariance_error(model) < 1e-12


def test_ace_damping_settles_the_cycle_the_published_updates_keep() -> None:
    """Equal step sizes (0.05 / 0.05): the published updates cycle (``max |gamma|`` 0.31 over
    the last 200 of 800 steps); critical damping settles ``gamma`` (measured 0.0097, final
    9e-5)."""
    target = toy_target(0.0)
    windows = {}
    for damping in (0.0, "critical"):
        model = make_toy("ace")
        controller = ACEController(eta_p=0.05, eta_d=0.05, damping=damping)
        controller.attach(model)
        history = train(model, controller, target, steps=STEPS, lr=0.01)
        windows[damping] = float(torch.tensor(history[-200:]).abs().max())
    assert controller.damping == pytest.approx(2.0)
    assert windows[0.0] > 0.1, windows
    assert windows["critical"] < 0.02, windows


def test_ace_damping_is_checked() -> None:
    with pytest.raises(ValueError, match="damping"):
        ACEController(damping=-1.0)
    with pytest.raises(ValueError, match="damping"):
        ACEController(damping="strong")


def test_ace_resilient_level_within_slack_under_planted_breaking() -> None:
    """Resilient ACE with a preferred direction in the target: ``|gamma| <= u`` (+ tolerance).

    The slack ``u`` opens (the data needs the branch), and the level respects it at the end.
    """
    model = make_toy("ace")
    controller = ACEController(form="resilient", rho=1.0, **ACE_OPTIONS)
    controller.attach(model)
    train(model, controller, toy_target(1.0), steps=STEPS, lr=0.01)
    (level,), (slack,) = controller.levels(), controller.slacks
    assert abs(level) <= slack + 0.02, controller.state_dict()
    assert slack > 0.05, controller.state_dict()


# --- RECM-style ----------------------------------------------------------------------------


def test_recm_drives_level_to_zero_on_symmetric_data() -> None:
    """Exactly symmetric data: the level goes from 1 to ~0 (< 0.02)."""
    model = make_toy("recm")
    controller = RECMController(**RECM_OPTIONS)
    controller.attach(model)
    assert controller.levels() == [1.0]
    train(model, controller, toy_target(0.0), steps=STEPS, lr=0.05, betas=RECM_ADAM_BETAS)
    assert all(level < 0.02 for level in controller.levels()), controller.state_dict()
    assert all(level >= 0 for level in controller.levels())


def test_recm_keeps_level_under_planted_breaking() -> None:
    """A constant preferred direction in the target keeps the level clearly above 0 (> 0.1).

    The branch's bias ``b`` supplies ``c e_z``; the demand ``-dL/ds`` must balance the pull
    ``kappa * s``. Roughly, with the MSE over 12 components and the regulariser on the bias
    (``lambda (|b| + 2|b|)``: norm, and the two generators that rotate ``e_z``), Adam's
    stationary bias leaves a residual ``r = 0.18 / s``, and the demand is
    ``(2/12) r (c - r) / s``. Balance needs ``r (c - r) = 6 kappa s^2``: for ``c = 1`` and the
    default ``kappa = 1`` the left side (at most 0.25) stays below the right for every ``s``
    with ``r <= c``, so the level collapses to 0 (measured: 0.0000 after 800 steps); for
    ``kappa = 0.3`` the balance is at ``s = 0.37``, which is what training reaches.
    """
    model = make_toy("recm")
    controller = RECMController(**RECM_OPTIONS)
    controller.attach(model)
    train(model, controller, toy_target(1.0), steps=STEPS, lr=0.05, betas=RECM_ADAM_BETAS)
    assert all(level > 0.1 for level in controller.levels()), controller.state_dict()


# With demand="relative" (measured as in the module docstring): symmetric data holds the level
# at 1 - threshold while the regulariser's shrinking of g leaves a consistent residual for the
# branch, then the trunk absorbs the map and the level reaches 0 by step ~1000; the planted
# breaking keeps the consistency at 1.00 and the level at 1 - threshold = 0.8.
RECM_RELATIVE_OPTIONS = {"beta": 0.02, "eta": 0.05, "kappa": 1.0, "demand": "relative",
                         "threshold": 0.2}


def test_recm_relative_demand_returns_to_zero_on_symmetric_data() -> None:
    """The consistency of the demand, not its size, drives the level: still 0 at the end."""
    model = make_toy("recm")
    controller = RECMController(**RECM_RELATIVE_OPTIONS)
    controller.attach(model)
    train(model, controller, toy_target(0.0), steps=2 * STEPS, lr=0.05, betas=RECM_ADAM_BETAS)
    assert controller.levels() == [0.0], controller.state_dict()


def test_recm_relative_demand_keeps_level_under_planted_breaking() -> None:
    """Planted breaking: every batch asks for the branch, so the level sits at 1 - threshold."""
    model = make_toy("recm")
    controller = RECMController(**RECM_RELATIVE_OPTIONS)
    controller.attach(model)
    train(model, controller, toy_target(1.0), steps=2 * STEPS, lr=0.05, betas=RECM_ADAM_BETAS)
    (level,), (state,), (magnitude,) = (controller.levels(), controller.states,
                                        controller.magnitudes)
    assert state / magnitude > 0.95, controller.state_dict()
    assert level == pytest.approx(0.8, abs=0.02), controller.state_dict()


def test_recm_relative_demand_is_scale_free() -> None:
    """Multiplying the loss by 1000 leaves the levels where they were (to rounding)."""
    levels = []
    for factor in (1.0, 1000.0):
        model = make_toy("recm")
        controller = RECMController(**RECM_RELATIVE_OPTIONS)
        controller.attach(model)
        # SGD: its steps scale with the loss, so only the controller is compared.
        for b in relax.branches(model):
            b.scale.grad = torch.tensor(-0.3 * factor, dtype=torch.float64)
        controller.on_before_optimizer_step()
        for b in relax.branches(model):
            b.scale.grad = torch.tensor(0.1 * factor, dtype=torch.float64)
        controller.on_before_optimizer_step()
        levels.append(controller.levels())
    assert levels[0] == pytest.approx(levels[1], rel=1e-12)


def test_recm_options_are_checked() -> None:
    with pytest.raises(ValueError, match="demand must be one of"):
        RECMController(demand="loud")
    with pytest.raises(ValueError, match="threshold applies to demand='relative' only"):
        RECMController(threshold=0.1)
    controller = RECMController(demand="relative")
    controller.attach(make_toy("recm"))
    with pytest.raises(ValueError, match="resume with the same controller options"):
        controller.load_state_dict({"levels": [1.0], "states": [0.0]})
