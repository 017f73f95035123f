"""Energies and forces of a zoo model on ``ase.Atoms`` frames.

::

    import zoo
    from zoo.inference import predict

    model = zoo.create_model("equiformer", preset="small")
    out = predict(model, frames)          # frames: list of ase.Atoms
    out["energy"]                         # numpy [n_frames], eV
    out["forces"][i]                      # numpy [n_atoms_i, 3], eV/Å

"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import nn

from zoo.data import frames_to_batch

__all__ = ["predict"]


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """Floating dtype and device of the model's first floating parameter (or buffer)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return torch.get_default_dtype(), torch.device("cpu")


def _as_frame_list(frames: Atoms | Iterable[Atoms]) -> list[Atoms]:
    if isinstance(frames, Atoms):
        return [frames]
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise TypeError(
            f"frames must be an ase.Atoms or a list of ase.Atoms, got {type(frames).__name__}"
        )
    frame_list = list(frames)
    if not frame_list:
        raise ValueError("predict needs at least one frame; got an empty list of frames")
    for i, atoms in enumerate(frame_list):
        if not isinstance(atoms, Atoms):
            raise TypeError(f"frame {i} is a {type(atoms).__name__}, expected an ase.Atoms")
    return frame_list


def predict(
    model: nn.Module,
    frames: Atoms | Sequence[Atoms],
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Predict energies and forces of ``frames`` with ``model``.

    The frames are batched with :func:`zoo.data.frames_to_batch` in the model's parameter
    dtype. The model runs in eval mode; the train/eval flag of every submodule is restored
    afterwards, even when the call fails. No autograd graph survives the call, no ``.grad`` is
    written to the parameters, and ``torch.get_default_dtype()`` is left unchanged. A relaxed
    model (:func:`zoo.relax.relax`) is evaluated as it is, branches included, but its branches
    do not compute or keep their training regularisers.

    Parameters
    ----------
    model
        An energy/force model (e.g. a zoo ``Equiformer``) taking a PyG ``Batch`` with ``z``,
        ``pos`` and ``batch`` and returning ``{"energy": [n_graphs], "forces": [n_atoms, 3]}``.
    frames
        A list (or other sequence) of ``ase.Atoms``, or a single ``ase.Atoms``. Only atomic
        numbers and positions are used; labels stored on the frames are ignored. An array or
        tensor of coordinates (``[n, 3]`` or ``[b, n, 3]``) is a point cloud instead, and goes
        to :func:`zoo.point_clouds.predict_point_cloud` (class probabilities).
    batch_size
        Number of frames per forward pass (a positive integer). Results do not depend on it
        beyond floating-point rounding.
    device
        Where to put the input batches. ``None`` (the default) uses the model's device; the
        model itself is never moved.

    Returns
    -------
    dict
        ``"energy"``: ``numpy.ndarray`` of shape ``[n_frames]``; ``"forces"``: a list with one
        ``numpy.ndarray`` of shape ``[n_atoms_i, 3]`` per frame (present when the model returns
        forces). Arrays have the model's floating dtype (float32 or float64), in the model's
        units (eV, eV/Å for the zoo models).

    Raises
    ------
    ValueError
        When ``frames`` is empty or ``batch_size`` is not a positive integer.
    TypeError
        When ``frames`` is not an ``ase.Atoms`` or a sequence of them.
    zoo.data.InvalidFrameError
        When a frame has no atoms, an unknown element or non-finite positions.

    Examples
    --------
    >>> out = predict(model, frames, batch_size=16)        # doctest: +SKIP
    >>> out["energy"].shape, out["forces"][0].shape        # doctest: +SKIP
    ((100,), (21, 3))
    """
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        # Coordinates rather than molecules: a point-cloud classifier.
        from zoo.point_clouds import predict_point_cloud

        return predict_point_cloud(model, frames, batch_size=batch_size)
    frame_list = _as_frame_list(frames)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dtype, model_device = _model_dtype_device(model)
    target = torch.device(device) if device is not None else model_device

    training_flags = [(module, module.training) for module in model.modules()]
    energies: list[np.ndarray] = []
    forces: list[np.ndarray] = []
    has_forces = True
    model.eval()  # also keeps relaxed branches from computing their training regularisers
    try:
        for start in range(0, len(frame_list), batch_size):
            chunk = frame_list[start : start + batch_size]
            batch = frames_to_batch(chunk, dtype=dtype, device=target)
            outputs = model(batch)
            energy = outputs["energy"].detach()
            if energy.shape != (len(chunk),):
                raise ValueError(
                    f"model returned energy of shape {tuple(energy.shape)} for {len(chunk)} "
                    f"frames; expected ({len(chunk)},)"
                )
            energies.append(energy.cpu().numpy())
            if "forces" in outputs and has_forces:
                flat = outputs["forces"].detach().cpu().numpy()
                sizes = [len(atoms) for atoms in chunk]
                if flat.shape != (sum(sizes), 3):
                    raise ValueError(
                        f"model returned forces of shape {flat.shape}; expected "
                        f"({sum(sizes)}, 3)"
                    )
                forces.extend(np.split(flat, np.cumsum(sizes)[:-1]))
            else:
                has_forces = False
            del outputs, batch, energy
    finally:
        for module, flag in training_flags:
            module.training = flag

    result: dict[str, Any] = {"energy": np.concatenate(energies)}
    if has_forces:
        result["forces"] = forces
    return result

