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


def _converted(
    model: torch.nn.Module, dtype: str | torch.dtype | None, device: str | torch.device | None
) -> torch.nn.Module:
    """``model`` itself if already in ``dtype`` on ``device``, else a converted copy."""
    from zoo.hub.checkpoint import parse_device, parse_dtype

    target_dtype = parse_dtype(dtype) if dtype is not None else None
    target_device = parse_device(device) if device is not None else None
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    same_dtype = target_dtype is None or all(t.dtype == target_dtype for t in tensors)
    same_device = target_device is None or all(
        t.device.type == target_device.type
        and (target_device.index is None or t.device.index == target_device.index)
        for t in tensors
    )
    if same_dtype and same_device:
        return model
    clone = getattr(model, "clone", None)
    if callable(clone):  # ZooModel.clone rebuilds e3nn constants exactly in the new dtype
        copy = clone(dtype=target_dtype, device=target_device)
    else:
        import copy as copy_module

        copy = copy_module.deepcopy(model).to(device=target_device, dtype=target_dtype)
    if hasattr(model, "zoo_info"):
        copy.zoo_info = model.zoo_info
    return copy


class ZooCalculator(Calculator):
    """Energy (eV) and forces (eV/Å) from a zoo model, for MD, relaxations and analysis.

    Parameters
    ----------
    model_or_name
        A loaded model, or a name or folder for :func:`zoo.load`. A model is used as it is
        when ``dtype`` and ``device`` match it, else the calculator works on a converted copy:
        the caller's model is never cast or moved.
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
            model = _converted(model_or_name, dtype, device)
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
