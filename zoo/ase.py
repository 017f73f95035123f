"""ASE calculator for zoo energy/force models.

::

    from zoo.ase import ZooCalculator
    atoms.calc = ZooCalculator("equiformer-md17-aspirin", dtype="float64")
    atoms.get_potential_energy(), atoms.get_forces()
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes


class ZooCalculator(Calculator):
    """Energy (eV) and forces (eV/Å) from a zoo model, for MD, relaxations and analysis.

    Parameters
    ----------
    model_or_name
        A loaded model, or a name or folder for :func:`zoo.load`.
    device
        ``"cpu"``, ``"cuda"``, ...; default: the model's (CUDA when a name is loaded and CUDA
        is available).
    dtype
        ``"float32"`` (fast, for MD) or ``"float64"`` (for geometry optimisation and finite
        differences); default: the checkpoint's. The global torch default is never changed.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(
        self,
        model_or_name: Any,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(model_or_name, torch.nn.Module):
            model = model_or_name
            if dtype is not None:
                from zoo.hub.checkpoint import parse_dtype

                model = model.to(parse_dtype(dtype))
            if device is not None:
                model = model.to(device)
        else:
            from zoo.hub.load import load

            if device is None and torch.cuda.is_available():
                device = "cuda"
            model = load(model_or_name, device=device, dtype=dtype)
        self.model = model.eval()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        from zoo.inference import predict

        result = predict(self.model, [self.atoms], batch_size=1)
        energy = float(result["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(result["forces"][0], dtype=np.float64),
        }
