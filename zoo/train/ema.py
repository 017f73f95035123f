"""Exponential moving average of a model's trained weights (MACE, NequIP and Allegro train so).

The average is what gets validated every epoch and what is exported: it is a smoother, usually
more accurate function than the last step's weights, at the cost of one copy of the parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class WeightEMA:
    """Shadow copy of ``parameters`` updated as ``s <- d s + (1 - d) p`` after every step.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n`` so
    that the average is not dominated by the random initialisation.

    Parameters
    ----------
    named_parameters
        ``{name: parameter}`` to average (the ones the optimiser trains).
    decay
        Long-run decay ``d`` in ``(0, 1)``.
    """

    def __init__(self, named_parameters: dict[str, nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.parameters = dict(named_parameters)
        self.shadow = {k: p.detach().clone() for k, p in self.parameters.items()}
        self.num_updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current parameters into the average."""
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, param in self.parameters.items():
            self.shadow[name].lerp_(param.detach(), 1.0 - decay)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily load the averaged weights into the model (restored on exit)."""
        saved = {k: p.detach().clone() for k, p in self.parameters.items()}
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.parameters.items():
                    param.copy_(saved[name])

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Load the averaged weights into the model for good (before export)."""
        for name, param in self.parameters.items():
            param.copy_(self.shadow[name])

    def state_dict(self) -> dict:
        """Averaged weights and update count, for checkpoints."""
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (names must match the model's parameters)."""
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model; differing names: "
                             f"{sorted(missing)[:5]}")
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name] = value.to(self.shadow[name])
