"""Per-element reference energies of energy models: fitted before training, refit for
fine-tuning on new data, and the check that refuses elements a model never saw."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from zoo.errors import InputError
from zoo.models.graph import scatter_sum


def fit_normalization(graphs: list[Data], max_atomic_number: int) -> dict[str, Any]:
    """Per-element reference energies (least squares on composition) and the force RMS as scale.

    With one molecule the composition never changes, so the minimum-norm least-squares solution
    spreads the mean energy over the elements in proportion to their counts: what matters is that
    the reference absorbs the mean, leaving the network the (small) fluctuations.
    """
    atomic_energies = fit_atomic_energies(
        [g.z.numpy() for g in graphs], [float(g.energy) for g in graphs], max_atomic_number
    )
    forces = torch.cat([g.forces.double() for g in graphs])
    scale = float(forces.pow(2).mean().sqrt())
    return {"atomic_energies": atomic_energies, "energy_scale": scale, "energy_shift": 0.0}


def fit_atomic_energies(
    numbers: list[np.ndarray], energies: list[float], max_atomic_number: int
) -> dict[int, float]:
    """Per-element reference energies: least squares of the total energies on the composition
    (minimum norm where the compositions do not determine them, see :func:`fit_normalization`).
    """
    counts = np.zeros((len(numbers), max_atomic_number + 1))
    for i, z in enumerate(numbers):
        counts[i] = np.bincount(np.asarray(z, dtype=np.int64), minlength=max_atomic_number + 1)
    present = counts.sum(0) > 0
    solution, *_ = np.linalg.lstsq(counts[:, present], np.asarray(energies, dtype=np.float64),
                                   rcond=None)
    return {int(z): float(e) for z, e in zip(np.nonzero(present)[0], solution, strict=True)}


def refit_reference_energies(
    model: Any, frames: Any, *, energy_key: str = "energy"
) -> dict[int, float]:
    """Refit a model's per-element reference energies on new frames, in place.

    Fine-tuning a published model on other data (another molecule, another level of theory)
    without this keeps the old references: the energy offset, often keV, then dominates the loss,
    and in relaxed fine-tuning the branches learn it and take it away at projection. Only the
    constant per-element offsets change; forces are unaffected.

    Parameters
    ----------
    model
        An energy model with per-element references (``set_atomic_energies``, ``elements``),
        e.g. from ``zoo.load("equiformer-md17-aspirin")``.
    frames
        ``ase.Atoms`` frames with their energy under ``energy_key``, PyG graphs with ``z`` and
        ``energy``, or rows (:func:`zoo.data.load_rmd17`, :func:`zoo.data.labelled.read_labelled`).
    energy_key
        Where ``ase.Atoms`` frames keep their energy (eV).

    Returns
    -------
    dict
        ``{atomic number: reference energy (eV)}``, which also become ``model.elements``.

    Raises
    ------
    UnseenElementsError
        The frames hold elements the model was never trained on: fine-tuning cannot teach a
        model an element it has no embedding for (train such a model from scratch).
    """
    if not hasattr(model, "set_atomic_energies"):
        raise TypeError(
            f"{type(model).__name__} has no per-element reference energies to refit "
            "(an energy model such as equiformer has)"
        )
    numbers, energies = _compositions_and_energies(frames, energy_key)
    if not numbers:
        raise ValueError("refit_reference_energies needs at least one frame")
    name = getattr(model, "zoo_info", {}).get("name") or getattr(
        model, "architecture", type(model).__name__)
    check_known_elements(model.elements, numbers, name)
    # The references absorb what the network does not predict: fit them to the residual of the
    # network's own energy (without references). Fitting to the raw energies would leave the
    # network's offset on the new molecule (eV, from environments it learned on another one).
    residual = np.asarray(energies) - _network_energies(model, frames, numbers)
    fitted = fit_atomic_energies(numbers, residual.tolist(), model.max_atomic_number)
    model.set_atomic_energies(fitted)
    return fitted


@torch.no_grad()
def _network_energies(model: Any, frames: Any, numbers: list, batch_size: int = 32) -> np.ndarray:
    """The model's energy of every frame minus its current per-element references (eV)."""
    from ase import Atoms
    from torch_geometric.data import Batch

    dtype = next(model.parameters()).dtype
    graphs = []
    for frame, z in zip(frames, numbers, strict=True):
        if isinstance(frame, Atoms):
            pos = frame.get_positions()
        elif isinstance(frame, Data):
            pos = frame.pos.detach().cpu().numpy()
        else:
            pos = np.asarray(frame["pos"])
        graphs.append(Data(z=torch.as_tensor(np.asarray(z), dtype=torch.long),
                           pos=torch.as_tensor(np.asarray(pos), dtype=dtype).reshape(-1, 3)))
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(graphs[start:start + batch_size])
            energy = model(batch)["energy"].detach().double()
            references = scatter_sum(model._atomic_energies[batch.z], batch.batch,
                                     int(batch.num_graphs))
            out.append((energy - references).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


class UnseenElementsError(InputError):
    """Frames with elements a model was never trained on (it cannot be fine-tuned on them)."""


def check_known_elements(known: Any, numbers: Any, name: str = "the model") -> None:
    """Raise :class:`UnseenElementsError` where ``numbers`` (atomic numbers per frame) hold an
    element outside ``known`` (a model's ``elements``; ``None``, a model without references,
    accepts any)."""
    if known is None:
        return
    present = sorted({int(z) for zs in numbers for z in np.asarray(zs).tolist()})
    unseen = [z for z in present if z not in {int(k) for k in known}]
    if unseen:
        raise UnseenElementsError(
            f"the data holds {_formula(unseen)}, which {name} never saw in training (it knows "
            f"{_formula(known)} only): fine-tuning cannot teach a model new elements; remove "
            "those frames or train a model from scratch (zoo train)"
        )


def _formula(numbers: Any) -> str:
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[int(z)] for z in numbers)


def _compositions_and_energies(frames: Any, energy_key: str) -> tuple[list, list[float]]:
    from ase import Atoms

    numbers, energies = [], []
    for i, frame in enumerate(frames):
        if isinstance(frame, Atoms):
            from zoo.data.labelled import frame_labels

            energy, _ = frame_labels(frame, energy_key, forces_key=None, where=f"frame {i}")
            numbers.append(frame.numbers)
            energies.append(energy)
        elif isinstance(frame, Data):
            numbers.append(frame.z.cpu().numpy())
            energies.append(float(frame.energy))
        else:  # a row
            numbers.append(np.asarray(frame["z"]))
            energies.append(float(frame["energy"]))
    return numbers, energies
