"""A tiny registered architecture for the checkpoint and Hub tests.

The real architectures are heavier and change under active development; the checkpoint format
and the Hub machinery only need *some* registered ``ZooModel``. The tests take the architecture
from :data:`ARCHITECTURE` and run it through :func:`example_outputs`, so switching them to
``equiformer``'s tiny preset means changing this module only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo._registry import get_architecture, register_architecture
from zoo.models.base import GroupElement, RelaxationSite, SymmetryGroup, ZooModel

ARCHITECTURE = "toy-linear"
PRESET = "tiny"


class ToyLinear(ZooModel):
    """Two linear layers on invariant features: ``Linear -> tanh -> Linear``."""

    symmetry = SymmetryGroup(rotations=True)

    def __init__(self, n_in: int = 4, hidden: int = 8, n_out: int = 2, cutoff: float = 5.0):
        super().__init__()
        self.layer1 = nn.Linear(n_in, hidden)
        self.layer2 = nn.Linear(hidden, n_out)
        self.register_buffer("scale", torch.ones(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(torch.tanh(self.layer1(x))) * self.scale

    def relaxation_sites(self) -> list[RelaxationSite]:
        from zoo.relax import TrivialRep

        return [
            RelaxationSite(
                "layer1", TrivialRep(self.layer1.in_features), TrivialRep(self.layer1.out_features)
            )
        ]

    def example_inputs(
        self, generator: torch.Generator, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        return torch.randn(5, self.layer1.in_features, generator=generator, dtype=dtype)

    def act_on_inputs(self, inputs: torch.Tensor, g: GroupElement) -> torch.Tensor:
        return inputs.clone()  # invariant features

    def act_on_outputs(self, outputs: torch.Tensor, g: GroupElement) -> torch.Tensor:
        return outputs.clone()


def _register() -> None:
    # Idempotent: the helper may be imported by several test modules and subprocesses.
    try:
        get_architecture(ARCHITECTURE)
    except KeyError:
        register_architecture(ARCHITECTURE, presets={"tiny": {"n_in": 4, "hidden": 8, "n_out": 2}})(
            ToyLinear
        )


_register()


def make_model(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides: Any) -> nn.Module:
    """A freshly initialised test model with reproducible weights, in eval mode."""
    import zoo

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = zoo.create_model(ARCHITECTURE, PRESET, **overrides)
    return model.to(dtype=dtype).eval()


def example_outputs(model: nn.Module, seed: int = 1) -> torch.Tensor:
    """The model's outputs on fixed example inputs, flattened into one tensor.

    The inputs are drawn in float64 and cast, so models of different dtypes see the same ones.
    """
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    inputs = model.example_inputs(generator, dtype=torch.float64).to(dtype)
    with torch.no_grad():
        out = model(inputs)
    if isinstance(out, dict):
        out = torch.cat([out[k].reshape(-1) for k in sorted(out)])
    return out.reshape(-1)
