"""The CNN baselines of the smoke-plume experiment (Wang, Walters & Yu, "Approximately
Equivariant Networks for Imperfectly Symmetric Dynamics", ICML 2022; reused by the constraint
relaxation paper, Table 2), in plain torch.

Each model maps the last 10 velocity frames, stacked as ``[B, 20, H, W]`` (channel ``2 t + c``,
``c`` the ``(x, y)`` component), to the next frame ``[B, 2, H, W]``; :meth:`SmokeModel.rollout`
feeds its predictions back for several frames, as the authors train and evaluate.

- ``smoke-conv``: a plain CNN (``Conv-BatchNorm-ReLU`` blocks and a final ``Conv``), the
  authors' ``ConvNet``. No symmetry.
- ``smoke-equiv``: the C4-steerable CNN (the authors' ``E2CNN`` with e2cnn, here our own
  layers, :mod:`zoo.models.smoke_layers`): input and output are 10 and 1 planar vector fields,
  hidden features ``hidden_fields`` copies of the regular representation of C4 (4 channels
  each), field-wise batch norm and ReLU. Exactly C4-equivariant: turning the input field by a
  quarter turn (the plane *and* the ``(x, y)`` components) turns the prediction.
- ``smoke-rsteer``: the relaxed steerable CNN (the authors' ``Relaxed_Rot_SteerConvNet``): the
  same layers, but each kernel's coefficients on the steerable basis vary over the kernel's
  pixels, so it is only approximately equivariant; :meth:`SmokeRSteerNet.weight_constraint`
  is the authors' regulariser (``alpha`` times the coefficients' variation between
  neighbouring pixels), to be added to the loss. Like the authors' model it has no batch norm.

Differences from the authors' code, each for a reason:

- the steerable basis is the full space of C4-equivariant ``3 x 3`` kernels (orbit sums on the
  pixel grid, :func:`~zoo.models.smoke_layers.c4_kernel_basis`), not e2cnn's band-limited
  ring basis: it needs no e2cnn and is exact in every dtype;
- ``smoke-rsteer``'s biases are one per regular field (equivariant) and the last layer has
  none; the authors' have a free bias per channel, a symmetry breaking their regulariser does
  not see;
- ``weight_constraint`` is ``alpha * sum`` over layers, added to the loss as the paper writes
  it; the authors' training loop adds its *square* (an MSE against 0), about 1e-10 at
  ``alpha = 1e-5``, and only on CUDA (a ``.cuda()`` call inside a bare ``try``).

Relaxation sites (``smoke-equiv``, ``smoke-rsteer``): every convolution, ``layers.{i}.conv``,
with :class:`~zoo.relax.representations.C4FieldRep` input and output; the ``"conv"`` branch
form adds an unconstrained ``3 x 3`` convolution in parallel (SMOKE.md's "CR on top").

Registration: all three are registered. ``smoke-conv`` and ``smoke-rsteer`` declare
``exactly_equivariant = False``: the shared suite measures their C4 error instead of asserting it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from zoo._registry import register_architecture
from zoo.models.base import GroupElement, RelaxationSite, SymmetryGroup, ZooModel
from zoo.models.smoke_layers import FieldBatchNorm, SteerableConv2d
from zoo.relax.representations import C4FieldRep, c4_fiber_matrix

CONV_PRESETS: dict[str, dict[str, Any]] = {
    # 184 channels: about the parameters of smoke-equiv's 92 regular fields (0.95 M).
    "smoke": dict(in_frames=10, hidden_channels=184, num_layers=5, kernel_size=3),
    # Batch statistics only: deterministic in training mode (the shared suite compares state).
    "tiny": dict(in_frames=10, hidden_channels=8, num_layers=3, kernel_size=3,
                 running_stats=False),
}
EQUIV_PRESETS: dict[str, dict[str, Any]] = {
    # SMOKE.md: hidden 92 (regular fields, 368 channels), 5 layers, kernel 3.
    "smoke": dict(in_frames=10, hidden_fields=92, num_layers=5, kernel_size=3),
    "tiny": dict(in_frames=10, hidden_fields=3, num_layers=3, kernel_size=3,
                 running_stats=False),
}
RSTEER_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(in_frames=10, hidden_fields=92, num_layers=5, kernel_size=3, alpha=1e-5),
    "tiny": dict(in_frames=10, hidden_fields=3, num_layers=3, kernel_size=3, alpha=1e-5),
}

def quarter_turns(rotation: torch.Tensor) -> int:
    """The number ``k`` (0..3) of counter-clockwise quarter turns of a 2 x 2 rotation matrix."""
    matrix = rotation.detach().to("cpu", torch.float64)
    for k in range(4):
        if torch.allclose(matrix, c4_fiber_matrix("vector", k), atol=1e-6):
            return k
    raise ValueError(f"not a rotation by a multiple of 90 degrees: {matrix.tolist()}")


class SmokeModel(ZooModel):
    """Shared part of the smoke baselines: the C4 action, example inputs, rollout.

    ``symmetry`` names the group the models are measured against (quarter turns of the
    plane); only those with ``exactly_equivariant`` are equivariant by construction.
    """

    symmetry = SymmetryGroup(rotations=False, reflections=False, translations=False,
                             permutations=False, discrete="C4")
    exactly_equivariant: ClassVar[bool] = True
    input_kind = "grid"
    in_frames: int

    @property
    def input_rep(self) -> C4FieldRep:
        """``in_frames`` planar vectors per pixel."""
        return C4FieldRep("vector", self.in_frames)

    @property
    def output_rep(self) -> C4FieldRep:
        """One planar vector per pixel."""
        return C4FieldRep("vector", 1)

    def group_elements(self, dtype: torch.dtype = torch.float64) -> list[GroupElement]:
        """The four quarter turns, each as its 2 x 2 rotation matrix."""
        return [GroupElement(c4_fiber_matrix("vector", k, dtype)) for k in range(4)]

    def act_on_inputs(self, inputs: torch.Tensor, g: GroupElement) -> torch.Tensor:
        return self.input_rep.rotate(inputs, quarter_turns(g.rotation))

    def act_on_outputs(self, outputs: torch.Tensor, g: GroupElement) -> torch.Tensor:
        return self.output_rep.rotate(outputs, quarter_turns(g.rotation))

    def example_inputs(self, generator: torch.Generator,
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Random velocity frames ``[2, 2 * in_frames, 16, 16]``."""
        x = torch.randn(2, 2 * self.in_frames, 16, 16, generator=generator, dtype=torch.float64)
        return x.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Next frame ``[B, 2, H, W]`` from ``[B, 2 * in_frames, H, W]``."""
        self._check(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 2 * self.in_frames:
            raise ValueError(f"expected inputs [B, {2 * self.in_frames}, H, W] "
                             f"({self.in_frames} frames of (x, y) velocities), got {list(x.shape)}")

    def rollout(self, inputs: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Predict ``n_steps`` frames autoregressively: ``[B, n_steps, 2, H, W]``.

        Each prediction is appended to the input window and the oldest frame dropped.
        """
        frames = []
        window = inputs
        for _ in range(n_steps):
            frame = self(window)
            frames.append(frame)
            window = torch.cat([window[:, 2:], frame], dim=1)
        return torch.stack(frames, dim=1)


class ConvBlock(nn.Module):
    """``conv``, then (unless last) ``norm`` and ReLU. The relaxation site is ``conv``."""

    def __init__(self, conv: nn.Module, norm: nn.Module | None, activation: bool) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm if norm is not None else nn.Identity()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return torch.relu(x) if self.activation else x


class _SteerableNet(SmokeModel):
    """Stack of steerable convolutions: vector fields -> regular fields ... -> one vector."""

    def _build(self, in_frames: int, hidden_fields: int, num_layers: int, kernel_size: int,
               batch_norm: bool, relaxed: bool, equivariant_init: bool = False,
               running_stats: bool = True) -> None:
        if num_layers < 2:
            raise ValueError(f"num_layers must be at least 2, got {num_layers}")
        self.in_frames = in_frames
        hidden = C4FieldRep("regular", hidden_fields)
        reps = [self.input_rep] + [hidden] * (num_layers - 1) + [self.output_rep]
        blocks = []
        for i, (rep_in, rep_out) in enumerate(zip(reps[:-1], reps[1:], strict=True)):
            last = i == num_layers - 1
            conv = SteerableConv2d(rep_in, rep_out, kernel_size, bias=not last, relaxed=relaxed,
                                   equivariant_init=equivariant_init)
            norm = (FieldBatchNorm(rep_out, running_stats) if batch_norm and not last
                    else None)
            blocks.append(ConvBlock(conv, norm, activation=not last))
        self.layers = nn.ModuleList(blocks)

    def relaxation_sites(self) -> list[RelaxationSite]:
        """Every steerable convolution (input and output are feature maps)."""
        return [RelaxationSite(f"layers.{i}.conv", layer.conv.rep_in, layer.conv.rep_out)
                for i, layer in enumerate(self.layers)]


@register_architecture("smoke-equiv", presets=EQUIV_PRESETS, default_preset="smoke")
class SmokeEquivNet(_SteerableNet):
    """Exactly C4-equivariant steerable CNN for planar velocity fields (the "Equiv" baseline).

    Parameters
    ----------
    in_frames
        Input frames (each an ``(x, y)`` vector field).
    hidden_fields
        Regular C4 fields per hidden layer (``4 * hidden_fields`` channels).
    num_layers
        Convolutions (the first lifts vectors to regular fields, the last projects back).
    kernel_size
        Odd kernel size.
    batch_norm
        Field-wise batch norm after every hidden convolution (as the authors' E2CNN).
    running_stats
        Whether batch norm keeps running statistics for evaluation (``False``: always the
        batch's statistics).
    """

    def __init__(self, in_frames: int = 10, hidden_fields: int = 92, num_layers: int = 5,
                 kernel_size: int = 3, batch_norm: bool = True, running_stats: bool = True) -> None:
        super().__init__()
        self._build(in_frames, hidden_fields, num_layers, kernel_size, batch_norm, relaxed=False,
                    running_stats=running_stats)


@register_architecture("smoke-rsteer", presets=RSTEER_PRESETS, default_preset="smoke")
class SmokeRSteerNet(_SteerableNet):
    """Relaxed steerable CNN (Wang et al. 2022, "RSteer"): approximately C4-equivariant.

    Parameters
    ----------
    in_frames, hidden_fields, num_layers, kernel_size
        As :class:`SmokeEquivNet`.
    alpha
        Weight of :meth:`weight_constraint`.
    equivariant_init
        Start from equal coefficients at every kernel pixel (then the model starts exactly
        equivariant). The authors draw every pixel's coefficients independently (``False``).
    batch_norm, running_stats
        Field-wise batch norm (off in the authors' RSteer) and its running statistics.
    """

    exactly_equivariant: ClassVar[bool] = False

    def __init__(self, in_frames: int = 10, hidden_fields: int = 92, num_layers: int = 5,
                 kernel_size: int = 3, alpha: float = 1e-5, equivariant_init: bool = False,
                 batch_norm: bool = False, running_stats: bool = True) -> None:
        super().__init__()
        self.alpha = alpha
        self._build(in_frames, hidden_fields, num_layers, kernel_size, batch_norm, relaxed=True,
                    equivariant_init=equivariant_init, running_stats=running_stats)

    def weight_constraint(self) -> torch.Tensor:
        """``alpha * sum_layers mean |w(x_{n+1}) - w(x_n)|``: the authors' regulariser, zero
        exactly when every kernel is equivariant (equal coefficients at every pixel)."""
        return self.alpha * sum(layer.conv.coefficient_variation() for layer in self.layers)


@register_architecture("smoke-conv", presets=CONV_PRESETS, default_preset="smoke")
class SmokeConvNet(SmokeModel):
    """Plain CNN baseline ("Conv"): ``Conv-BatchNorm-ReLU`` blocks and a last ``Conv``.

    Parameters
    ----------
    in_frames
        Input frames.
    hidden_channels
        Channels of every hidden layer.
    num_layers
        Convolutions.
    kernel_size
        Odd kernel size.
    batch_norm, running_stats
        Batch norm after every hidden convolution (as the authors' ConvNet) and its running
        statistics.
    """

    exactly_equivariant: ClassVar[bool] = False

    def __init__(self, in_frames: int = 10, hidden_channels: int = 184, num_layers: int = 5,
                 kernel_size: int = 3, batch_norm: bool = True, running_stats: bool = True) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"num_layers must be at least 2, got {num_layers}")
        self.in_frames = in_frames
        widths = [2 * in_frames] + [hidden_channels] * (num_layers - 1) + [2]
        blocks = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            last = i == num_layers - 1
            conv = nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2)
            norm = (nn.BatchNorm2d(b, track_running_stats=running_stats)
                    if batch_norm and not last else None)
            blocks.append(ConvBlock(conv, norm, activation=not last))
        self.layers = nn.ModuleList(blocks)

    def relaxation_sites(self) -> list[RelaxationSite]:
        """None: the model has no symmetry to relax."""
        return []
